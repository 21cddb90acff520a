"""Conformance of the three apps, in-process: exact bytes for every endpoint, and all three identical to each other.

Expected values are literals on purpose: if any one app's bytes change, a test here fails.
"""

from __future__ import annotations

import pytest

from apps import common
from tests.asgi_driver import Driver, HttpResult
from tests.conftest import APP_NAMES, import_app, run_app

TEXT = b"text/plain; charset=utf-8"
MIB = 1024 * 1024


def http(app_name: str, *args, **kwargs) -> HttpResult:
    return run_app(app_name, lambda d: d.http(*args, **kwargs))


def plain(status: int, body: bytes, allow: bytes | None = None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    headers = [(b"allow", allow)] if allow else []
    headers += [(b"content-length", str(len(body)).encode()), (b"content-type", TEXT)]
    return status, headers, body


def test_plaintext(app_name: str) -> None:
    assert http(app_name, "GET", "/plaintext").wire() == plain(200, b"Hello, World!")


def test_head_answers_like_get(app_name: str) -> None:
    # The server drops a HEAD response's body; the app sends the same messages as for GET.
    assert http(app_name, "HEAD", "/plaintext").wire() == plain(200, b"Hello, World!")


def test_json(app_name: str) -> None:
    body = b'{"message":"Hello, World!"}'
    assert http(app_name, "GET", "/json").wire() == (
        200,
        [(b"content-length", b"27"), (b"content-type", b"application/json")],
        body,
    )


def octets(body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    return 200, [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/octet-stream")], body


@pytest.mark.parametrize(
    "chunks",
    [
        [b""],
        [b"hello"],
        [b"he", b"", b"llo", b" world"],  # chunked: several http.request messages with more_body
        [b"x" * MIB],  # exactly at the limit
        [b"y" * (MIB // 2), b"z" * (MIB // 2)],
    ],
    ids=["empty", "small", "chunked", "at-limit", "at-limit-chunked"],
)
def test_echo_returns_body(app_name: str, chunks: list[bytes]) -> None:
    assert http(app_name, "POST", "/echo", body=chunks).wire() == octets(b"".join(chunks))


def test_echo_one_byte_over_limit_is_413(app_name: str) -> None:
    result = http(app_name, "POST", "/echo", body=[b"a" * MIB, b"b"])
    assert result.wire() == plain(413, b"Payload Too Large")


def echo_counting_reads(app_name: str, **request) -> tuple[HttpResult, list[int]]:
    """POST /echo, recording the size of every http.request message the app asked for."""
    reads: list[int] = []

    async def scenario(driver: Driver) -> HttpResult:
        app = driver.app

        async def counting_app(scope, receive, send):
            async def counted_receive():
                message = await receive()
                reads.append(len(message.get("body", b"")))
                return message

            await app(scope, counted_receive, send)

        driver.app = counting_app
        return await driver.http("POST", "/echo", **request)

    return run_app(app_name, scenario), reads


def test_echo_declared_length_over_limit_is_413_without_reading(app_name: str) -> None:
    result, reads = echo_counting_reads(
        app_name, headers=[(b"content-length", str(MIB + 1).encode())], body=[b"q" * (MIB + 1)]
    )
    assert result.wire() == plain(413, b"Payload Too Large")
    assert reads == []


def test_echo_chunked_over_limit_stops_reading(app_name: str) -> None:
    result, reads = echo_counting_reads(app_name, body=[b"c" * (256 * 1024)] * 16)  # 4 MiB offered, no length
    assert result.wire() == plain(413, b"Payload Too Large")
    assert sum(reads) == MIB + 256 * 1024  # stopped at the first chunk past the limit


@pytest.mark.parametrize(
    ("query", "seconds"), [(b"ms=0", 0.0), (b"ms=5", 0.005), (b"ms=10000", 10.0), (b"ms=7&x=1", 0.007)]
)
def test_io_awaits_the_startup_sleep_then_answers_like_plaintext(app_name: str, query: bytes, seconds: float) -> None:
    waited = []

    async def scenario(driver: Driver) -> HttpResult:
        async def recording_sleep(delay: float) -> None:
            waited.append(delay)

        driver.state["sleep"] = recording_sleep
        return await driver.http("GET", "/io", query=query)

    assert run_app(app_name, scenario).wire() == plain(200, b"Hello, World!")
    assert waited == [seconds]


BAD_IO = [
    b"",
    b"ms=",
    b"ms=-1",
    b"ms=10001",
    b"ms=abc",
    b"ms=1.5",
    b"ms=%2B5",
    b"ms=%205",
    b"ms=1e3",
    b"ms=5.0",
    b"ms=0x10",
    b"ms=99999999999999999999",
    b"other=5",
    b"ms=%D9%A3",
]


@pytest.mark.parametrize("query", BAD_IO)
def test_io_bad_value_is_400(app_name: str, query: bytes) -> None:
    assert http(app_name, "GET", "/io", query=query).wire() == plain(400, b"Bad Request")


def test_io_waits(app_name: str) -> None:
    import time

    started = time.perf_counter()
    http(app_name, "GET", "/io", query=b"ms=50")
    assert time.perf_counter() - started >= 0.05


def test_stream_sends_n_body_messages(app_name: str) -> None:
    result = http(app_name, "GET", "/stream", query=b"chunks=3&size=5")
    assert result.messages == [
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", TEXT)]},
        {"type": "http.response.body", "body": b"xxxxx", "more_body": True},
        {"type": "http.response.body", "body": b"xxxxx", "more_body": True},
        {"type": "http.response.body", "body": b"xxxxx", "more_body": True},
        {"type": "http.response.body", "body": b"", "more_body": False},
    ]


def test_stream_zero_chunks(app_name: str) -> None:
    assert http(app_name, "GET", "/stream", query=b"chunks=0&size=1").body == b""


@pytest.mark.parametrize(
    "query",
    [b"chunks=3", b"size=3", b"chunks=1001&size=1", b"chunks=1&size=0", b"chunks=1&size=65537", b"chunks=a&size=1"],
)
def test_stream_bad_values_are_400(app_name: str, query: bytes) -> None:
    assert http(app_name, "GET", "/stream", query=query).wire() == plain(400, b"Bad Request")


def test_stream_stops_early_on_disconnect(app_name: str) -> None:
    result = http(app_name, "GET", "/stream", query=b"chunks=1000&size=10", disconnect_early=True)
    body_messages = [m for m in result.messages if m["type"] == "http.response.body"]
    assert len(body_messages) < 100


def test_unknown_path_is_404(app_name: str) -> None:
    for path in ("/nope", "/plaintext/", "/", "/ws"):
        assert http(app_name, "GET", path).wire() == plain(404, b"Not Found"), path


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/plaintext", b"GET, HEAD"),
        ("DELETE", "/json", b"GET, HEAD"),
        ("GET", "/echo", b"POST"),
        ("PUT", "/io", b"GET, HEAD"),
        ("POST", "/stream", b"GET, HEAD"),
    ],
)
def test_wrong_method_is_405_with_allow(app_name: str, method: str, path: str, allow: bytes) -> None:
    assert http(app_name, method, path).wire() == plain(405, b"Method Not Allowed", allow)


def test_debug_loop_reports_running_loop(app_name: str) -> None:
    import json
    import os

    body = json.loads(http(app_name, "GET", "/debug/loop").body)
    assert body == {
        "async_library": "asyncio",
        "loop": "asyncio.unix_events._UnixSelectorEventLoop",
        "pid": os.getpid(),
    }


def test_websocket_echoes_text_and_bytes(app_name: str) -> None:
    frames = [{"text": "hello"}, {"bytes": b"\x00\x01binary"}, {"text": ""}, {"text": "é"}]
    sent = run_app(app_name, lambda d: d.websocket("/ws", frames))
    assert sent == [
        {"type": "websocket.accept", "subprotocol": None, "headers": []},
        {"type": "websocket.send", "text": "hello"},
        {"type": "websocket.send", "bytes": b"\x00\x01binary"},
        {"type": "websocket.send", "text": ""},
        {"type": "websocket.send", "text": "é"},
    ]


def test_websocket_unknown_path_is_closed(app_name: str) -> None:
    sent = run_app(app_name, lambda d: d.websocket("/nope", []))
    assert sent == [{"type": "websocket.close", "code": 1000, "reason": ""}]


def test_lifespan_startup_and_shutdown_are_seen(app_name: str, capfd: pytest.CaptureFixture[str]) -> None:
    run_app(app_name, lambda d: d.http("GET", "/io", query=b"ms=0"))
    err = capfd.readouterr().err
    assert f"lifespan startup app={app_name}" in err
    assert f"lifespan shutdown app={app_name}" in err


def test_lifespan_report_notes_startup_and_a_whole_shutdown(
    app_name: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import os

    report = tmp_path / "lifespan.jsonl"
    monkeypatch.setenv("LAB_LIFESPAN_REPORT", str(report))
    run_app(app_name, lambda d: d.http("GET", "/io", query=b"ms=0"))
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert [(line["event"], line["app"], line["pid"]) for line in lines] == [
        ("startup-complete", app_name, os.getpid()),
        ("shutdown-begin", app_name, os.getpid()),
        ("shutdown-complete", app_name, os.getpid()),
    ]
    assert lines[0]["time"] <= lines[1]["time"] <= lines[2]["time"]


def test_no_lifespan_report_unless_asked(app_name: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAB_LIFESPAN_REPORT", raising=False)
    monkeypatch.chdir(tmp_path)
    run_app(app_name, lambda d: d.http("GET", "/plaintext"))
    assert list(tmp_path.iterdir()) == []


def test_request_uses_state_from_startup(app_name: str) -> None:
    """/io awaits the sleep function chosen at startup; without the lifespan state it cannot answer."""

    async def scenario(driver: Driver):
        driver.state.clear()
        with pytest.raises((KeyError, AttributeError)):
            await driver.http("GET", "/io", query=b"ms=0")

    run_app(app_name, scenario)


def test_failing_startup_is_reported(app_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(app: str) -> dict:
        raise RuntimeError("database unreachable")

    monkeypatch.setattr(common, "on_startup", broken)

    async def main() -> dict:
        driver = Driver(import_app(app_name))
        reply = await driver.startup()
        driver._lifespan_task.cancel()
        return reply

    import asyncio

    reply = asyncio.run(main())
    assert reply["type"] == "lifespan.startup.failed"
    assert "database unreachable" in reply["message"]


# --- the three apps against each other --------------------------------------------------------------------------

REQUESTS = [
    ("GET", "/plaintext", b"", [b""]),
    ("HEAD", "/json", b"", [b""]),
    ("GET", "/json", b"", [b""]),
    ("POST", "/echo", b"", [b"abc", b"def"]),
    ("POST", "/echo", b"", [b"\x00" * 70000]),
    ("POST", "/echo", b"", [b"o" * (MIB + 1)]),
    ("GET", "/io", b"ms=1", [b""]),
    ("GET", "/io", b"ms=x", [b""]),
    ("GET", "/stream", b"chunks=4&size=100", [b""]),
    ("GET", "/stream", b"chunks=4", [b""]),
    ("GET", "/missing", b"", [b""]),
    ("PATCH", "/echo", b"", [b""]),
    ("OPTIONS", "/plaintext", b"", [b""]),
]


def test_all_apps_answer_identically() -> None:
    def everything(name: str) -> list:
        async def scenario(driver: Driver) -> list:
            results = []
            for method, path, query, body in REQUESTS:
                result = await driver.http(method, path, query=query, body=body)
                results.append(result.messages)
            results.append(await driver.websocket("/ws", [{"text": "t"}, {"bytes": b"b"}]))
            return results

        return run_app(name, scenario)

    answers = {name: everything(name) for name in APP_NAMES}
    reference_name, reference = next(iter(answers.items()))
    for name, answer in answers.items():
        for request, mine, theirs in zip([*REQUESTS, ("WS", "/ws", b"", [])], answer, reference, strict=True):
            assert mine == theirs, f"{name} and {reference_name} differ on {request[:3]}"
