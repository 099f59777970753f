"""The farm's certificate authority: one CA per farm, a certificate per agent and per controller.

Agents and the controller authenticate each other with mutual TLS: every agent serves with a
certificate issued by the farm CA (serverAuth, SANs for the board's host name or IP), and the
controller presents one too (clientAuth). Both trust only the farm CA, not the system's roots.

Layout of a CA directory (default: the user config dir, edgefarm/ca):

    ca.crt, ca.key          the CA (P-256; the key is mode 0600 and never leaves this machine)
    token                   64 hex digits: the minimum fallback for boards that cannot do mTLS
    issued/NAME.crt, .key   what was issued to each agent and controller, read by tls_material()
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import platformdirs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgefarm.agent.security import CA_FILE as AGENT_CA_FILE
from edgefarm.agent.security import CERT_FILE as AGENT_CERT_FILE
from edgefarm.agent.security import KEY_FILE as AGENT_KEY_FILE
from edgefarm.agent.security import TOKEN_FILE as AGENT_TOKEN_FILE

CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
TOKEN_FILE = "token"
ISSUED_DIR = "issued"
CONTROLLER_NAME = "controller"
CA_VALID_DAYS = 3650
# A farm's boards are re-provisioned by hand; short-lived certificates would need a renewal
# service the farm does not have. Leaf certificates still never outlive their CA.
LEAF_VALID_DAYS = 3650
# Boards without a real-time clock (Raspberry Pi) can boot a little in the past before NTP
# catches up; a backdated start keeps a fresh certificate valid for them.
BACKDATE = datetime.timedelta(days=1)


class CaError(Exception):
    """The farm CA is missing, already exists, or a certificate does not belong to it."""


@dataclass(frozen=True)
class TlsMaterial:
    """PEM bytes for one party, shaped for grpc.ssl_server_credentials / ssl_channel_credentials."""

    ca_cert: bytes
    cert: bytes
    key: bytes


@dataclass(frozen=True)
class FarmCa:
    directory: Path
    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def name(self) -> str:
        return _common_name(self.certificate)

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)   # init_ca only writes P-256 keys
        return key


def default_ca_dir() -> Path:
    return Path(os.environ.get("EDGEFARM_CA_DIR") or Path(platformdirs.user_config_dir("edgefarm")) / "ca")


# --- the CA itself -----------------------------------------------------------------------------

def init_ca(directory: Path, force: bool = False) -> FarmCa:
    """Create the farm CA, its token and the controller's certificate in `directory`."""
    if not force and (directory / CA_CERT_FILE).exists():
        existing = _describe_existing(directory)
        raise CaError(f"a farm CA already exists in {directory} ({existing}); pass --force to replace it "
                      f"(every board then needs 'edgefarm provision' again)")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    ca = FarmCa(directory, _self_signed(key).public_bytes(serialization.Encoding.PEM), _key_pem(key))
    _write_private(directory / CA_KEY_FILE, ca.key_pem)
    (directory / CA_CERT_FILE).write_bytes(ca.cert_pem)
    _write_private(directory / TOKEN_FILE, (secrets.token_hex(32) + "\n").encode())
    save_issued(directory, CONTROLLER_NAME, *issue_controller_cert(ca, CONTROLLER_NAME))
    return ca


def load_ca(directory: Path) -> FarmCa:
    try:
        return FarmCa(directory, (directory / CA_CERT_FILE).read_bytes(), (directory / CA_KEY_FILE).read_bytes())
    except FileNotFoundError:
        raise CaError(f"no farm CA in {directory}; create one with 'edgefarm ca init' "
                      f"(or pass --ca-dir)") from None


def read_token(directory: Path) -> str:
    try:
        return (directory / TOKEN_FILE).read_text().strip()
    except FileNotFoundError:
        raise CaError(f"no farm token in {directory}; 'edgefarm ca init' creates it") from None


