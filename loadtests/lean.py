"""The lean client: one keep-alive gevent socket per Locust user, pre-encoded requests, byte-exact checks.

Stock FastHttpUser spends most of a 2-core machine's load-generator CPU in its own HTTP machinery, so the lab would
chart the client. This client does the least a correct HTTP/1.1 client must: write the request bytes, read a
response delimited by Content-Length or chunked encoding, honour `Connection: close`, and compare the body with the
expected bytes. It also speaks just enough RFC 6455 for the websocket echo scenario.
"""

from __future__ import annotations

from gevent import socket

from loadtests.scenarios import Plan, Target

RECV = 65536


class ProtocolError(Exception):
    """The server's bytes are not a response this client can delimit."""


class Connection:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.sock: socket.socket | None = None
        self.buffer = bytearray()

    def open(self) -> None:
        self.close()
        self.sock = socket.create_connection((self.target.host, self.target.port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # No timeout once connected: each gevent timeout is an object per call on the hot path. A run is bounded
        # by Locust stopping its users, which ends a wait on a silent server too.
        self.sock.settimeout(None)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.buffer.clear()

    def _fill(self) -> None:
        data = self.sock.recv(RECV)
        if not data:
            raise ConnectionResetError("server closed the connection")
        self.buffer += data

    def _until(self, marker: bytes) -> bytes:
        while (end := self.buffer.find(marker)) < 0:
            self._fill()
        data = bytes(self.buffer[:end])
        del self.buffer[: end + len(marker)]
        return data

    def _exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def _send(self, data: bytes) -> None:
        sent = self.sock.send(data)  # plain send: sendall's chunking costs more than it saves for small requests
        if sent < len(data):
            self.sock.sendall(data[sent:])

    def http(self, request: bytes) -> tuple[int, bytes]:
        """Send one request and read one response: (status, body). Reconnects when the server closed."""
        if self.sock is None:
            self.open()
        self._send(request)
        head = self._until(b"\r\n\r\n")
        if head[:7] != b"HTTP/1." or len(head) < 12:
            raise ProtocolError(f"not an HTTP/1.x status line: {head[:40]!r}")
        status = int(head[9:12])
        lower = head.lower()
        at = lower.find(b"\r\ncontent-length:")
        if at >= 0:
            end = head.find(b"\r\n", at + 2)
            body = self._exactly(int(head[at + 17 : end if end >= 0 else None]))
        elif b"\r\ntransfer-encoding: chunked" in lower:
            body = self._chunked()
        else:
            raise ProtocolError("response has neither content-length nor chunked encoding")
        if b"\r\nconnection: close" in lower:
            self.close()
        return status, body

    def _chunked(self) -> bytes:
        parts = []
        while size := int(self._until(b"\r\n").split(b";", 1)[0], 16):
            parts.append(self._exactly(size))
            self._exactly(2)
        while self._until(b"\r\n"):  # trailers, then the blank line
            pass
        return b"".join(parts)

    def websocket_open(self, handshake: bytes) -> None:
        self.open()
        self.sock.sendall(handshake)
        head = self._until(b"\r\n\r\n")
        if head[9:12] != b"101":
            raise ProtocolError(f"websocket upgrade refused: {head[:40]!r}")

    def websocket_echo(self, frame: bytes) -> bytes:
        """Send one masked frame; return the payload of the next frame the server sends."""
        self._send(frame)
        first, second = self._exactly(2)
        if first & 0x0F == 0x8:
            raise ConnectionResetError("server sent a websocket close frame")
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(self._exactly(2), "big")
        elif length == 127:
            length = int.from_bytes(self._exactly(8), "big")
        return self._exactly(length)


def check(plan: Plan, status: int, body: bytes) -> str | None:
    """None for the exact expected answer, else a short reason (few distinct values, to count errors by)."""
    if status != plan.status:
        return f"status {status}"
    if body != plan.body:
        return f"wrong body ({len(body)} bytes, expected {len(plan.body)})"
    return None


class ResponseError(Exception):
    """A response that was not the exact expected answer; its text is the reason."""
