"""edgefarm-agent: serve the Agent gRPC service on this board."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from edgefarm.agent import PROTOCOL_VERSION, __version__
from edgefarm.agent.security import SecurityConfigError, is_loopback, load_tls_dir, load_token, server_credentials
from edgefarm.agent.server import AgentService, make_server
from edgefarm.agent.store import ArtifactStore

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"   # journald stamps each line itself

EXAMPLES = """examples:
  edgefarm-agent serve --host 127.0.0.1 --port 50051 --cache-dir ~/.cache/edgefarm-agent
  edgefarm-agent serve --port 0          # ephemeral port, printed on the first line
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgefarm-agent", description=__doc__,
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__} ({PROTOCOL_VERSION})")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the Agent service", epilog=EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    serve.add_argument("--port", type=int, default=50051, help="port; 0 picks a free one")
    serve.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "edgefarm-agent",
                       help="where artifacts are stored, named by sha256")
    serve.add_argument("--max-cache-mb", type=int, default=4096,
                       help="artifact cache cap (LRU; artifacts used in the last hour stay)")
    serve.add_argument("--max-artifact-mb", type=int, default=1024, help="largest single upload accepted")
    serve.add_argument("--tls-dir", type=Path, default=None,
                       help="serve mutual TLS with ca.crt, agent.crt, agent.key from here (edgefarm provision)")
    serve.add_argument("--token-file", type=Path, default=None,
                       help="require the per-farm token on every call (the minimum off loopback without TLS)")
    serve.add_argument("--insecure-plaintext", action="store_true",
                       help="allow plaintext (token-protected) gRPC off loopback: trusted lab networks only")
    serve.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, default="INFO",
                       help="least severe log records written to stderr (default: INFO)")
    return parser


def configure_logging(level: str) -> None:
    """Log records to stderr; under systemd (JOURNAL_STREAM set) without a timestamp of our own."""
    fmt = JOURNAL_LOG_FORMAT if os.environ.get("JOURNAL_STREAM") else LOG_FORMAT
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)


def _plaintext_refusal(args: argparse.Namespace) -> str | None:
    """Off loopback: mutual TLS, or at the very least a token plus an explicit --insecure-plaintext."""
    if is_loopback(args.host) or args.tls_dir:
        return None
    if args.token_file and args.insecure_plaintext:
        return None
    return (f"refusing unauthenticated plaintext gRPC on non-loopback address {args.host}; "
            "pass --tls-dir (mutual TLS, installed by 'edgefarm provision'), or --token-file with "
            "--insecure-plaintext on a trusted lab network, or bind 127.0.0.1")


def serve(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    refusal = _plaintext_refusal(args)
    if refusal:
        print(f"edgefarm-agent: {refusal}", file=sys.stderr)
        return 2
    credentials = server_credentials(load_tls_dir(args.tls_dir)) if args.tls_dir else None
    token = load_token(args.token_file) if args.token_file else None
    store = ArtifactStore(args.cache_dir, args.max_cache_mb << 20, args.max_artifact_mb << 20)
    server, port = make_server(AgentService(store), args.host, args.port, credentials=credentials, token=token)
    server.start()
    # The first stdout line is read by the controller's LocalAgent to learn the port.
    print(f"edgefarm-agent {__version__} listening on {args.host}:{port} pid {os.getpid()}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=2).wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return serve(args)
    except (OSError, SecurityConfigError) as exc:
        print(f"edgefarm-agent: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
