"""Provisioning against a real OpenSSH server on 127.0.0.1, with a real agent answering over gRPC.

The "board" is this machine: Debian's sshd (its own config, host key and authorized_keys in a
temporary directory) lets the unprivileged user edgefarm-board in with a test key. To install
in seconds without the network, the board's venv is made with --system-site-packages, so the
agent's dependencies come from Debian's python3-grpcio, python3-protobuf and python3-numpy
(.ci/system-deps.sh installs them, as Raspberry Pi OS or JetPack would ship them), and pip runs
with --no-deps --no-index. PID 1 here is not systemd, so the agent runs under nohup.
"""
from __future__ import annotations

import argparse
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import pytest

from edgefarm.controller.agents.client import AgentClient
from edgefarm.controller.cli import provision as provision_cli
from edgefarm.controller.config.inventory import Device
from edgefarm.controller.provision.ca import init_ca, tls_material
from edgefarm.controller.provision.deploy import (
    BoardPaths,
    InstallSettings,
    ProvisionError,
    SshSettings,
    SystemdService,
    agent_command,
    build_agent_wheel,
    detect_service,
    open_board,
    pip_install_command,
    provision,
    venv_command,
)

REPO = Path(__file__).resolve().parent.parent
SSHD = Path("/usr/sbin/sshd")
BOARD_PYTHON = "/usr/bin/python3"      # Debian's, as sshd's PATH would find it; not this test's venv
BOARD_PACKAGES = "python3-venv python3-grpcio python3-protobuf python3-numpy"
BOARD_USER = "edgefarm-board"
PIP_OFFLINE = ("--no-deps", "--no-index")


