"""One board's agent for a whole farm run: one gRPC channel, dialled and described once, reused by
every job the board gets, and dialled afresh after a transport failure (the agent restarted, the
link dropped). Dialling per job cost a channel, a TCP (and TLS) handshake and a Describe each."""
from __future__ import annotations

import logging
from collections.abc import Callable

from edgefarm.controller.agents.client import AsyncAgentClient
from edgefarm.controller.agents.records import DeviceInfo
from edgefarm.controller.config.inventory import Device

log = logging.getLogger(__name__)


class BoardSession:
    def __init__(self, board: Device, dial: Callable[[Device], AsyncAgentClient]) -> None:
        """dial: the runner's client seam (SecurityError when the board cannot be dialled as declared)."""
        self.board, self._dial = board, dial
        self._client: AsyncAgentClient | None = None
        self._info: DeviceInfo | None = None

    def client(self) -> AsyncAgentClient:
        """The board's client, dialling it on first use (a channel connects lazily)."""
        if self._client is None:
            self._client = self._dial(self.board)
        return self._client

    async def describe(self) -> DeviceInfo:
        """What the agent said when this channel connected (connect + Describe, once per channel)."""
        if self._info is None:
            self._info = await self.client().connect()
        return self._info

    async def redial(self) -> None:
        """After a transport failure, or when the board leaves service: the next job dials afresh."""
        client, self._client, self._info = self._client, None, None
        if client is not None:
            log.debug("closing the channel to %s", self.board.name)
            await client.close()

    async def close(self) -> None:
        await self.redial()
