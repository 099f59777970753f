"""Blocking database calls made off the event loop, on one thread of their own, in the order given.

One thread, not a pool: a board released must be released before it is taken again, and a job's
device is written before its result. The loop keeps serving every board's gRPC calls meanwhile."""
from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class SerialThread:
    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        """Queue fn(*args, **kwargs); the future ends with its value or exception."""
        return asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self.submit(fn, *args, **kwargs)

    def close(self) -> None:
        """Wait for what is queued, then end the thread."""
        self._pool.shutdown(wait=True)
