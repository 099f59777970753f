"""edgefarm provision: install, upgrade and start the agent on a board over SSH (paramiko).

One provisioning is a fixed sequence of named steps on one SSH session:
find the home directory → read the installed version → [stop, uninstall] → copy the wheel →
create ~/.edgefarm/venv → pip install the wheel with the device's runtime extras → TLS material
→ service (systemd unit, or nohup + pid file) → start → Describe over gRPC.
Each failure is a ProvisionError naming the device, the step and the tail of the remote stderr.

The board needs only an SSH server and python3 (3.8+) with venv; everything else comes from
the wheel and the board's own pip (whose arguments --pip-args can change, e.g. --no-index).
"""
from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import shlex
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

import paramiko

from edgefarm.agent.security import CA_FILE, CERT_FILE, TOKEN_FILE, is_loopback
from edgefarm.controller.agents.client import AgentClient, AgentUnreachableError
from edgefarm.controller.agents.security import security_for
from edgefarm.controller.config.inventory import Device
from edgefarm.controller.provision.ca import CaError, FarmCa, board_tls_files, load_ca

SERVICE_NAME = "edgefarm-agent"
DISTRIBUTION = "edgefarm"
BACKEND_EXTRAS = {"onnxruntime": "onnxruntime", "litert": "litert", "tensorrt": "tensorrt", "openvino": "openvino",
                  "executorch": "executorch"}
# What the agent reads from its TLS directory (the lead's --tls-dir flag on `edgefarm-agent serve`).
COMMAND_TIMEOUT_S = 600.0       # pip on a Raspberry Pi can take minutes
VERIFY_TIMEOUT_S = 30.0         # importing numpy and grpc on a cold Pi 4 takes several seconds
TAIL_CHARS = 600
_IS_SYSTEMD = 'command -v systemctl >/dev/null 2>&1 && [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]'
_VERSION_SCRIPT = ("import importlib.metadata as m\ntry:\n    print(m.version('edgefarm'))\n"
                   "except m.PackageNotFoundError:\n    pass\n")


class ProvisionError(Exception):
    """Provisioning failed; the one-line message names the device, the step and the remote error."""


@dataclass(frozen=True)
class SshSettings:
    user: str
    port: int = 22
    key: Path | None = None         # None: the ssh-agent's keys and ~/.ssh/id_*, as ssh does
    known_hosts: Path = Path.home() / ".ssh" / "known_hosts"
    accept_new_host_key: bool = False
    connect_timeout_s: float = 10.0

    def where(self, host: str) -> str:
        return f"{self.user}@{host}:{self.port}"


@dataclass(frozen=True)
class InstallSettings:
    wheel: Path
    ca_dir: Path
    upgrade: bool = False
    pip_args: tuple[str, ...] = ()
    system_site_packages: bool = False
    board_python: str = "python3"


@dataclass(frozen=True)
class ProvisionReport:
    device: str
    action: str                     # "installed", "upgraded", "reinstalled" (same version) or "unchanged"
    old_version: str | None
    new_version: str
    agent_version: str              # what the running agent said in Describe
    service: str

    def summary(self) -> str:
        if self.action == "upgraded":
            what = f"agent upgraded {self.old_version} → {self.new_version}"
        elif self.action == "reinstalled":
            what = f"agent already at {self.new_version}; reinstalled it from the wheel"
        elif self.action == "unchanged":
            what = f"agent {self.new_version} was already installed (pass --upgrade to replace it)"
        else:
            what = f"agent {self.new_version} installed"
        return f"{self.device}: {what}; running under {self.service}; Describe: agent {self.agent_version}"


@dataclass(frozen=True)
class BoardPaths:
    """Where things live on the board, all under the SSH user's ~/.edgefarm."""

    home: PurePosixPath

    @property
    def root(self) -> PurePosixPath:
        return self.home / ".edgefarm"

    @property
    def venv(self) -> PurePosixPath:
        return self.root / "venv"

    @property
    def python(self) -> PurePosixPath:
        return self.venv / "bin" / "python"

    @property
    def tls(self) -> PurePosixPath:
        return self.root / "tls"

    @property
    def pid_file(self) -> PurePosixPath:
        return self.root / "agent.pid"

    @property
    def log_file(self) -> PurePosixPath:
        return self.root / "agent.log"


