"""HTTP/1.1 responses, framed and judged: one module for every HTTP/1.1 client of the lab (the load client's general
path, loadtests/h1flock.py; the stop test's client and its capacity probe, loadtests/stopping.py).

A response is read from the start of a buffer: its status line and headers (at most MAX_HEAD bytes), then a body
delimited by content-length or by the chunked coding (content-length first, as the lab's clients always did);
`Connection: close` is noted. Bytes that cannot be such a response raise ProtocolError: the connection is then out of
step and is closed. `Expected` judges a whole response against what the scenario must answer (status, content type,
framing, body): None when it is right, else the reason, as the lab's results name it.

The load client's fast path (loadtests/flock.py: Flock.run) does not come here: an answer whose bytes equal the last
correct one's head and the expected body is taken whole in the loop itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from loadtests.scenarios import Plan

MAX_HEAD = 16384  # a status line and headers longer than this are no answer of the apps'
Framing = Literal["length", "chunked"]


class ProtocolError(Exception):
    """The server's bytes are not a response this client can delimit."""


@dataclass(frozen=True, slots=True)
class Response:
    """One whole response at the start of a buffer."""

    end: int  # where it ends in the buffer: the bytes it used
    head: bytes  # the status line and headers as received, the blank line included
    status: int
    body: bytes
    framing: Framing
    close: bool  # the server said Connection: close
    lower: bytes  # the head lower-cased, for header lookups

    def header(self, name: bytes) -> bytes | None:
        return header(self.lower, name)


def read(buf: bytes | bytearray, filled: int | None = None) -> Response | None:
    """The response at the start of buf[:filled] (all of buf by default): None while it is incomplete, ProtocolError
    when the bytes cannot be one."""
    filled = len(buf) if filled is None else filled
    split = buf.find(b"\r\n\r\n", 0, filled)
    if split < 0:
        if filled > MAX_HEAD:
            raise ProtocolError("no end of headers in 16 KiB")
        return None
    start = split + 4
    head = bytes(buf[:start])
    if head[:7] != b"HTTP/1." or len(head) < 16 or not head[9:12].isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {head[:40]!r}")
    lower = head.lower()
    length = header(lower, b"content-length")
    framing: Framing
    if length is not None:
        if not length.isdigit():
            raise ProtocolError(f"content-length {length[:20]!r}")
        end = start + int(length)
        if filled < end:
            return None
        body, framing = bytes(buf[start:end]), "length"
    elif header(lower, b"transfer-encoding") == b"chunked":
        parsed = chunked(buf, start, filled)
        if parsed is None:
            return None
        (body, end), framing = parsed, "chunked"
    else:
        raise ProtocolError("answer has neither content-length nor chunked encoding")
    return Response(end, head, int(head[9:12]), body, framing, header(lower, b"connection") == b"close", lower)


def header(lower_head: bytes, name: bytes) -> bytes | None:
    """The value of a header in a lower-cased response head, stripped; None when it is absent."""
    at = lower_head.find(b"\r\n" + name + b":")
    if at < 0:
        return None
    start = at + len(name) + 3
    return lower_head[start : lower_head.find(b"\r\n", start)].strip()


def chunked(buf: bytes | bytearray, start: int, filled: int) -> tuple[bytes, int] | None:
    """A chunked body from buf[start:filled]: (the body, where the answer ends), or None while incomplete."""
    parts, at = [], start
    while True:
        line_end = buf.find(b"\r\n", at, filled)
        if line_end < 0:
            return None
        size_text = bytes(buf[at:line_end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"chunk size {size_text[:20]!r}") from None
        at = line_end + 2
        if size == 0:
            while True:  # trailers, then the blank line
                line_end = buf.find(b"\r\n", at, filled)
                if line_end < 0:
                    return None
                blank = line_end == at
                at = line_end + 2
                if blank:
                    return b"".join(parts), at
        if filled < at + size + 2:
            return None
        parts.append(bytes(buf[at : at + size]))
        at += size + 2


@dataclass(frozen=True, slots=True)
class Expected:
    """What a correct answer is, in bytes: a scenario's Plan, made once for the checks."""

    status: int
    content_type: bytes  # lower-cased
    framing: str
    body: bytes

    @classmethod
    def of(cls, plan: Plan) -> Expected:
        return cls(plan.status, plan.content_type.encode().lower(), plan.framing, plan.body)

    def verdict(self, response: Response) -> str | None:
        """None when the response is the right answer; else why not."""
        if response.status != self.status:
            return f"status {response.status}"
        content_type = response.header(b"content-type")
        if content_type != self.content_type:
            return f"content-type {(content_type or b'missing').decode(errors='replace')}"
        if response.framing != self.framing:
            return f"framing {response.framing}, expected {self.framing}"
        if response.body != self.body:
            return self.wrong_body(len(response.body))
        return None

    def wrong_body(self, size: int) -> str:
        return f"wrong body ({size} bytes, expected {len(self.body)})"
