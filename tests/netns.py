"""Boards in network namespaces, for multi-host fault tests (root and iproute2 only).

Each board is a namespace joined to the host by one veth pair. Addresses stay in the loopback
range: the host side is 127.100.S.(4n+1)/30 and the namespace side 127.100.S.(4n+2), S taken from
this process id so two test sessions on one machine do not collide. Linux treats 127/8 on a
non-loopback interface as martian unless route_localnet is set; the kernel ORs the interface's
setting with `all`, so on the host only the veths get it (the host-wide `all` is left alone),
while inside a namespace, whose sysctls are its own, both are set.

Every board also gets a blackhole route for its /30 with a high metric. While the link is up the
veth's own route wins; once a test downs the link, the blackhole catches the traffic. Without it
the host would deliver 127.100.S.* to `lo` (all of 127/8 is local there), which answers with a
reset: a cut would look like a refused connection, not the silence of a pulled cable.

NetnsLab.close() removes everything it made (processes first, then mounts, routes, namespaces),
whatever state a failed test left behind.
"""
from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
AGENT_PORT = 50051
START_TIMEOUT_S = 60.0     # 2 shared cores, several agents importing grpc and numpy at once
_NAMESPACE_PREFIX = "edgefarm-test-"
_LISTENING = re.compile(r"listening on (\S+):(\d+)")


@dataclass(frozen=True)
class Board:
    index: int
    namespace: str
    host_if: str               # the host side of the veth pair: the "cable" a test can cut
    host_addr: str
    board_addr: str            # inside the namespace; the agent binds here

    @property
    def address(self) -> str:
        return f"{self.board_addr}:{AGENT_PORT}"

    @property
    def subnet(self) -> str:
        return f"{self.host_addr.rsplit('.', 1)[0]}.{int(self.host_addr.rsplit('.', 1)[1]) - 1}/30"


def namespaces_unavailable() -> str | None:
    """Why boards cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs these tests as root)"
    if shutil.which("ip") is None:
        return "needs iproute2's 'ip' command"
    probe = f"{_NAMESPACE_PREFIX}{os.getpid()}-probe"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"'ip netns add' failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def run(*cmd: str, namespace: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    done = subprocess.run(prefix + list(cmd), capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(prefix + list(cmd))}: {done.stderr.strip()}")


def ip(*args: str, namespace: str | None = None) -> None:
    run("ip", *args, namespace=namespace)


def sysctl(name: str, value: str, namespace: str | None = None) -> None:
    run("sysctl", "-qw", f"{name}={value}", namespace=namespace)


class NetnsLab:
    """Namespaced boards, tmpfs mounts and agent processes, all removed by close()."""

    def __init__(self) -> None:
        self.tag = os.getpid()
        self.subnet_octet = self.tag % 250 + 1
        self.boards: list[Board] = []
        self.agents: list[NamespacedAgent] = []
        self._mounts: list[Path] = []
        _sweep_dead_sessions()

    def add_board(self) -> Board:
        n = len(self.boards)
        base = f"127.100.{self.subnet_octet}"
        board = Board(n, f"{_NAMESPACE_PREFIX}{self.tag}-{n}", f"ef{self.tag}h{n}", f"{base}.{4 * n + 1}",
                      f"{base}.{4 * n + 2}")
        self.boards.append(board)  # before it exists: close() removes a half-made board too
        _make_board(board, f"ef{self.tag}n{n}")
        return board

    def cut_link(self, board: Board) -> None:
        ip("link", "set", board.host_if, "down")

    def restore_link(self, board: Board) -> None:
        ip("link", "set", board.host_if, "up")

    def mount_tmpfs(self, path: Path, size: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True,
                       capture_output=True, timeout=30)
        self._mounts.append(path)
        return path

    def start_agents(self, root: Path, cache_dirs: dict[int, Path] | None = None,
                     only: list[Board] | None = None) -> list[NamespacedAgent]:
        """One agent per board (or per board of `only`), started together: each imports for a second or more."""
        agents = [NamespacedAgent(b, (cache_dirs or {}).get(b.index, root / f"cache-{b.index}"),
                                  root / f"agent-{b.index}.log") for b in (only or self.boards)]
        self.agents += agents
        for agent in agents:
            agent.spawn()
        for agent in agents:
            agent.wait_listening()
        return agents

    def stop_agents(self) -> None:
        for agent in self.agents:
            agent.stop()
        self.agents = []

    def unmount_all(self) -> None:
        for path in reversed(self._mounts):
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)
        self._mounts = []

    def close(self) -> None:
        self.stop_agents()
        self.unmount_all()
        for board in reversed(self.boards):
            _remove_board(board)
        self.boards = []


def _make_board(board: Board, board_if: str) -> None:
    ip("netns", "add", board.namespace)
    ip("link", "add", board.host_if, "type", "veth", "peer", "name", board_if)
    ip("link", "set", board_if, "netns", board.namespace)
    sysctl(f"net.ipv4.conf.{board.host_if}.route_localnet", "1")
    ip("addr", "add", f"{board.host_addr}/30", "dev", board.host_if)
    ip("link", "set", board.host_if, "up")
    ip("route", "replace", "blackhole", board.subnet, "metric", "4000")  # replace: one left by a killed session
    for name in (f"net.ipv4.conf.{board_if}.route_localnet", "net.ipv4.conf.all.route_localnet"):
        sysctl(name, "1", namespace=board.namespace)
    ip("addr", "add", f"{board.board_addr}/30", "dev", board_if, namespace=board.namespace)
    ip("link", "set", board_if, "up", namespace=board.namespace)
    ip("link", "set", "lo", "up", namespace=board.namespace)


def _remove_board(board: Board) -> None:
    """Each step may find its part gone already (a half-made board, a namespace already deleted)."""
    for args in (["route", "del", "blackhole", board.subnet, "metric", "4000"], ["netns", "del", board.namespace],
                 ["link", "del", board.host_if]):
        subprocess.run(["ip", *args], capture_output=True, timeout=30)


def _sweep_dead_sessions() -> None:
    """Namespaces left by a test session that was killed before its finalizers ran."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    for name in re.findall(rf"^({_NAMESPACE_PREFIX}(\d+)-\S+)", listed, re.MULTILINE):
        if not Path(f"/proc/{name[1]}").exists():
            subprocess.run(["ip", "netns", "del", name[0]], capture_output=True, timeout=30)