def _quote(path: PurePosixPath | str) -> str:
    return shlex.quote(str(path))


def _tail(text: str, chars: int = TAIL_CHARS) -> str:
    """The end of a command's output as one line, for a one-line error message."""
    joined = " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return joined if len(joined) <= chars else "…" + joined[-chars:]


# --- the SSH session -------------------------------------------------------------------------------

class Board:
    """One SSH session to one board; a failing command is a ProvisionError naming its step."""

    def __init__(self, device: str, client: paramiko.SSHClient) -> None:
        self.device, self._client = device, client
        self._sftp: paramiko.SFTPClient | None = None

    def run(self, step: str, command: str, timeout: float = COMMAND_TIMEOUT_S) -> str:
        status, out, err = self._execute(step, command, timeout)
        if status != 0:
            detail = _tail(err) or _tail(out) or "(no output)"
            raise ProvisionError(f"device {self.device!r}: step '{step}' failed (exit {status}): {detail}")
        return out

    def succeeds(self, step: str, command: str, timeout: float = 60.0) -> bool:
        return self._execute(step, command, timeout)[0] == 0

    def write(self, step: str, path: PurePosixPath, data: bytes, mode: int) -> None:
        try:
            with self.sftp().open(str(path), "wb") as file:
                file.chmod(mode)        # before the first byte, so a key is never readable by others
                file.write(data)
        except OSError as error:
            raise ProvisionError(f"device {self.device!r}: step '{step}' failed: {path}: {error}") from None

    def read(self, path: PurePosixPath) -> bytes | None:
        try:
            with self.sftp().open(str(path), "rb") as file:
                return file.read()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise ProvisionError(f"device {self.device!r}: cannot read {path}: {error}") from None

    def upload(self, step: str, local: Path, remote: PurePosixPath) -> None:
        try:
            self.sftp().put(str(local), str(remote))
        except OSError as error:
            raise ProvisionError(f"device {self.device!r}: step '{step}' failed: {remote}: {error}") from None

    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = self._client.open_sftp()
        return self._sftp

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
        self._client.close()

    def _execute(self, step: str, command: str, timeout: float) -> tuple[int, str, str]:
        try:
            stdin, stdout, stderr = self._client.exec_command(command, timeout=timeout)
            stdin.close()
            # stdout is read to the end before stderr: fine for our commands (pip runs with -q), whose
            # stderr stays far below paramiko's 2 MiB channel window.
            out, err = stdout.read(), stderr.read()
            return stdout.channel.recv_exit_status(), out.decode(errors="replace"), err.decode(errors="replace")
        except TimeoutError:
            raise ProvisionError(f"device {self.device!r}: step '{step}' gave no answer within "
                                 f"{timeout:g} s") from None
        except paramiko.SSHException as error:
            raise ProvisionError(f"device {self.device!r}: step '{step}': ssh session failed: {error}") from None


def open_board(device: Device, ssh: SshSettings) -> Board:
    """Connect over SSH, checking the host key against known_hosts (never trusting a new one silently)."""
    if ssh.key is not None and not ssh.key.is_file():
        raise ProvisionError(f"device {device.name!r}: ssh key {ssh.key} does not exist")
    client = paramiko.SSHClient()
    if ssh.known_hosts.is_file():
        client.load_host_keys(str(ssh.known_hosts))
    policy = _AcceptNewHostKey(ssh.known_hosts) if ssh.accept_new_host_key else _RejectUnknownHostKey(device, ssh)
    client.set_missing_host_key_policy(policy)
    try:
        client.connect(device.host, port=ssh.port, username=ssh.user,
                       key_filename=str(ssh.key) if ssh.key else None,
                       look_for_keys=ssh.key is None, allow_agent=ssh.key is None,
                       timeout=ssh.connect_timeout_s, banner_timeout=ssh.connect_timeout_s,
                       auth_timeout=ssh.connect_timeout_s)
    except ProvisionError:
        client.close()
        raise
    except (OSError, paramiko.SSHException) as error:
        client.close()
        raise _ssh_error(error, device, ssh) from None
    return Board(device.name, client)


