"""How the agent authenticates the controller: mutual TLS with the farm CA, or a per-farm
token as the minimum fallback. Plaintext without either is for loopback only."""
from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc

# Files that `edgefarm provision` installs in the agent's TLS directory.
CA_FILE, CERT_FILE, KEY_FILE, TOKEN_FILE = "ca.crt", "agent.crt", "agent.key", "token"
TOKEN_METADATA = "x-edgefarm-token"


class SecurityConfigError(Exception):
    pass


def is_loopback(host: str) -> bool:
    """The one loopback rule (agent, controller and provisioning): plaintext is allowed only here."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AgentTls:
    ca_cert: bytes
    cert: bytes
    key: bytes


def load_tls_dir(directory: Path) -> AgentTls:
    try:
        return AgentTls(*((directory / name).read_bytes() for name in (CA_FILE, CERT_FILE, KEY_FILE)))
    except OSError as exc:
        raise SecurityConfigError(f"TLS directory {directory}: {exc.strerror}: {exc.filename}; "
                                  "'edgefarm provision DEVICE' installs ca.crt, agent.crt and agent.key") from None


def load_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise SecurityConfigError(f"token file {path}: {exc.strerror}") from None
    if len(token) < 32:
        raise SecurityConfigError(f"token file {path}: the token is too short; 'edgefarm ca init' makes one")
    return token


def server_credentials(tls: AgentTls) -> grpc.ServerCredentials:
    """Mutual TLS: a controller without a certificate from this farm's CA cannot even connect."""
    return grpc.ssl_server_credentials([(tls.key, tls.cert)], root_certificates=tls.ca_cert,
                                       require_client_auth=True)


class TokenInterceptor(grpc.ServerInterceptor):
    """Refuses every call that does not carry the farm token."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        given = dict(handler_call_details.invocation_metadata or ()).get(TOKEN_METADATA, "")
        if hmac.compare_digest(given.encode(), self._token):
            return continuation(handler_call_details)
        return _refusal(continuation(handler_call_details))


def _refusal(handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler:
    def deny(request, context):  # type: ignore[no-untyped-def]
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong farm token")

    if handler is not None and handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny)
    if handler is not None and handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny)
    if handler is not None and handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)
