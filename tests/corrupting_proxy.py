"""A TCP proxy that flips one byte of an artifact upload on its way to the agent.

Plaintext gRPC is HTTP/2: after the client's 24-byte preface, frames of a 9-byte header plus a
payload. The proxy reads the client's frames and flips the middle byte of the first DATA frame
that starts after `after_bytes` of DATA payload, which is deep inside an upload chunk's bytes:
the agent sees intact HTTP/2 and protobuf carrying one wrong artifact byte, as a bad NIC or
cable would deliver it. Only one byte, once: a retry through the proxy arrives intact.
"""
from __future__ import annotations

import socket
import threading

_PREFACE_BYTES = 24
_FRAME_HEADER_BYTES = 9
_DATA_FRAME = 0
_IO_TIMEOUT_S = 120.0


class CorruptingProxy:
    def __init__(self, upstream: tuple[str, int], after_bytes: int = 512 * 1024) -> None:
        self.upstream, self.after_bytes = upstream, after_bytes
        self.flipped = threading.Event()
        self._data_seen = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = [self._listener]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]

    def __enter__(self) -> CorruptingProxy:
        self._threads[0].start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sock in self._sockets:
            _close(sock)
        for thread in self._threads:
            thread.join(timeout=10)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                agent = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                return  # closed by __exit__
            for sock in (client, agent):
                sock.settimeout(_IO_TIMEOUT_S)
            self._sockets += [client, agent]
            for pump, ends in ((self._client_to_agent, (client, agent)), (_copy, (agent, client))):
                self._threads.append(threading.Thread(target=pump, args=ends, daemon=True))
                self._threads[-1].start()

    def _client_to_agent(self, client: socket.socket, agent: socket.socket) -> None:
        try:
            agent.sendall(_read_exactly(client, _PREFACE_BYTES))
            while True:
                header = _read_exactly(client, _FRAME_HEADER_BYTES)
                payload = _read_exactly(client, int.from_bytes(header[:3], "big"))
                agent.sendall(header + self._maybe_flip(header[3], payload))
        except OSError:
            pass
        finally:
            _close(agent)

    def _maybe_flip(self, frame_type: int, payload: bytes) -> bytes:
        if frame_type != _DATA_FRAME:
            return payload
        self._data_seen += len(payload)
        if self.flipped.is_set() or self._data_seen - len(payload) < self.after_bytes or len(payload) < 64:
            return payload
        self.flipped.set()
        middle = len(payload) // 2
        return payload[:middle] + bytes([payload[middle] ^ 0xFF]) + payload[middle + 1:]


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    parts, left = [], n
    while left:
        data = sock.recv(min(left, 1 << 20))
        if not data:
            raise ConnectionError("peer closed")
        parts.append(data)
        left -= len(data)
    return b"".join(parts)


def _copy(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(1 << 20):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        _close(sink)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