class NamespacedAgent:
    """`python -m agent serve` inside a board's namespace; kill() is the board losing power."""

    def __init__(self, board: Board, cache_dir: Path, log_path: Path) -> None:
        self.board, self.cache_dir, self.log_path = board, cache_dir, log_path
        self._proc: subprocess.Popen | None = None

    def spawn(self) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        cmd = ["ip", "netns", "exec", self.board.namespace, sys.executable, "-m", "edgefarm.agent", "serve",
               "--host", self.board.board_addr, "--port", str(AGENT_PORT), "--insecure-plaintext",
               "--cache-dir", str(self.cache_dir)]
        with open(self.log_path, "ab") as log:  # a file: an unread stderr pipe would block the agent
            self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO)

    def wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        with selectors.DefaultSelector() as sel:
            sel.register(self._proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                # the agent prints its "listening on" line first; select bounds the wait for it
                if sel.select(timeout=0.2) and _LISTENING.search(self._proc.stdout.readline()):
                    return
                if self._proc.poll() is not None:
                    raise RuntimeError(f"agent on {self.board.namespace} exited: {self.log_path.read_text()[-800:]}")
        raise RuntimeError(f"agent on {self.board.namespace} did not listen within {START_TIMEOUT_S:g} s")

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc else -1

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def workers(self) -> list[int]:
        """The agent's job workers (children in their own sessions, which outlive a killed agent)."""
        return children_of(self.pid) if self.alive() else []

    def kill(self) -> None:
        """SIGKILL the agent, then its workers: nothing is left to report on the job."""
        workers = self.workers()
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            self._proc.wait(timeout=30)
        for pid in workers:
            _kill_quietly(pid)

    def stop(self) -> None:
        if self._proc is None:
            return
        workers = self.workers()
        if self.alive():
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=30)
        for pid in workers:
            _kill_quietly(pid)
        self._proc.stdout.close()


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