@dataclass(frozen=True)
class SshServer:
    port: int
    directory: Path
    client_key: Path
    host_key_line: str          # "ssh-ed25519 AAAA..." for known_hosts
    board_home: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ensure_board_user() -> Path:
    try:
        pwd.getpwnam(BOARD_USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", BOARD_USER], check=True)
    # A '!' (locked) password makes sshd refuse the account when PAM is off; '*' is "no password".
    subprocess.run(["usermod", "--password", "*", BOARD_USER], check=True)
    return Path(pwd.getpwnam(BOARD_USER).pw_dir)


def _kill_board_agent(board_home: Path) -> None:
    pid_file = board_home / ".edgefarm" / "agent.pid"
    if pid_file.is_file() and pid_file.read_text().strip().isdigit():
        pid = int(pid_file.read_text())
        if "edgefarm-agent" in _cmdline(pid):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(board_home / ".edgefarm", ignore_errors=True)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def _sshd_config(directory: Path, port: int) -> Path:
    config = directory / "sshd_config"
    config.write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {directory / 'host_key'}
PidFile {directory / 'sshd.pid'}
AuthorizedKeysFile {directory / 'authorized_keys'}
AllowUsers {BOARD_USER}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
LogLevel VERBOSE
""")
    return config


def _wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"sshd exited with {process.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"sshd did not listen on 127.0.0.1:{port}: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def ssh_server() -> Iterator[SshServer]:
    if not SSHD.exists():
        pytest.skip("provisioning tests need Debian's 'openssh-server' (/usr/sbin/sshd); "
                    ".ci/system-deps.sh installs it")
    if subprocess.run([BOARD_PYTHON, "-c", "import ensurepip, grpc, google.protobuf, numpy"],
                      capture_output=True, check=False).returncode != 0:
        pytest.skip(f"the board's {BOARD_PYTHON} needs Debian's {BOARD_PACKAGES} (.ci/system-deps.sh installs them)")
    if os.geteuid() != 0:
        pytest.skip(f"provisioning tests run sshd and create the user {BOARD_USER}: they need root")
    board_home = _ensure_board_user()
    _kill_board_agent(board_home)                       # what an interrupted earlier run left behind
    # Not pytest's tmp_path: its 0700 directories would hide the keys from the unprivileged board user.
    directory = Path(tempfile.mkdtemp(prefix="edgefarm-sshd-"))
    directory.chmod(0o755)
    _keygen(directory / "host_key")
    _keygen(directory / "client_key")
    shutil.copy(directory / "client_key.pub", directory / "authorized_keys")
    (directory / "authorized_keys").chmod(0o644)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    port, log = _free_port(), directory / "sshd.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen([str(SSHD), "-f", str(_sshd_config(directory, port)), "-D", "-e"],
                                   stdout=log_file, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, process, log)
        host_key = " ".join((directory / "host_key.pub").read_text().split()[:2])
        yield SshServer(port, directory, directory / "client_key", host_key, board_home)
    finally:
        process.terminate()
        process.wait(timeout=10)
        _kill_board_agent(board_home)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def known_hosts(ssh_server: SshServer, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ssh") / "known_hosts"
    path.write_text(f"[127.0.0.1]:{ssh_server.port} {ssh_server.host_key_line}\n")
    return path


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("farm") / "ca"
    init_ca(directory)
    return directory


@pytest.fixture(scope="module")
def agent_wheel(tmp_path_factory) -> Path:
    return build_agent_wheel(REPO, tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def device(ssh_server: SshServer) -> Device:
    return Device("board-01", "127.0.0.1", _free_port(), {}, ("onnxruntime",))


@pytest.fixture(scope="module")
def ssh(ssh_server: SshServer, known_hosts: Path) -> SshSettings:
    return SshSettings(BOARD_USER, ssh_server.port, ssh_server.client_key, known_hosts)


@pytest.fixture(scope="module")
def install(agent_wheel: Path, ca_dir: Path) -> InstallSettings:
    return InstallSettings(agent_wheel, ca_dir, pip_args=PIP_OFFLINE, system_site_packages=True,
                           board_python=BOARD_PYTHON)


@pytest.fixture(scope="module")
def first_report(device: Device, ssh: SshSettings, install: InstallSettings):
    return provision(device, ssh, install, log=lambda line: None)


def _agent_pid(ssh_server: SshServer) -> int:
    return int((ssh_server.board_home / ".edgefarm" / "agent.pid").read_text())


def _describe(device: Device):
    client = AgentClient(device.name, device.address, connect_timeout_s=10)
    try:
        return client.connect()
    finally:
        client.close()


@pytest.mark.slow
def test_provision_installs_and_starts_the_agent(first_report, device, ssh_server, agent_wheel, ca_dir) -> None:
    version = agent_wheel.name.split("-")[1]
    assert (first_report.action, first_report.old_version, first_report.new_version) == ("installed", None, version)
    assert first_report.service.startswith("nohup")
    assert "edgefarm-agent" in _cmdline(_agent_pid(ssh_server))
    info = _describe(device)                              # real gRPC to the agent on the board's port
    assert info.agent_version == first_report.agent_version
    tls = ssh_server.board_home / ".edgefarm" / "tls"
    assert {path.name: path.stat().st_mode & 0o777 for path in tls.iterdir()} == {
        "ca.crt": 0o600, "agent.crt": 0o600, "agent.key": 0o600, "token": 0o600}
    assert tls_material(ca_dir, device.name).cert == (tls / "agent.crt").read_bytes()


def _cli_args(device: Device, ssh: SshSettings, install: InstallSettings, tmp_path: Path) -> argparse.Namespace:
    devices = tmp_path / "devices.yaml"
    devices.write_text(f"devices:\n  - name: {device.name}\n    host: {device.host}\n    port: {device.port}\n"
                       f"    backends: [onnxruntime]\n")
    parser = argparse.ArgumentParser(prog="edgefarm")
    provision_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args([
        "provision", device.name, "--devices", str(devices), "--ssh-user", ssh.user, "--ssh-port", str(ssh.port),
        "--ssh-key", str(ssh.key), "--known-hosts", str(ssh.known_hosts), "--wheel", str(install.wheel),
        "--ca-dir", str(install.ca_dir), f"--pip-args={' '.join(PIP_OFFLINE)}", "--venv-system-site-packages",
        "--board-python", BOARD_PYTHON])


@pytest.mark.slow
def test_second_provision_is_idempotent(first_report, device, ssh, install, ssh_server, tmp_path, capsys) -> None:
    pid = _agent_pid(ssh_server)
    args = _cli_args(device, ssh, install, tmp_path)
    assert args.handler(args) == 0
    assert capsys.readouterr().out == (f"{device.name}: agent {first_report.new_version} was already installed "
                                       f"(pass --upgrade to replace it); running under {first_report.service}; "
                                       f"Describe: agent {first_report.agent_version}\n")
    assert _agent_pid(ssh_server) == pid                  # not restarted


@pytest.mark.slow
def test_provision_restarts_a_stopped_agent(first_report, device, ssh, install, ssh_server) -> None:
    # A board rebooted under nohup comes back without its agent; provisioning again starts it.
    old_pid = _agent_pid(ssh_server)
    os.kill(old_pid, signal.SIGKILL)
    lines: list[str] = []
    report = provision(device, ssh, install, log=lines.append)
    assert report.action == "unchanged" and lines == [f"{device.name}: not running, starting the agent"]
    assert _agent_pid(ssh_server) != old_pid and _describe(device).agent_version == report.agent_version


def _patched_wheel(version: str, out_dir: Path) -> Path:
    """The same source with a bumped version in edgefarm/__init__.py, the one version string."""
    source = out_dir / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("edgefarm", "agent", "protos", "controller", "compressors"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    version_file = source / "edgefarm" / "__init__.py"
    version_file.write_text(re.sub(r'^__version__ = "[^"]+"', f'__version__ = "{version}"', version_file.read_text(),
                                   count=1, flags=re.M))
    return build_agent_wheel(source, out_dir / "dist")


@pytest.mark.slow
def test_upgrade_to_the_installed_version_says_already_at(first_report, device, ssh, install) -> None:
    """The first release printed "upgraded 0.1.0 → 0.1.0" here."""
    report = provision(device, ssh, replace(install, upgrade=True), log=lambda line: None)
    assert (report.action, report.old_version, report.new_version) == \
        ("reinstalled", first_report.new_version, first_report.new_version)
    assert f"agent already at {first_report.new_version}; reinstalled it from the wheel" in report.summary()
    assert "→" not in report.summary()


@pytest.mark.slow
def test_upgrade_replaces_the_installed_version(first_report, device, ssh, install, ssh_server, tmp_path) -> None:
    # A second wheel with a bumped version, rather than reinstalling the same one: the version
    # Describe reports then proves the restarted agent runs the new code.
    old_pid, new_version = _agent_pid(ssh_server), first_report.new_version + ".post1"
    wheel = _patched_wheel(new_version, tmp_path)
    report = provision(device, ssh, replace(install, wheel=wheel, upgrade=True), log=lambda line: None)
    assert (report.action, report.new_version, report.agent_version) == ("upgraded", new_version, new_version)
    assert report.old_version == first_report.new_version
    assert f"→ {new_version}" in report.summary()
    assert _describe(device).agent_version == new_version
    assert _agent_pid(ssh_server) != old_pid and "edgefarm-agent" not in _cmdline(old_pid)


@pytest.mark.slow
def test_refused_key_is_a_clear_error(ssh, device, ssh_server, tmp_path) -> None:
    stranger = tmp_path / "stranger_key"
    _keygen(stranger)
    with pytest.raises(ProvisionError, match=rf"ssh key {re.escape(str(stranger))} was refused by "
                                             rf"{BOARD_USER}@127.0.0.1:{ssh_server.port}; add its public key to "
                                             r"~/.ssh/authorized_keys on the board or pass --ssh-key"):
        open_board(device, replace(ssh, key=stranger))


@pytest.mark.slow
def test_unknown_host_key_needs_accept_new_host_key(ssh, device, ssh_server, tmp_path) -> None:
    known_hosts = tmp_path / "known_hosts"
    with pytest.raises(ProvisionError, match=rf"host key of \[127.0.0.1\]:{ssh_server.port} is not in "
                                             r".*ssh-ed25519 SHA256:.*pass --accept-new-host-key"):
        open_board(device, replace(ssh, known_hosts=known_hosts))
    assert not known_hosts.exists()
    open_board(device, replace(ssh, known_hosts=known_hosts, accept_new_host_key=True)).close()
    assert ssh_server.host_key_line in known_hosts.read_text()
    open_board(device, replace(ssh, known_hosts=known_hosts)).close()     # remembered


@pytest.mark.slow
def test_closed_port_is_a_clear_error(ssh, device) -> None:
    with pytest.raises(ProvisionError, match=r"connection refused at 127.0.0.1:\d+; is sshd running"):
        open_board(device, replace(ssh, port=_free_port()))


@pytest.mark.slow
def test_failing_remote_command_names_device_step_and_stderr(ssh, device) -> None:
    board = open_board(device, ssh)
    try:
        with pytest.raises(ProvisionError, match=r"device 'board-01': step 'list the missing' failed \(exit 2\): "
                                                 r"ls: cannot access '/nonexistent-edgefarm'"):
            board.run("list the missing", "ls /nonexistent-edgefarm")
    finally:
        board.close()


# --- command construction, no sshd: the systemd path cannot run here (PID 1 is not systemd) ----------

class RecordingBoard:
    """Stands in for Board where only the commands sent are checked; `answers` maps a command to its output."""

    def __init__(self, answers: dict[str, str] | None = None) -> None:
        self.answers, self.commands, self.files = answers or {}, [], {}

    def run(self, step: str, command: str, timeout: float = 0) -> str:
        self.commands.append(command)
        return self.answers.get(command, "")

    def succeeds(self, step: str, command: str, timeout: float = 0) -> bool:
        self.commands.append(command)
        return True

    def write(self, step: str, path: PurePosixPath, data: bytes, mode: int) -> None:
        self.files[str(path)] = (data.decode(), mode)


PI_PATHS = BoardPaths(PurePosixPath("/home/pi"))
PI = Device("rpi5-01", "192.0.2.20", 50051, {}, ("litert",))


def test_systemd_user_unit_when_not_root() -> None:
    board = RecordingBoard()
    service = detect_service(board, PI_PATHS)
    assert service == SystemdService(PI_PATHS, user_unit=True)
    service.install(board, agent_command(PI, PI_PATHS))
    service.start(board)
    unit, mode = board.files["/home/pi/.config/systemd/user/edgefarm-agent.service"]
    assert ("ExecStart=/home/pi/.edgefarm/venv/bin/edgefarm-agent serve --port 50051 --cache-dir "
            "/home/pi/.edgefarm/cache --host 0.0.0.0 --tls-dir /home/pi/.edgefarm/tls\n") in unit
    assert "WantedBy=default.target" in unit and mode == 0o644
    assert board.commands[-3:] == ["systemctl --user daemon-reload && systemctl --user enable edgefarm-agent",
                                   'loginctl enable-linger "$(id -un)"', "systemctl --user restart edgefarm-agent"]


def test_the_agent_serves_the_security_devices_yaml_declares() -> None:
    def tail(device: Device) -> list[str]:
        return agent_command(device, PI_PATHS)[6:]   # after --port and --cache-dir

    assert tail(PI) == ["--host", "0.0.0.0", "--tls-dir", "/home/pi/.edgefarm/tls"]
    lab = replace(PI, security="token")
    assert tail(lab) == ["--host", "0.0.0.0", "--token-file", "/home/pi/.edgefarm/tls/token", "--insecure-plaintext"]
    here = Device("here", "127.0.0.1", 50051, {}, ("litert",))
    assert tail(here) == ["--host", "127.0.0.1"]
    assert tail(replace(here, security="tls"))[2:] == ["--tls-dir", "/home/pi/.edgefarm/tls"]


def test_systemd_system_unit_as_root() -> None:
    board = RecordingBoard({"id -u": "0\n"})
    service = detect_service(board, PI_PATHS)
    service.install(board, agent_command(PI, PI_PATHS))
    unit, _ = board.files["/etc/systemd/system/edgefarm-agent.service"]
    assert "WantedBy=multi-user.target" in unit and "Restart=on-failure" in unit
    assert not any("loginctl" in command for command in board.commands)


def test_tensorrt_gets_system_site_packages_and_extras() -> None:
    jetson = Device("orin-01", "192.0.2.10", 50051, {}, ("tensorrt", "onnxruntime"))
    settings = InstallSettings(Path("edgefarm-0.1.0-py3-none-any.whl"), Path("ca"))
    wheel = PurePosixPath("/home/nvidia/.edgefarm/wheels/edgefarm-0.1.0-py3-none-any.whl")
    paths = BoardPaths(PurePosixPath("/home/nvidia"))
    assert "-m venv --system-site-packages /home/nvidia/.edgefarm/venv" in venv_command(jetson, paths, settings)
    assert "--system-site-packages" not in venv_command(PI, PI_PATHS, settings)
    assert pip_install_command(jetson, paths, settings, wheel).endswith(
        f"'edgefarm[onnxruntime,tensorrt] @ file://{wheel}'")