def _ssh_error(error: Exception, device: Device, ssh: SshSettings) -> ProvisionError:
    where, prefix = ssh.where(device.host), f"device {device.name!r}:"
    key = str(ssh.key) if ssh.key else "(the ssh-agent's and ~/.ssh/id_*)"
    if isinstance(error, paramiko.PasswordRequiredException):
        return ProvisionError(f"{prefix} ssh key {key} is passphrase-protected; add it to ssh-agent "
                              f"(ssh-add) and leave out --ssh-key")
    if isinstance(error, paramiko.AuthenticationException):
        return ProvisionError(f"{prefix} ssh key {key} was refused by {where}; add its public key to "
                              f"~/.ssh/authorized_keys on the board or pass --ssh-key")
    if isinstance(error, paramiko.BadHostKeyException):
        return ProvisionError(f"{prefix} the host key of {where} does not match {ssh.known_hosts} (got "
                              f"{_fingerprint(error.key)}); if the board was reinstalled, remove the old entry "
                              f"with ssh-keygen -R '[{device.host}]:{ssh.port}', otherwise do not connect")
    if isinstance(error, socket.gaierror):
        return ProvisionError(f"{prefix} cannot resolve host {device.host!r}: {error.strerror}")
    if isinstance(error, (socket.timeout, TimeoutError)):
        return ProvisionError(f"{prefix} no ssh answer from {device.host}:{ssh.port} within "
                              f"{ssh.connect_timeout_s:g} s; is the board on and on this network?")
    if isinstance(error, (paramiko.ssh_exception.NoValidConnectionsError, ConnectionRefusedError)):
        return ProvisionError(f"{prefix} connection refused at {device.host}:{ssh.port}; is sshd running "
                              f"on the board, and is --ssh-port right?")
    if isinstance(error, OSError):
        return ProvisionError(f"{prefix} cannot reach {device.host}:{ssh.port}: {error.strerror or error}")
    return ProvisionError(f"{prefix} ssh handshake with {where} failed: {error}")


def _fingerprint(key: paramiko.PKey) -> str:
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


class _RejectUnknownHostKey(paramiko.MissingHostKeyPolicy):
    def __init__(self, device: Device, ssh: SshSettings) -> None:
        self._device, self._ssh = device, ssh

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise ProvisionError(
            f"device {self._device.name!r}: the host key of {hostname} is not in {self._ssh.known_hosts} "
            f"({_fingerprint(key)}); compare it with 'ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub' on the "
            f"board, then pass --accept-new-host-key to trust and remember it")


class _AcceptNewHostKey(paramiko.MissingHostKeyPolicy):
    """OpenSSH's StrictHostKeyChecking=accept-new: remember a first-seen key; a changed one still fails."""

    def __init__(self, known_hosts: Path) -> None:
        self._known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        self._known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Appended, not rewritten: paramiko's save would drop the file's comments and options.
        with open(self._known_hosts, "a", encoding="utf-8") as file:
            file.write(paramiko.hostkeys.HostKeyEntry([hostname], key).to_line())


# --- how the agent runs: systemd where PID 1 is systemd, else nohup with a pid file ----------------

class Service(Protocol):
    """What provisioning needs from a way of running the agent."""

    @property
    def label(self) -> str: ...
    def install(self, board: Board, command: list[str]) -> None: ...
    def start(self, board: Board) -> None: ...
    def stop(self, board: Board) -> None: ...
    def running(self, board: Board) -> bool: ...
    def log_tail(self, board: Board) -> str: ...


def agent_command(device: Device, paths: BoardPaths) -> list[str]:
    argv = [str(paths.venv / "bin" / "edgefarm-agent"), "serve", "--port", str(device.port),
            "--cache-dir", str(paths.root / "cache")]
    # The controller dials the board's own address: off loopback, bind every interface. Serve what
    # devices.yaml declares (the inventory refuses plaintext off loopback).
    loopback = is_loopback(device.host)
    argv += ["--host", device.host if loopback else "0.0.0.0"]
    if device.security == "tls":
        return argv + ["--tls-dir", str(paths.tls)]
    if device.security == "token":
        return argv + ["--token-file", str(paths.tls / TOKEN_FILE)] + ([] if loopback else ["--insecure-plaintext"])
    return argv


