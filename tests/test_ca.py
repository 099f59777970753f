"""The farm CA: certificates verify against their own CA only, secrets are 0600, no silent overwrite."""
from __future__ import annotations

import argparse
import ipaddress
import stat
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from edgefarm.api.errors import BadInputError
from edgefarm.controller.cli import ca as ca_cli
from edgefarm.controller.provision.ca import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    CONTROLLER_NAME,
    TOKEN_FILE,
    CaError,
    TlsMaterial,
    init_ca,
    issue_agent_cert,
    issue_controller_cert,
    load_ca,
    read_token,
    save_issued,
    tls_material,
    verify_chain,
)


@pytest.fixture
def farm(tmp_path: Path):
    return init_ca(tmp_path / "ca")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_agent_cert_verifies_and_names_its_hosts(farm) -> None:
    cert_pem, key_pem = issue_agent_cert(farm, "jetson-01", ["192.0.2.10", "jetson-01.lab"])
    verify_chain(cert_pem, farm.cert_pem)
    cert = x509.load_pem_x509_certificate(cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.0.2.10")]
    assert san.get_values_for_type(x509.DNSName) == ["jetson-01.lab"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert b"PRIVATE KEY" in key_pem


def test_controller_cert_is_for_client_auth(farm) -> None:
    cert_pem, _ = issue_controller_cert(farm, "ci-runner")
    verify_chain(cert_pem, farm.cert_pem)
    usage = x509.load_pem_x509_certificate(cert_pem).extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(usage.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_cert_from_another_farm_is_rejected(farm, tmp_path: Path) -> None:
    other = init_ca(tmp_path / "other")
    cert_pem, _ = issue_agent_cert(other, "intruder", ["192.0.2.66"])
    with pytest.raises(CaError, match=r"certificate 'intruder' was not issued by this farm's CA "
                                      rf"'{farm.name}' \(its issuer is '{other.name}'\)"):
        verify_chain(cert_pem, farm.cert_pem)


def test_garbage_is_not_a_certificate(farm) -> None:
    with pytest.raises(CaError, match="not a PEM-encoded X.509 certificate"):
        verify_chain(b"hello", farm.cert_pem)


def test_secrets_are_private(farm) -> None:
    directory = farm.directory
    assert _mode(directory / CA_KEY_FILE) == 0o600
    assert _mode(directory / TOKEN_FILE) == 0o600
    assert _mode(directory / "issued" / f"{CONTROLLER_NAME}.key") == 0o600
    assert len(read_token(directory)) == 64 and int(read_token(directory), 16) >= 0


def test_refuses_to_overwrite_without_force(farm) -> None:
    before = (farm.directory / CA_CERT_FILE).read_bytes()
    with pytest.raises(CaError, match=r"a farm CA already exists in .*pass --force"):
        init_ca(farm.directory)
    assert (farm.directory / CA_CERT_FILE).read_bytes() == before
    replaced = init_ca(farm.directory, force=True)
    assert replaced.cert_pem != before and _mode(farm.directory / CA_KEY_FILE) == 0o600


def test_load_missing_ca_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(CaError, match="no farm CA in .*edgefarm ca init"):
        load_ca(tmp_path)


def test_tls_material_feeds_grpc_credentials(farm) -> None:
    cert, key = issue_agent_cert(farm, "board-01", ["127.0.0.1"])
    save_issued(farm.directory, "board-01", cert, key)
    agent, controller = tls_material(farm.directory, "board-01"), tls_material(farm.directory, CONTROLLER_NAME)
    assert agent == TlsMaterial(farm.cert_pem, cert, key)
    grpc.ssl_server_credentials([(agent.key, agent.cert)], root_certificates=agent.ca_cert, require_client_auth=True)
    grpc.ssl_channel_credentials(controller.ca_cert, controller.key, controller.cert)


def test_tls_material_rejects_a_stale_certificate(farm) -> None:
    init_ca(farm.directory, force=True)       # a new CA; the controller cert saved earlier is from the old one
    save_issued(farm.directory, "old", *issue_controller_cert(farm, "old"))
    with pytest.raises(CaError, match="was not issued by this farm's CA"):
        tls_material(farm.directory, "old")
    with pytest.raises(CaError, match="missing; agents get their certificate from 'edgefarm provision"):
        tls_material(farm.directory, "never-issued")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="edgefarm")
    ca_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_init_then_refuse(tmp_path: Path, capsys) -> None:
    args = _parse(["ca", "init", "--dir", str(tmp_path / "ca")])
    assert args.handler(args) == 0
    assert "farm CA created in" in capsys.readouterr().out
    with pytest.raises(BadInputError, match="already exists"):  # the API's; the CLI prints it, exit 2
        args.handler(args)
