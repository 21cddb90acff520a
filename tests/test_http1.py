"""HTTP/1.1 framing (loadtests/http1.py), shared by the load client, the stop client and the capacity probe: answers
delimited by length and by chunks, Connection: close, and bytes that are no answer, against literal bytes."""

from __future__ import annotations

import pytest

from loadtests import http1, scenarios
from servers.matrix import load

TEXT = b"content-type: text/plain; charset=utf-8\r\n"
HEAD = b"HTTP/1.1 200 OK\r\ndate: now\r\ncontent-length: 13\r\n" + TEXT + b"\r\n"
PLAIN = http1.Expected.of(scenarios.plan(load().scenario("plaintext"), scenarios.Target("127.0.0.1", 9)))


def test_a_length_framed_answer_is_whole_only_with_its_last_byte() -> None:
    wire = HEAD + b"Hello, World!" + b"HTTP/1.1 200 OK\r\n"  # the next answer's first bytes behind it
    for cut in (0, 10, len(HEAD) - 1, len(HEAD), len(HEAD) + 12):
        assert http1.read(wire, cut) is None, cut
    response = http1.read(bytearray(wire), len(HEAD) + 13)
    assert response is not None and response.end == len(HEAD) + 13 and response.head == HEAD
    assert (response.status, response.body, response.framing) == (200, b"Hello, World!", "length")
    assert not response.close
    assert response.header(b"content-type") == b"text/plain; charset=utf-8" and response.header(b"server") is None
    assert PLAIN.verdict(response) is None
    assert http1.read(wire).end == len(HEAD) + 13  # the whole buffer by default: only the first answer is read


def test_a_chunked_answer_with_an_extension_and_trailers() -> None:
    wire = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" + TEXT + b"\r\n"
            b"5;x=1\r\nHello\r\n8\r\n, World!\r\n0\r\nx-trailer: 1\r\n\r\n")  # fmt: skip
    for cut in range(len(wire)):
        assert http1.read(wire, cut) is None, cut
    response = http1.read(wire)
    assert response is not None and response.end == len(wire) and response.body == b"Hello, World!"
    assert response.framing == "chunked" and PLAIN.verdict(response) == "framing chunked, expected length"


def test_connection_close_is_noted() -> None:
    response = http1.read(HEAD.replace(b"date: now", b"Connection: close") + b"Hello, World!")
    assert response is not None and response.close and PLAIN.verdict(response) is None


@pytest.mark.parametrize(
    ("wire", "error"),
    [
        (HEAD.replace(b"200 OK", b"503 Busy") + b"Hello, World!", "status 503"),
        (HEAD.replace(TEXT, b"") + b"Hello, World!", "content-type missing"),
        (HEAD.replace(b"text/plain", b"text/html") + b"Hello, World!", "content-type text/html; charset=utf-8"),
        (HEAD.replace(b": 13", b": 12") + b"Hello, World", "wrong body (12 bytes, expected 13)"),
    ],
)
def test_a_whole_answer_is_judged_part_by_part(wire: bytes, error: str) -> None:
    response = http1.read(wire)
    assert response is not None and response.end == len(wire) and PLAIN.verdict(response) == error


@pytest.mark.parametrize(
    ("wire", "error"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 2x0 OK\r\ncontent-length: 0\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\n" + TEXT + b"\r\nHello, World!", "neither content-length nor chunked"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", "content-length b'-1'"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", "chunk size b'zz'"),
        (b"HTTP/1.1 200 OK\r\nx-filler: " + b"x" * 20_000, "no end of headers in 16 KiB"),
    ],
)
def test_bytes_that_are_no_answer_are_a_protocol_error(wire: bytes, error: str) -> None:
    with pytest.raises(http1.ProtocolError, match=error.replace("(", r"\(")):
        http1.read(wire)


def test_a_connection_to_itself_is_refused_not_read_as_a_server() -> None:
    """A socket bound to a port and connected to that same port joins itself (TCP's simultaneous open), as a probe of
    an ephemeral port nothing listens on can by chance: it then reads its own request and holds the server's port.
    The launcher's probe and the clients refuse it."""
    import errno
    import socket

    import pytest

    from core.loopback import refuse_itself, to_itself

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.connect(("127.0.0.1", port))  # succeeds: nothing else listens there
        assert to_itself(sock)
        with pytest.raises(ConnectionRefusedError) as raised:
            refuse_itself(sock)
        assert raised.value.errno == errno.ECONNREFUSED
    with socket.socket() as other, socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        other.connect(server.getsockname())
        assert not to_itself(other)
