"""How the controller dials an agent: as its devices.yaml `security` key declares it.

- plaintext: loopback only (the inventory refuses it anywhere else);
- token: plaintext gRPC carrying the farm token, for a trusted lab network;
- tls: mutual TLS with the farm CA's controller certificate, plus the farm token.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from edgefarm.agent.security import TOKEN_METADATA, is_loopback

if TYPE_CHECKING:
    from edgefarm.controller.config.inventory import Device
    from edgefarm.controller.provision.ca import TlsMaterial


class SecurityError(Exception):
    """The controller lacks what a board's declared security needs; the message says how to get it."""


@dataclass(frozen=True)
class ChannelSecurity:
    tls: TlsMaterial | None = None
    token: str | None = None

    @property
    def mode(self) -> str:
        """tls, token or plaintext: what devices.yaml calls this way of dialling."""
        return "tls" if self.tls else "token" if self.token else "plaintext"

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((TOKEN_METADATA, self.token),) if self.token else ()

    def credentials(self) -> grpc.ChannelCredentials:
        assert self.tls is not None
        return grpc.ssl_channel_credentials(self.tls.ca_cert, self.tls.key, self.tls.cert)


PLAINTEXT = ChannelSecurity()


def host_of(address: str) -> str:
    host = address.rsplit(":", 1)[0]
    return host[1:-1] if host.startswith("[") else host


def security_for(device: Device, ca_dir: Path | None = None) -> ChannelSecurity:
    """What dialling `device` as declared takes; SecurityError names what is missing and how to make it."""
    return security_of(device.name, device.security, ca_dir)


def security_by_address(name: str, address: str, ca_dir: Path | None = None) -> ChannelSecurity:
    """A board known only by address: plaintext on loopback, mutual TLS elsewhere (devices.yaml's default)."""
    return security_of(name, "plaintext" if is_loopback(host_of(address)) else "tls", ca_dir)


def security_of(name: str, mode: str, ca_dir: Path | None = None) -> ChannelSecurity:
    if mode == "plaintext":
        return PLAINTEXT
    # cryptography loads only when a secured board is dialled: local runs start faster without it
    from edgefarm.controller.provision.ca import CONTROLLER_NAME, CaError, default_ca_dir, read_token, tls_material

    ca_dir = ca_dir or default_ca_dir()
    try:
        token = read_token(ca_dir)
        return ChannelSecurity(tls_material(ca_dir, CONTROLLER_NAME) if mode == "tls" else None, token)
    except CaError as exc:
        what = "TLS" if mode == "tls" else "the farm token"
        raise SecurityError(f"board {name!r} expects {what} (security: {mode}) but this controller has no "
                            f"credentials for it: {exc} (or point $EDGEFARM_CA_DIR at the farm's CA)") from None
