"""How the controller authenticates to agents: loopback agents speak plaintext; any other
agent gets mutual TLS with the farm CA's controller certificate, plus the farm token."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from edgefarm.agent.security import TOKEN_METADATA, is_loopback

if TYPE_CHECKING:
    from edgefarm.controller.provision.ca import TlsMaterial


@dataclass(frozen=True)
class ChannelSecurity:
    tls: TlsMaterial | None = None
    token: str | None = None

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((TOKEN_METADATA, self.token),) if self.token else ()

    def credentials(self) -> grpc.ChannelCredentials:
        assert self.tls is not None
        return grpc.ssl_channel_credentials(self.tls.ca_cert, self.tls.key, self.tls.cert)


PLAINTEXT = ChannelSecurity()


def host_of(address: str) -> str:
    host = address.rsplit(":", 1)[0]
    return host[1:-1] if host.startswith("[") else host


def security_for(address: str, ca_dir: Path | None = None) -> ChannelSecurity:
    """Plaintext for loopback agents; the farm's mutual-TLS material (and token) for the rest."""
    if is_loopback(host_of(address)):
        return PLAINTEXT
    # cryptography loads only when a remote board is dialled: local runs start faster without it
    from edgefarm.controller.provision.ca import CONTROLLER_NAME, default_ca_dir, read_token, tls_material

    ca_dir = ca_dir or default_ca_dir()
    return ChannelSecurity(tls_material(ca_dir, CONTROLLER_NAME), read_token(ca_dir))
