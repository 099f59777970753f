"""Agents off loopback require mutual TLS (or at least the farm token); tested with real agent
processes and real gRPC channels."""
import socket
import subprocess
import sys

import pytest

from edgefarm.controller.agents.client import AgentClient, AgentRejectedError, AgentUnreachableError
from edgefarm.controller.agents.security import PLAINTEXT, ChannelSecurity
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


def _agent(tmp_path, *flags: str, host: str = "127.0.0.1"):
    port = _free_port()
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
    from edgefarm.controller.agents.security import security_for

    monkeypatch.setenv("EDGEFARM_CA_DIR", str(farm_ca[0]))
    assert security_for("127.0.0.1:50051") is PLAINTEXT
    remote = security_for("192.0.2.10:50051")  # documentation address: never dialled here
    assert remote.tls is not None and remote.token
