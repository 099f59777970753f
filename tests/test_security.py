"""Agents off loopback require mutual TLS (or at least the farm token); tested with real agent
processes and real gRPC channels."""
import asyncio
import re
import socket
import stat
import subprocess
import sys

import pytest
from cryptography import x509

from edgefarm.controller.agents.canary import health_check
from edgefarm.controller.agents.client import AgentClient, AgentRejectedError, AgentUnreachableError
from edgefarm.controller.agents.security import PLAINTEXT, ChannelSecurity, security_for
from edgefarm.controller.cli import main
from edgefarm.controller.config.inventory import Device, load_inventory
from edgefarm.controller.provision.ca import (
    CONTROLLER_NAME,
    TlsMaterial,
    init_ca,
    issue_agent_cert,
    issue_controller_cert,
    tls_material,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _agent(tmp_path, *flags: str, host: str = "127.0.0.1", port: int | None = None):
    port = port or _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edgefarm.agent", "serve", "--host", host, "--port", str(port),
                             "--cache-dir", str(tmp_path / "cache"), *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "listening" in line, proc.stderr.read()
    return proc, f"127.0.0.1:{port}"


def _stop(proc) -> None:
    proc.terminate()
    proc.wait(timeout=10)
    proc.stdout.close()
    proc.stderr.close()


@pytest.fixture(scope="module")
def farm_ca(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ca")
    ca = init_ca(directory)
    tls = directory / "agent-tls"
    tls.mkdir()
    cert, key = issue_agent_cert(ca, "board", ["127.0.0.1"])
    (tls / "ca.crt").write_bytes(ca.cert_pem)
    (tls / "agent.crt").write_bytes(cert)
    (tls / "agent.key").write_bytes(key)
    return directory, tls


@pytest.fixture(scope="module")
def tls_agent(farm_ca, tmp_path_factory):
    proc, address = _agent(tmp_path_factory.mktemp("tls-agent"), "--tls-dir", str(farm_ca[1]))
    yield address
    _stop(proc)


def _describe(address: str, security: ChannelSecurity) -> str:
    client = AgentClient("board", address, connect_timeout_s=3, security=security)
    try:
        return client.connect().agent_version
    finally:
        client.close()


def test_controller_with_the_farm_certificate_is_served(farm_ca, tls_agent):
    assert _describe(tls_agent, ChannelSecurity(tls_material(farm_ca[0], CONTROLLER_NAME)))


def test_unauthenticated_plaintext_client_is_refused(tls_agent):
    with pytest.raises(AgentUnreachableError):
        _describe(tls_agent, PLAINTEXT)


def test_certificate_from_another_ca_is_refused(farm_ca, tls_agent, tmp_path):
    other = init_ca(tmp_path / "other-ca")
    cert, key = issue_controller_cert(other, "intruder")
    intruder = ChannelSecurity(TlsMaterial(ca_cert=(farm_ca[1] / "ca.crt").read_bytes(), cert=cert, key=key))
    with pytest.raises(AgentUnreachableError):
        _describe(tls_agent, intruder)


def test_token_fallback_refuses_calls_without_the_token(tmp_path):
    token = "f" * 64
    (tmp_path / "token").write_text(token)
    proc, address = _agent(tmp_path, "--token-file", str(tmp_path / "token"))
    try:
        with pytest.raises(AgentRejectedError, match="missing or wrong farm token"):
            _describe(address, PLAINTEXT)
        assert _describe(address, ChannelSecurity(token=token))
    finally:
        _stop(proc)


def test_plaintext_off_loopback_is_refused_at_start(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgefarm.agent", "serve", "--host", "0.0.0.0", "--port", "0",
                           "--cache-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "refusing unauthenticated plaintext gRPC on non-loopback address 0.0.0.0" in proc.stderr
    assert "--tls-dir" in proc.stderr


def test_remote_devices_get_mutual_tls_by_default(farm_ca, monkeypatch):
    monkeypatch.setenv("EDGEFARM_CA_DIR", str(farm_ca[0]))
    assert security_for(Device("here", "127.0.0.1", 50051, {}, ("onnxruntime",))) is PLAINTEXT
    remote = security_for(Device("orin", "192.0.2.10", 50051, {}, ("onnxruntime",)))  # never dialled here
    assert remote.mode == "tls" and remote.tls is not None and remote.token


# --- boards dialled as devices.yaml's `security` key declares ----------------------------------

@pytest.fixture(scope="module")
def declared_farm(tmp_path_factory):
    """A TLS board whose certificate came from `edgefarm ca issue` (no provisioning), and a token board,
    both real agents on loopback. Yields (root, CA dir, {name: port})."""
    root = tmp_path_factory.mktemp("declared")
    assert main(["ca", "init", "--dir", str(root / "ca")]) == 0
    ports = {"tls-board": _free_port(), "token-board": _free_port()}
    devices = _declare(root, ports, {"tls-board": "tls", "token-board": "token"})
    assert main(["ca", "issue", "tls-board", "--devices", str(devices), "--dir", str(root / "ca"),
                 "--out", str(root / "tls-board-tls"), "--host", "localhost"]) == 0
    agents = [_agent(root / "a1", "--tls-dir", str(root / "tls-board-tls"), port=ports["tls-board"])[0],
              _agent(root / "a2", "--token-file", str(root / "ca" / "token"), port=ports["token-board"])[0]]
    yield root, root / "ca", ports
    for proc in agents:
        _stop(proc)


def _declare(root, ports: dict[str, int], security: dict[str, str], name: str = "devices.yaml"):
    lines = [f"  - {{name: {board}, host: 127.0.0.1, port: {port}, security: {security[board]}, "
             "backends: [onnxruntime]}" for board, port in ports.items()]
    path = root / name
    path.write_text("devices:\n" + "\n".join(lines) + "\n")
    return path


def test_ca_issue_writes_a_private_tls_dir_for_the_board(declared_farm):
    root, ca_dir, _ = declared_farm
    tls = root / "tls-board-tls"
    assert stat.S_IMODE(tls.stat().st_mode) == 0o700
    assert sorted(p.name for p in tls.iterdir()) == ["agent.crt", "agent.key", "ca.crt", "token"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in tls.iterdir())
    cert = x509.load_pem_x509_certificate((tls / "agent.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert (ca_dir / "issued" / "tls-board.crt").read_bytes() == (tls / "agent.crt").read_bytes()


def test_a_tls_board_and_a_token_board_are_reached_as_declared(declared_farm, monkeypatch, capsys):
    root, ca_dir, _ = declared_farm
    monkeypatch.setenv("EDGEFARM_CA_DIR", str(ca_dir))
    assert main(["devices", "check", str(root / "devices.yaml"), "--ping"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"tls-board: .*, agent \S+ \(tls\)", out) and re.search(r"token-board: .*\(token\)", out)
    for board in load_inventory(root / "devices.yaml"):   # the canary too: what quarantine healing runs
        assert asyncio.run(health_check(board)) == (True, "ok")


def test_misdeclared_security_names_the_real_cause(declared_farm, monkeypatch, capsys):
    """Before: both said only "no agent answered at ... within 3 s"."""
    root, ca_dir, ports = declared_farm
    monkeypatch.setenv("EDGEFARM_CA_DIR", str(ca_dir))
    swapped = _declare(root, ports, {"tls-board": "token", "token-board": "tls"}, "swapped.yaml")
    assert main(["devices", "check", str(swapped), "--ping"]) == 1
    out = capsys.readouterr().out
    assert "tls-board: unreachable: device 'tls-board' at 127.0.0.1:" in out
    assert "it probably expects TLS; set 'security: tls' for tls-board in devices.yaml" in out
    assert "board 'token-board' expects TLS (security: tls) but the agent there answers without TLS" in out


def test_a_controller_of_another_farm_is_told_the_certificate_is_foreign(declared_farm, tmp_path, monkeypatch,
                                                                          capsys):
    root, _, _ = declared_farm
    assert main(["ca", "init", "--dir", str(tmp_path / "other")]) == 0
    monkeypatch.setenv("EDGEFARM_CA_DIR", str(tmp_path / "other"))
    assert main(["devices", "check", str(root / "devices.yaml"), "--ping"]) == 1
    out = capsys.readouterr().out
    assert "tls-board: unreachable: device 'tls-board' at 127.0.0.1:" in out
    assert "the agent's certificate is not from this farm's CA; issue one with 'edgefarm ca issue tls-board'" in out
    assert "token-board: refused: " in out and "missing or wrong farm token" in out


def test_a_tls_board_without_controller_credentials_says_so(declared_farm, tmp_path, monkeypatch, capsys):
    root, _, _ = declared_farm
    monkeypatch.setenv("EDGEFARM_CA_DIR", str(tmp_path / "no-ca"))
    assert main(["devices", "check", str(root / "devices.yaml"), "--ping"]) == 1
    out = capsys.readouterr().out
    assert "tls-board: cannot dial: board 'tls-board' expects TLS (security: tls) but this controller has no " \
           "credentials for it" in out
    assert "'edgefarm ca init' creates it" in out
