"""What each scenario sends and what must come back, built once per load-generator process.

The scenario table (method, path, parameters, the kind of answer) lives in servers/matrix.toml; the expected bytes
and headers come from apps/common.py, the same constants the apps answer with. Requests are encoded once here, so
the hot loop only writes bytes and compares bytes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlencode, urlsplit

from apps import common
from core.errors import UsageError
from servers.matrix import MatrixError, Scenario

WS_MASK = b"\x5a\x13\xc4\x7e"  # clients must mask frames; the key needs no secrecy on loopback

# The apps' bounds for each parameter a scenario may carry (apps/common.py), checked before any load starts.
PARAM_BOUNDS: dict[str, tuple[int, int]] = {
    "ms": (0, common.IO_MAX_MS),
    "chunks": (0, common.STREAM_MAX_CHUNKS),
    "size": (1, common.STREAM_MAX_SIZE),
    "body_bytes": (0, common.MAX_BODY),
    "message_bytes": (0, common.MAX_BODY),
}


@dataclass(frozen=True)
class Answer:
    """A kind of answer the apps give: its content type, how its body is framed, and its bytes."""

    content_type: str
    framing: Literal["length", "chunked"]
    body: Callable[[dict[str, int], bytes], bytes]  # (parameters, the bytes sent) -> the body that must come back


ANSWERS: dict[str, Answer] = {
    "hello": Answer(common.TEXT_TYPE, "length", lambda params, sent: common.PLAINTEXT.encode()),
    "hello-json": Answer(common.JSON_TYPE, "length", lambda params, sent: common.dumps({"message": common.MESSAGE})),
    "echo": Answer(common.OCTET_TYPE, "length", lambda params, sent: sent),
    "stream": Answer(
        common.TEXT_TYPE, "chunked", lambda params, sent: common.STREAM_BYTE * (params["chunks"] * params["size"])
    ),
}


def allowed(host: str, named: str = "") -> bool:
    """A loopback address, or exactly the address named (an IP: a name could resolve anywhere)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    if ip.is_unspecified or ip.is_multicast:  # no one host
        return False
    try:
        return bool(named) and ip == ipaddress.ip_address(named)
    except ValueError:
        return False


@dataclass(frozen=True)
class Target:
    host: str
    port: int

    @classmethod
    def parse(cls, url: str, named: str = "") -> Target:
        """The server to load: on this machine's loopback, or on the one target host the user named (`named`,
        --target-host); the lab aims traffic nowhere else."""
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise UsageError(f"target {url!r} has no valid port; it must look like http://127.0.0.1:8000") from None
        if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/") or parts.query:
            raise UsageError(f"target {url!r} must look like http://127.0.0.1:8000")
        host = "127.0.0.1" if parts.hostname == "localhost" else parts.hostname
        if not allowed(host, named):
            also = f" or the target host named for this run, {named}" if named else ""
            raise UsageError(
                f"target {url!r} is not a loopback address{also}; the lab loads servers on 127.0.0.0/8 or ::1, and on "
                "another host only when it is named (--target-host ADDR, LAB_TARGET_HOST)"
            )
        return cls(host, port or 80)


@dataclass(frozen=True)
class Plan:
    """One scenario, resolved: the bytes to send and what must come back."""

    scenario: str
    method: str
    path: str  # with the query string
    params: dict[str, int]
    request: bytes  # the whole HTTP request, or for ws the frame to send
    body: bytes  # the expected response body, or for ws the expected echo
    status: int = 200
    content_type: str = ""
    framing: Literal["length", "chunked", "ws"] = "length"

    @property
    def websocket(self) -> bool:
        return self.method == "WS"

    def handshake(self, target: Target) -> bytes:
        return (
            f"GET {self.path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()


def parse_params(name: str, defaults: dict[str, int], overrides: dict[str, str]) -> dict[str, int]:
    """The scenario's parameters with overrides applied, each a whole number within the apps' bounds."""
    params = dict(defaults)
    unknown = overrides.keys() - params.keys()
    if unknown:
        valid = ", ".join(params) or "none"
        raise UsageError(f"scenario {name!r} has no parameter {sorted(unknown)}; valid: {valid}")
    for key, value in overrides.items():
        if not value.isascii() or not value.isdigit():
            raise UsageError(f"scenario parameter {key}={value!r} must be a whole number")
        params[key] = int(value)
    for key, value in params.items():
        low, high = PARAM_BOUNDS.get(key, (0, common.MAX_BODY))
        if not low <= value <= high:
            raise UsageError(f"scenario parameter {key}={value} is outside the apps' range {low}-{high}")
    return params


def ws_frame(payload: bytes) -> bytes:
    """A masked binary frame, as a client must send it."""
    length = len(payload)
    if length < 126:
        header = bytes([0x82, 0x80 | length])
    elif length < 65536:
        header = bytes([0x82, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([0x82, 0x80 | 127]) + length.to_bytes(8, "big")
    masked = bytes(b ^ WS_MASK[i % 4] for i, b in enumerate(payload))
    return header + WS_MASK + masked


def payload(size: int) -> bytes:
    """A request body or frame of `size` bytes; a fixed pattern, so wrk can send the very same bytes."""
    return (b"0123456789abcdef" * (size // 16 + 1))[:size]


def plan(scenario: Scenario, target: Target, overrides: dict[str, str] | None = None) -> Plan:
    name = scenario.name
    params = parse_params(name, {**scenario.query, **scenario.params}, overrides or {})
    query = {k: params[k] for k in scenario.query}
    path = scenario.path + ("?" + urlencode(query) if query else "")
    if scenario.method == "WS":
        sent = payload(params["message_bytes"])
        return Plan(name, "WS", path, params, ws_frame(sent), sent, 101, framing="ws")

    if scenario.answer == "given":
        return given(scenario, path, params, target)
    if scenario.answer not in ANSWERS:
        known = ", ".join(ANSWERS)
        raise MatrixError(
            f"scenario {name!r} answers {scenario.answer!r}, which the load generator does not know: {known}"
        )
    answer = ANSWERS[scenario.answer]
    sent = payload(params["body_bytes"]) if "body_bytes" in params else b""
    request = request_bytes(scenario.method, path, target, sent, common.OCTET_TYPE)
    return Plan(
        name,
        scenario.method,
        path,
        params,
        request,
        answer.body(params, sent),
        200,
        answer.content_type,
        answer.framing,
    )


def request_bytes(method: str, path: str, target: Target, sent: bytes, content_type: str) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
    if sent or method in ("POST", "PUT", "PATCH"):
        head += f"Content-Length: {len(sent)}\r\n" + (f"Content-Type: {content_type}\r\n" if content_type else "")
    return head.encode() + b"\r\n" + sent


def given(scenario: Scenario, path: str, params: dict[str, int], target: Target) -> Plan:
    """A request of your own app's (servers/own_app.py), against the answer recorded for it."""
    if scenario.expect is None:
        raise MatrixError(f"scenario {scenario.name!r}: its first correct answer was not recorded before the load")
    sent = scenario.send.encode()
    request = request_bytes(scenario.method, path, target, sent, scenario.send_type)
    e = scenario.expect
    return Plan(
        scenario.name, scenario.method, path, params, request, e.body, scenario.status, e.content_type, e.framing
    )


def parse_overrides(pairs: list[str] | str | None) -> dict[str, str]:
    """`key=value` pairs, from a repeated CLI option or a comma-separated option value."""
    if not pairs:
        return {}
    if isinstance(pairs, str):
        pairs = [p for p in pairs.split(",") if p]
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"scenario parameter {pair!r} must be key=value")
        out[key.strip()] = value.strip()
    return out
