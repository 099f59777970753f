"""Is a stored run still being run? While a controller runs a run, it beats into the run's row every
BEAT_S. A controller that died (SIGKILL, a lost host) stops beating, and its run is shown as
`abandoned`: `edgefarm resume` may then take it over, leases included.

A run on this host whose controller process is gone is abandoned at once; elsewhere, after
ABANDONED_AFTER_S without a beat. That is shorter than a lease's 60 s, so a resume does not sit out
the dead controller's leases: it reclaims them (they carry the run's id)."""
from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)
BEAT_S = 5.0
ABANDONED_AFTER_S = 30.0          # six missed beats


def this_controller() -> str:
    """host:pid of this process, stored with the runs it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def effective_status(status: str, controller: str | None, heartbeat_at: float | None, now: float) -> str:
    """The stored status, except that a `running` run nobody runs any more is `abandoned`."""
    if status != "running":
        return status
    host, _, pid = (controller or "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
        return "abandoned"
    return "abandoned" if heartbeat_at is None or now - heartbeat_at > ABANDONED_AFTER_S else "running"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # someone else's process: alive
        return True
    return True


class RunHeartbeat:
    """Beats `beat()` every BEAT_S on its own thread until stopped; a failed beat is logged, not fatal
    (a store that is down for longer makes the run look abandoned, which is what it then is)."""

    def __init__(self, beat: Callable[[], None], every_s: float = BEAT_S) -> None:
        self._beat, self._every_s = beat, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="run-heartbeat", daemon=True)

    def __enter__(self) -> RunHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                self._beat()
            except Exception as exc:  # a beat is advisory: the run goes on regardless
                log.warning("run heartbeat failed: %s", exc)
