"""What each scenario sends and what it must get back, built once per load-generator process.

The scenario table (path, method, default parameters) lives in servers/matrix.toml; the expected bytes come from
apps/common.py, the same constants the apps answer with. Requests are encoded once here, so the hot loop only
writes bytes and compares bytes.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from apps import common
from servers.matrix import Matrix, MatrixError, Scenario, load

WS_MASK = b"\x5a\x13\xc4\x7e"  # clients must mask frames; the key needs no secrecy on loopback


@dataclass(frozen=True)
class Target:
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Target:
        """The server to load, which must be on this machine: the lab never aims traffic anywhere else."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/"):
            raise MatrixError(f"target {url!r} must look like http://127.0.0.1:8000")
        host = "127.0.0.1" if parts.hostname == "localhost" else parts.hostname
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise MatrixError(
                f"target {url!r} is not a loopback address; the lab only loads servers on 127.0.0.0/8 or ::1"
            )
        return cls(host, parts.port or 80)


@dataclass(frozen=True)
class Plan:
    """One scenario, resolved: the bytes to send and the bytes that must come back."""

    scenario: str
    method: str
    path: str  # with the query string
    params: dict[str, Any]
    request: bytes  # the whole HTTP request, or for ws the frame to send
    body: bytes  # the expected response body, or for ws the expected echo
    status: int = 200

    @property
    def websocket(self) -> bool:
        return self.method == "WS"

    def handshake(self, target: Target) -> bytes:
        return (
            f"GET {self.path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()


def parse_params(scenario: Scenario, overrides: dict[str, str]) -> dict[str, int]:
    """The scenario's query and body parameters, with overrides applied and checked."""
    params = {**scenario.query, **scenario.params}
    unknown = overrides.keys() - params.keys()
    if unknown:
        valid = ", ".join(params) or "none"
        raise MatrixError(f"scenario {scenario.name!r} has no parameter {sorted(unknown)}; valid: {valid}")
    for key, value in overrides.items():
        try:
            params[key] = int(value)
        except ValueError:
            raise MatrixError(f"scenario parameter {key}={value!r} must be an integer") from None
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


def plan(name: str, target: Target, overrides: dict[str, str] | None = None, matrix: Matrix | None = None) -> Plan:
    matrix = matrix or load()
    scenario = matrix.scenario(name)
    params = parse_params(scenario, overrides or {})
    host = f"Host: {target.host}:{target.port}\r\n"
    query = {k: params[k] for k in scenario.query}
    path = scenario.path + ("?" + urlencode(query) if query else "")

    if scenario.method == "WS":
        payload = os.urandom(params["message_bytes"])
        return Plan(name, "WS", path, params, ws_frame(payload), payload, 101)
    if name == "echo":
        payload = os.urandom(params["body_bytes"])
        if len(payload) > common.MAX_BODY:
            raise MatrixError(f"echo body_bytes {len(payload)} is over the apps' limit of {common.MAX_BODY}")
        head = f"POST {path} HTTP/1.1\r\n{host}Content-Length: {len(payload)}\r\n"
        head += "Content-Type: application/octet-stream\r\n\r\n"
        return Plan(name, "POST", path, params, head.encode() + payload, payload)
    request = f"{scenario.method} {path} HTTP/1.1\r\n{host}\r\n".encode()
    expected = {
        "plaintext": common.PLAINTEXT.encode(),
        "json": common.dumps({"message": common.MESSAGE}),
        "io": common.PLAINTEXT.encode(),
        "stream": common.STREAM_BYTE * (params.get("chunks", 0) * params.get("size", 0)),
    }
    if name not in expected:
        raise MatrixError(f"scenario {name!r} has no expected answer in loadtests/scenarios.py")
    return Plan(name, scenario.method, path, params, request, expected[name])


def parse_overrides(pairs: list[str] | str | None) -> dict[str, str]:
    """`key=value` pairs, from a repeated CLI option or a comma-separated environment variable."""
    if not pairs:
        return {}
    if isinstance(pairs, str):
        pairs = [p for p in pairs.split(",") if p]
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise MatrixError(f"scenario parameter {pair!r} must be key=value")
        out[key.strip()] = value.strip()
    return out