def _self_signed(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    # A random farm id in the name tells two farms' CAs apart in every error message.
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgefarm"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"edgefarm farm CA {secrets.token_hex(4)}")])
    now = _now()
    usage = x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - BACKDATE).not_valid_after(now + datetime.timedelta(days=CA_VALID_DAYS))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(usage, critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    return builder.sign(key, hashes.SHA256())


# --- issuing -----------------------------------------------------------------------------------

def issue_agent_cert(ca: FarmCa, device_name: str, hosts: list[str]) -> tuple[bytes, bytes]:
    """(cert_pem, key_pem) for an agent serving TLS; `hosts` are the names/IPs the controller dials."""
    if not hosts:
        raise CaError(f"device {device_name!r}: an agent certificate needs at least one host name or IP")
    san = x509.SubjectAlternativeName([_general_name(host) for host in dict.fromkeys(hosts)])
    return _issue(ca, device_name, ExtendedKeyUsageOID.SERVER_AUTH, san)


def issue_controller_cert(ca: FarmCa, name: str) -> tuple[bytes, bytes]:
    """(cert_pem, key_pem) the controller presents to agents (mutual TLS client side)."""
    return _issue(ca, name, ExtendedKeyUsageOID.CLIENT_AUTH, None)


def _issue(ca: FarmCa, name: str, purpose: x509.ObjectIdentifier,
           san: x509.SubjectAlternativeName | None) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    ca_cert, now = ca.certificate, _now()
    not_after = min(now + datetime.timedelta(days=LEAF_VALID_DAYS), ca_cert.not_valid_after_utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgefarm"),
                                        x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - BACKDATE).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(_leaf_key_usage(), critical=True)
               .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),
                              critical=False))
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    cert = builder.sign(ca.private_key(), hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _leaf_key_usage() -> x509.KeyUsage:
    # ECDHE handshakes only need signatures from a P-256 leaf key.
    return x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         encipher_only=False, decipher_only=False)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


# --- checking and reading back -----------------------------------------------------------------

def verify_chain(cert_pem: bytes, ca_cert_pem: bytes) -> None:
    """Raise CaError unless `cert_pem` was signed by the CA in `ca_cert_pem` and is valid now."""
    cert, ca_cert = _load_cert(cert_pem, "certificate"), _load_cert(ca_cert_pem, "CA certificate")
    subject, ca_name = _common_name(cert), _common_name(ca_cert)
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise CaError(f"certificate {subject!r} was not issued by this farm's CA {ca_name!r} "
                      f"(its issuer is {_common_name(cert.issuer)!r}); re-provision the board with "
                      f"'edgefarm provision {subject}' to install one from this farm") from None
    now = _now()
    if now < cert.not_valid_before_utc:
        raise CaError(f"certificate {subject!r} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} "
                      f"UTC; check this machine's clock")
    if now > cert.not_valid_after_utc:
        raise CaError(f"certificate {subject!r} expired on {cert.not_valid_after_utc:%Y-%m-%d}; "
                      f"re-provision the board to issue a new one")


def board_tls_files(ca: FarmCa, device_name: str, hosts: list[str]) -> dict[str, bytes]:
    """What an agent's --tls-dir holds, by file name: the farm CA, a new certificate and key for the
    board, and the farm token. The certificate is also kept under issued/, as every issued one is."""
    cert, key = issue_agent_cert(ca, device_name, hosts)
    save_issued(ca.directory, device_name, cert, key)
    token = (read_token(ca.directory) + "\n").encode()
    return {AGENT_CA_FILE: ca.cert_pem, AGENT_CERT_FILE: cert, AGENT_KEY_FILE: key, AGENT_TOKEN_FILE: token}


def save_issued(directory: Path, name: str, cert_pem: bytes, key_pem: bytes) -> None:
    issued = directory / ISSUED_DIR
    issued.mkdir(mode=0o700, exist_ok=True)
    _write_private(issued / f"{name}.key", key_pem)
    (issued / f"{name}.crt").write_bytes(cert_pem)


def tls_material(ca_dir: Path, name: str) -> TlsMaterial:
    """The CA certificate plus what was issued to `name`, checked against this farm's CA."""
    issued = ca_dir / ISSUED_DIR
    try:
        material = TlsMaterial((ca_dir / CA_CERT_FILE).read_bytes(), (issued / f"{name}.crt").read_bytes(),
                               (issued / f"{name}.key").read_bytes())
    except FileNotFoundError as error:
        raise CaError(f"{error.filename}: missing; agents get their certificate from 'edgefarm provision "
                      f"NAME', the controller from 'edgefarm ca init'") from None
    verify_chain(material.cert, material.ca_cert)
    return material


def _load_cert(pem: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise CaError(f"the {what} is not a PEM-encoded X.509 certificate") from None


def _common_name(cert_or_name: x509.Certificate | x509.Name) -> str:
    name = cert_or_name.subject if isinstance(cert_or_name, x509.Certificate) else cert_or_name
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else name.rfc4514_string()


def _describe_existing(directory: Path) -> str:
    try:
        cert = x509.load_pem_x509_certificate((directory / CA_CERT_FILE).read_bytes())
    except ValueError:
        return f"{CA_CERT_FILE} is unreadable"
    return f"{_common_name(cert)}, valid until {cert.not_valid_after_utc:%Y-%m-%d}"


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret as mode 0600 from the first byte: created 0600, then renamed into place."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.replace(temporary, path)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