@dataclass(frozen=True)
class NohupService:
    """No systemd (containers, minimal images): a detached process whose pid is in agent.pid."""

    paths: BoardPaths

    @property
    def label(self) -> str:
        return f"nohup (pid file {self.paths.pid_file})"

    @property
    def start_script(self) -> PurePosixPath:
        return self.paths.root / "start-agent.sh"

    def install(self, board: Board, command: list[str]) -> None:
        # setsid (where present) leaves the SSH session's process group, so closing it stops nothing;
        # the shell's $! is the agent itself since neither setsid nor nohup fork here.
        script = (f"#!/bin/sh\n# Written by 'edgefarm provision': starts the agent detached.\n"
                  f"cd {_quote(self.paths.root)} || exit 1\n"
                  f"$(command -v setsid) nohup {shlex.join(command)} >>{_quote(self.paths.log_file)} 2>&1 "
                  f"</dev/null &\necho $! >{_quote(self.paths.pid_file)}\n")
        board.write("write the agent start script", self.start_script, script.encode(), 0o755)

    def start(self, board: Board) -> None:
        board.run("start the agent (nohup)", f"sh {_quote(self.start_script)}")

    def stop(self, board: Board) -> None:
        alive = self._alive_test()
        board.run("stop the agent", f"if {alive}; then kill $pid; i=0; while kill -0 $pid 2>/dev/null && "
                                    f"[ $i -lt 50 ]; do sleep 0.2; i=$((i+1)); done; kill -9 $pid 2>/dev/null; "
                                    f"fi; rm -f {_quote(self.paths.pid_file)}")

    def running(self, board: Board) -> bool:
        return board.succeeds("check the agent is running", self._alive_test())

    def log_tail(self, board: Board) -> str:
        return board.run("read the agent log", f"tail -n 20 {_quote(self.paths.log_file)} 2>/dev/null || true")

    def _alive_test(self) -> str:
        # The pid must still be our agent: after a reboot the number may belong to anything.
        return (f"pid=$(cat {_quote(self.paths.pid_file)} 2>/dev/null) && kill -0 \"$pid\" 2>/dev/null && "
                f"grep -q edgefarm-agent /proc/\"$pid\"/cmdline 2>/dev/null")


@dataclass(frozen=True)
class SystemdService:
    """A unit that restarts the agent on failure and at boot: a system unit as root, else a user unit."""

    paths: BoardPaths
    user_unit: bool

    @property
    def label(self) -> str:
        return f"systemd ({'user' if self.user_unit else 'system'} unit {SERVICE_NAME})"

    @property
    def _systemctl(self) -> str:
        return "systemctl --user" if self.user_unit else "systemctl"

    @property
    def unit_path(self) -> PurePosixPath:
        if self.user_unit:
            return self.paths.home / ".config" / "systemd" / "user" / f"{SERVICE_NAME}.service"
        return PurePosixPath("/etc/systemd/system") / f"{SERVICE_NAME}.service"

    def install(self, board: Board, command: list[str]) -> None:
        board.run("create the systemd unit directory", f"mkdir -p {_quote(self.unit_path.parent)}")
        board.write("write the systemd unit", self.unit_path, self._unit(command).encode(), 0o644)
        board.run("enable the systemd unit", f"{self._systemctl} daemon-reload && "
                                             f"{self._systemctl} enable {SERVICE_NAME}")
        if self.user_unit:
            # Without lingering, a user unit stops at logout and does not start at boot. Allowed for
            # oneself on most distributions; where polkit refuses, the agent still runs until logout.
            board.succeeds("let the user's units run without a login", 'loginctl enable-linger "$(id -un)"')

    def start(self, board: Board) -> None:
        board.run("start the agent (systemd)", f"{self._systemctl} restart {SERVICE_NAME}")

    def stop(self, board: Board) -> None:
        board.run("stop the agent (systemd)", f"{self._systemctl} stop {SERVICE_NAME}")

    def running(self, board: Board) -> bool:
        return board.succeeds("check the agent is running", f"{self._systemctl} is-active --quiet {SERVICE_NAME}")

    def log_tail(self, board: Board) -> str:
        journal = "journalctl --user" if self.user_unit else "journalctl"
        return board.run("read the agent log", f"{journal} -u {SERVICE_NAME} -n 20 --no-pager 2>&1 || true")

    def _unit(self, command: list[str]) -> str:
        target = "default.target" if self.user_unit else "multi-user.target"
        return ("[Unit]\nDescription=edgefarm agent: runs benchmark jobs sent by the farm's controller\n"
                "After=network-online.target\nWants=network-online.target\n\n"
                f"[Service]\nExecStart={shlex.join(command)}\nRestart=on-failure\nRestartSec=5\n\n"
                f"[Install]\nWantedBy={target}\n")


