"""The launcher and the matrix over real sockets: every cell of `quick` here, every valid cell of `full` when slow."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from core.host import ROOT
from servers.matrix import Cell, MatrixError, load
from tests.servers_harness import conformance, free_port, running

MATRIX = load()


@pytest.mark.parametrize("cell", MATRIX.preset("quick").cells, ids=lambda c: c.key)
def test_quick_cell_conforms_over_a_socket(cell: Cell, tmp_path: Path) -> None:
    with running(cell, tmp_path) as server:
        conformance(server)
        assert server.report.loop_seen == MATRIX.loops[cell.loop].reports
        assert server.report.startup_seconds > 0
        assert server.report.versions[cell.server] == version(cell.server)


def test_three_apps_answer_identically_over_a_socket(tmp_path: Path) -> None:
    base = MATRIX.preset("quick").cells[0]
    answers = {}
    for app in MATRIX.apps:
        cell = MATRIX.cell(base.server, base.loop, base.http, base.workers, app)
        with running(cell, tmp_path) as server:
            answers[app] = conformance(server)
    first = next(iter(answers.values()))
    for app, answer in answers.items():
        assert answer == first, f"{app} differs over a socket"


@pytest.mark.slow
@pytest.mark.parametrize("cell", MATRIX.valid_cells(), ids=lambda c: c.key)
def test_every_valid_cell_conforms_over_a_socket(cell: Cell, tmp_path: Path) -> None:
    with running(cell, tmp_path) as server:
        conformance(server)


def launch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "servers", *args], cwd=ROOT, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--server", "hypercorn", "--loop", "rloop"], "no way to run on rloop"),
        (["--server", "uvicorn", "--loop", "trio"], "uvicorn runs on asyncio only"),
        (["--server", "hypercorn", "--loop", "trio", "--app", "raw"], "raw app is written on asyncio"),
        (["--server", "uvicron", "--loop", "uvloop"], "unknown server 'uvicron'; valid: uvicorn, hypercorn, granian"),
        (["--server", "uvicorn", "--loop", "uvlop"], "unknown loop 'uvlop'; valid: asyncio, uvloop, rloop, trio"),
        (["--server", "granian", "--loop", "uvloop", "--http", "httptools"], "unknown http 'httptools' for granian"),
        (
            ["--server", "granian", "--loop", "uvloop", "--http", "zttp"],
            "unknown http 'zttp' for granian; valid: hyper, h2c",
        ),
        (["--cell", "hypercorn-trio-h2c-w1-raw"], "raw app is written on asyncio"),
        (["--server", "uvicorn", "--loop", "uvloop", "--app", "flask"], "unknown app 'flask'"),
        (["--server", "uvicorn", "--loop", "uvloop", "--workers", "64"], "unknown workers 64"),
        (["--cell", "granian-uvloop"], "is not SERVER-LOOP-HTTP-wN-APP"),
        (["--server", "uvicorn"], "name a cell"),
        (["--list", "fastest"], "unknown preset 'fastest'; valid: quick, default, full"),
    ],
)
def test_invalid_cells_are_refused_before_anything_starts(args: list[str], message: str) -> None:
    port = free_port()
    result = launch(*args, "--port", str(port))
    assert result.returncode == 2
    assert message in result.stderr
    assert "starting" not in result.stderr
    with socket.socket() as s:  # nothing was left listening
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_port_in_use_is_refused() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = launch("--server", "uvicorn", "--loop", "asyncio", "--port", str(busy.getsockname()[1]))
    assert result.returncode == 2
    assert "cannot be bound" in result.stderr and "it is in use; choose another with --port" in result.stderr


def test_dry_run_prints_argv_and_versions() -> None:
    result = launch("--cell", "granian-rloop-hyper-w1-starlette", "--dry-run")
    record = json.loads(result.stdout)
    assert record["argv"][1:5] == ["-m", "granian", "--interface", "asgi"]
    assert record["argv"][record["argv"].index("--loop") + 1] == "rloop"
    assert set(record["versions"]) == {"python", "granian", "rloop", "starlette"}


def test_h2c_is_declared_once_and_websockets_over_it_are_refused_with_their_rule() -> None:
    h2 = [c for c in MATRIX.valid_cells() if MATRIX.protocol(c) == "h2"]
    assert {c.server for c in h2} == {"uvicorn", "hypercorn", "granian"}
    assert {c.http for c in h2} == {"h2c"}
    for cell in h2:
        assert not MATRIX.supports(cell, "ws")
        assert "RFC 8441" in (MATRIX.invalid_reason(cell, "ws") or "")
        assert MATRIX.supports(cell, "plaintext")
    assert MATRIX.protocol(MATRIX.cell("uvicorn", "uvloop", "zttp")) == "h1"


def test_the_http_implementations_arguments_go_into_the_command() -> None:
    from servers.launcher import argv

    def args(key: str) -> list[str]:
        return argv(MATRIX, MATRIX.cell_from_key(key), "127.0.0.1", 8000)

    assert args("uvicorn-uvloop-h2c-w1-raw")[12:16] == ["--http", "zttp", "--http2", "--lifespan"]
    assert args("uvicorn-uvloop-zttp-w1-raw")[12:15] == ["--http", "zttp", "--lifespan"]
    assert "--http" not in args("hypercorn-uvloop-h2c-w1-raw")
    assert args("granian-uvloop-h2c-w1-raw")[13:16] == ["--http", "2", "--no-access-log"]
    assert args("granian-uvloop-hyper-w1-raw")[13:16] == ["--http", "1", "--no-access-log"]


def test_list_prints_a_presets_cells() -> None:
    result = launch("--list", "quick")
    assert result.stdout.split() == [c.key for c in MATRIX.preset("quick").cells]


def test_every_rule_excludes_something_and_every_server_has_a_valid_cell() -> None:
    for rule in MATRIX.rules:
        assert any(rule.matches(c, rule.match.get("scenario")) for c in MATRIX.all_cells()), rule
    for server in MATRIX.servers:
        assert any(c.server == server for c in MATRIX.valid_cells()), server


def test_matrix_errors_name_the_problem() -> None:
    import copy
    import tomllib

    from servers.matrix import MATRIX_FILE, parse

    good = tomllib.loads(MATRIX_FILE.read_text())
    parse(good)

    def broken(change) -> str:
        data = copy.deepcopy(good)
        change(data)
        with pytest.raises(MatrixError) as excinfo:
            parse(data)
        return str(excinfo.value)

    assert "schema 2, this lab reads schema 1" in broken(lambda d: d.update(schema=2))
    assert "calibration is missing" in broken(lambda d: d.pop("calibration"))
    assert "servers.granian: unknown field 'threads'; the fields there are packages, http," in broken(
        lambda d: d["servers"]["granian"].update(threads=2)
    )
    assert "presets.quick.run: repeats = 'x' should be a valid integer" in broken(
        lambda d: d["presets"]["quick"]["run"].update(repeats="x")
    )
    assert "presets.quick.exclude #1 (sever = 'uvicorn'): unknown field 'sever'" in broken(
        lambda d: d["presets"]["quick"].update(exclude=[{"sever": "uvicorn"}])
    )
    assert "unknown server 'nginx' in preset 'quick'" in broken(
        lambda d: d["presets"]["quick"].update(exclude=[{"server": "nginx"}])
    )
    assert "unknown loop 'curio'" in broken(lambda d: d["rules"].append({"loop": "curio", "reason": "x"}))
    assert "http_packages must name each" in broken(lambda d: d["servers"]["uvicorn"]["http"].append("quic"))
    assert "http2 names ['h3']" in broken(lambda d: d["http2"].append("h3"))
    assert "http_args names an http not in" in broken(lambda d: d["servers"]["granian"]["http_args"].update(h3=[]))
    assert "unknown scenario 'grpc'" in broken(lambda d: d["presets"]["quick"].update(scenarios=["grpc"]))
    assert "selects no valid cell" in broken(lambda d: d["presets"]["quick"].update(loop=["trio"], app=["raw"]))
    assert broken(lambda d: d["workers"].append("3")).startswith("the matrix file matrix.toml: workers #3: '3' should")


def test_a_cells_packages_are_its_servers_http_implementations_loops_and_apps() -> None:
    cell = MATRIX.cell_from_key("uvicorn-uvloop-httptools-w1-fastapi")
    assert MATRIX.packages(cell) == ["uvicorn", "httptools", "uvloop", "fastapi", "starlette", "pydantic"]
    assert MATRIX.packages(MATRIX.cell_from_key("granian-asyncio-hyper-w1-raw")) == ["granian"]
    every = MATRIX.packages()
    assert every[:2] == ["uvicorn", "h11"] and set(every) == {p for c in MATRIX.all_cells() for p in MATRIX.packages(c)}


H2_CELLS = [c for c in MATRIX.valid_cells() if MATRIX.protocol(c) == "h2" and c.loop == "uvloop" and c.app == "raw"]
H2_CELLS = [c for c in H2_CELLS if c.workers == 1]


@pytest.mark.parametrize("cell", H2_CELLS, ids=lambda c: c.key)
def test_h2c_cells_answer_over_http2_as_over_http1(cell: Cell, tmp_path: Path) -> None:
    """Each server that speaks h2c, on HTTP/2 with prior knowledge (the launcher's readiness check included): every
    endpoint's status, app headers and body equal to the same server's over HTTP/1.1."""
    h1 = next(c for c in MATRIX.valid_cells() if MATRIX.protocol(c) == "h1" and c.model_copy(update={"http": ""})
              == cell.model_copy(update={"http": ""}))  # fmt: skip
    with running(cell, tmp_path) as server:
        assert server.report.protocol == "h2"
        over_h2 = conformance(server)
    with running(h1, tmp_path) as server:
        over_h1 = conformance(server)

    def unordered(answers):  # granian orders headers differently over h1 and h2; their set and values must agree
        return [(label, status, sorted(headers), body) for label, status, headers, body in answers]

    assert unordered(over_h2) == unordered(over_h1)


def test_three_apps_answer_identically_over_h2c(tmp_path: Path) -> None:
    answers = {}
    for app in MATRIX.apps:
        with running(MATRIX.cell("granian", "uvloop", "h2c", 1, app), tmp_path) as server:
            answers[app] = conformance(server)
    first = next(iter(answers.values()))
    for app, answer in answers.items():
        assert answer == first, f"{app} differs over h2c"


def test_a_server_that_does_not_speak_h2_fails_the_h2_readiness_check() -> None:
    from servers.launcher import get, probe

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "servers", "--cell", "granian-uvloop-hyper-w1-raw", "--port", str(port)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        from servers.launcher import wait_ready

        wait_ready("127.0.0.1", port, 20)
        assert get("127.0.0.1", port, "/plaintext") == (200, b"Hello, World!")
        assert probe("127.0.0.1", port, http2=True) is not None
    finally:
        server.terminate()
        server.wait(20)
