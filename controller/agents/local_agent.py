"""The embedded default: a real agent subprocess on 127.0.0.1 and an ephemeral port."""
from __future__ import annotations

import re
import selectors
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

START_TIMEOUT_S = 30.0
_LISTENING = re.compile(r"listening on (\S+):(\d+)")


class LocalAgentError(Exception):
    pass


class LocalAgent:
    """Context manager: starts `python -m agent serve --port 0`, reads the bound port, stops it at exit."""

    def __init__(self, cache_dir: Path, python: str = sys.executable, own_session: bool = False) -> None:
        """own_session: start the agent in a session of its own, as if on another host: with autogroup
        scheduling (Linux's default) a session's processes share one CPU share, so a hundred agents in
        the controller's session would starve it (benchmark P6). Ctrl-C at a terminal then reaches only
        the controller, which stops the agent on its way out."""
        self.cache_dir = cache_dir
        self._own_session = own_session
        self._cmd = [python, "-m", "edgefarm.agent", "serve", "--host", "127.0.0.1", "--port", "0",
                     "--cache-dir", str(cache_dir)]
        self._proc: subprocess.Popen | None = None
        self.address = ""

    def __enter__(self) -> LocalAgent:
        self.start()
        self.wait_ready()
        return self

    def start(self) -> LocalAgent:
        """Spawn the agent and return at once; wait_ready() blocks until it listens."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # stderr goes to a file: an unread pipe would block the agent once it fills.
        self.log_path = self.cache_dir / "agent.log"
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(self._cmd, stdout=subprocess.PIPE, stderr=log, text=True,
                                          start_new_session=self._own_session)
        return self

    def wait_ready(self) -> str:
        if not self.address:
            host, port = self._wait_for_port()
            self.address = f"{host}:{port}"
        return self.address

    def _wait_for_port(self) -> tuple[str, str]:
        proc = self._proc
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if sel.select(timeout=0.2):
                match = _LISTENING.search(proc.stdout.readline())
                if match:
                    return match.group(1), match.group(2)
            if proc.poll() is not None:
                log_tail = self.log_path.read_text(errors="replace").strip()[-500:]
                raise LocalAgentError(f"local agent exited with code {proc.returncode}: {log_tail}")
        self.stop()
        raise LocalAgentError(f"local agent did not start listening within {START_TIMEOUT_S:g} s")

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc else -1

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc.stdout.close()

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