def detect_service(board: Board, paths: BoardPaths) -> Service:
    if not board.succeeds("look for systemd", _IS_SYSTEMD):
        return NohupService(paths)
    is_root = board.run("read the ssh user's id", "id -u").strip() == "0"
    return SystemdService(paths, user_unit=not is_root)


# --- installing --------------------------------------------------------------------------------------

def wheel_version(wheel: Path) -> str:
    parts = wheel.name.split("-")
    if wheel.suffix != ".whl" or len(parts) < 5 or parts[0] != DISTRIBUTION:
        raise ProvisionError(f"{wheel}: not an {DISTRIBUTION} wheel (expected {DISTRIBUTION}-VERSION-...whl)")
    if not wheel.is_file():
        raise ProvisionError(f"{wheel}: no such file")
    return parts[1]


def installed_version(board: Board, paths: BoardPaths) -> str | None:
    python = _quote(paths.python)
    out = board.run("read the installed agent version",
                    f"if [ -x {python} ]; then {python} -c {shlex.quote(_VERSION_SCRIPT)}; fi")
    return out.strip() or None


def venv_command(device: Device, paths: BoardPaths, settings: InstallSettings) -> str:
    flags = ""
    # On a Jetson, TensorRT and its Python bindings come from JetPack's system packages (apt), not
    # from PyPI: the venv has to see the system site-packages to import them.
    if settings.system_site_packages or "tensorrt" in device.backends:
        flags = " --system-site-packages"
    return f"[ -x {_quote(paths.python)} ] || {settings.board_python} -m venv{flags} {_quote(paths.venv)}"


def pip_install_command(device: Device, paths: BoardPaths, settings: InstallSettings,
                        remote_wheel: PurePosixPath) -> str:
    extras = sorted({BACKEND_EXTRAS[backend] for backend in device.backends})
    requirement = f"{DISTRIBUTION}[{','.join(extras)}] @ file://{remote_wheel}" if extras else str(remote_wheel)
    pip_args = " ".join(shlex.quote(arg) for arg in settings.pip_args)
    return (f"{_quote(paths.python)} -m pip install --quiet --disable-pip-version-check --no-input "
            f"{pip_args} {shlex.quote(requirement)}")


def install_agent(board: Board, device: Device, paths: BoardPaths, settings: InstallSettings) -> None:
    board.run("find Python 3.8+ on the board (install python3 and python3-venv)",
              f"{settings.board_python} -c 'import sys; assert sys.version_info >= (3, 8), sys.version'")
    board.run("create the agent directories", f"mkdir -p {_quote(paths.root / 'wheels')} && "
                                              f"chmod 700 {_quote(paths.root)}")
    remote_wheel = paths.root / "wheels" / settings.wheel.name
    board.upload("copy the agent wheel", settings.wheel, remote_wheel)
    board.run("create the virtual environment", venv_command(device, paths, settings))
    board.run("install the agent wheel", pip_install_command(device, paths, settings, remote_wheel))


def uninstall_agent(board: Board, paths: BoardPaths) -> None:
    board.run("uninstall the old agent",
              f"{_quote(paths.python)} -m pip uninstall --yes --quiet --disable-pip-version-check {DISTRIBUTION}")


def install_tls(board: Board, device: Device, paths: BoardPaths, ca: FarmCa) -> bool:
    """Issue and install the board's certificate unless one from this CA is there; True if installed."""
    if board.read(paths.tls / CA_FILE) == ca.cert_pem and board.read(paths.tls / CERT_FILE):
        return False
    files = board_tls_files(ca, device.name, [device.host])
    board.run("create the TLS directory", f"mkdir -p {_quote(paths.tls)} && chmod 700 {_quote(paths.tls)}")
    for name, data in files.items():
        board.write("install the TLS material", paths.tls / name, data, 0o600)
    return True


def build_agent_wheel(source: Path, out_dir: Path) -> Path:
    """`pip wheel --no-deps` of an edgefarm checkout; the board imports only agent/ and protos/ from it."""
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out_dir)]
    if _has_build_backend():
        # Build isolation would fetch setuptools from the index; ours is new enough and works offline.
        command.append("--no-build-isolation")
    result = subprocess.run([*command, str(source)], capture_output=True, text=True, check=False)
    wheels = sorted(out_dir.glob(f"{DISTRIBUTION}-*.whl"), key=lambda path: path.stat().st_mtime)
    if result.returncode != 0 or not wheels:
        raise ProvisionError(f"building the agent wheel from {source} failed: {_tail(result.stderr) or 'no wheel'}")
    return wheels[-1]


def source_checkout() -> Path:
    """The edgefarm checkout this controller runs from, to build the agent wheel from."""
    root = Path(__file__).resolve().parents[2]
    if not ((root / "pyproject.toml").is_file() and (root / "agent").is_dir()):
        raise ProvisionError(f"this controller is not running from an edgefarm checkout ({root}); pass --wheel "
                             f"(build one in a checkout with: pip wheel --no-deps . -w dist)")
    return root


def _has_build_backend() -> bool:
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0]) >= 77
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False


# --- the whole sequence ------------------------------------------------------------------------------

def provision(device: Device, ssh: SshSettings, settings: InstallSettings,
              log: Callable[[str], None] = print) -> ProvisionReport:
    """Install (or with settings.upgrade, replace) the agent on `device`, start it and check it answers."""
    ca = _farm_ca(device, settings.ca_dir)      # before touching the board: no CA, no TLS material
    new_version = wheel_version(settings.wheel)
    board = open_board(device, ssh)
    try:
        paths = BoardPaths(PurePosixPath(board.run("find the home directory", 'printf %s "$HOME"')))
        service = detect_service(board, paths)
        old_version = installed_version(board, paths)
        if old_version is not None and not settings.upgrade:
            return _keep_installed(board, device, paths, ca, service, old_version, new_version, log)
        return _install(board, device, paths, ca, service, settings, old_version, log)
    finally:
        board.close()


def _install(board: Board, device: Device, paths: BoardPaths, ca: FarmCa, service: Service,
             settings: InstallSettings, old_version: str | None, log: Callable[[str], None]) -> ProvisionReport:
    if old_version is not None:
        log(f"{device.name}: stopping agent {old_version}")
        service.stop(board)
        uninstall_agent(board, paths)
    log(f"{device.name}: installing {settings.wheel.name} into {paths.venv}")
    install_agent(board, device, paths, settings)
    install_tls(board, device, paths, ca)
    service.install(board, agent_command(device, paths))
    service.start(board)
    agent_version = verify_agent(board, device, service, ca)
    new_version = wheel_version(settings.wheel)
    action = "installed" if old_version is None else "reinstalled" if old_version == new_version else "upgraded"
    return ProvisionReport(device.name, action, old_version, new_version, agent_version, service.label)


def _keep_installed(board: Board, device: Device, paths: BoardPaths, ca: FarmCa, service: Service,
                    old_version: str, new_version: str, log: Callable[[str], None]) -> ProvisionReport:
    if old_version != new_version:
        log(f"{device.name}: agent {old_version} is installed; the wheel is {new_version}, "
            f"pass --upgrade to install it")
    tls_changed = install_tls(board, device, paths, ca)
    if tls_changed or not service.running(board):
        log(f"{device.name}: {'new TLS material, restarting' if tls_changed else 'not running, starting'} the agent")
        service.stop(board)
        service.install(board, agent_command(device, paths))
        service.start(board)
    agent_version = verify_agent(board, device, service, ca)
    return ProvisionReport(device.name, "unchanged", old_version, old_version, agent_version, service.label)


def verify_agent(board: Board, device: Device, service: Service, ca: FarmCa) -> str:
    """Describe over gRPC, as the controller will call it (mutual TLS off loopback); returns the version."""
    security = security_for(device, ca.directory)
    client = AgentClient(device.name, device.address, connect_timeout_s=VERIFY_TIMEOUT_S, security=security)
    try:
        return client.connect().agent_version
    except AgentUnreachableError as error:
        raise ProvisionError(f"device {device.name!r}: step 'verify the agent answers Describe' failed: {error}; "
                             f"the agent's log ends: {_tail(service.log_tail(board)) or '(empty)'}") from None
    finally:
        client.close()


def _farm_ca(device: Device, ca_dir: Path) -> FarmCa:
    try:
        return load_ca(ca_dir)
    except CaError as error:
        raise ProvisionError(f"device {device.name!r}: {error}") from None
