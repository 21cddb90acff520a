"""Each setting declared once: every LAB_* variable is read in one module (core/settings.py), every run option's
variable on its option (lab/config.py); the README's table, .env.example and compose's `environment:` lists follow
from them (lab/variables.py). Every documented variable and every run option, set to a valid value, passes the
preflight; set to a bad one, it is refused in one line, exit 2, with nothing written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from core.host import ROOT, free_port, machine_cpus
from core.settings import Settings
from lab import cli, variables
from lab import config as run_config
from lab.commands import lifecycle as lifecycle_command
from lab.commands import preflight as preflight_command
from lab.commands import run as run_command
from servers.matrix import MATRIX_FILE, load

CODE = [p for d in ("apps", "core", "servers", "loadtests", "lab", "scripts") for p in (ROOT / d).rglob("*.py")]
CELL = "granian-uvloop-hyper-w1-raw"  # a cell of the quick preset, which every case below starts from
EXAMPLE = str(ROOT / "apps" / "example")
OWN = {"APP": "shop:app", "APP_CODE": EXAMPLE}
TWO = {"VARIANTS": "A=;B="}  # two variants, both the image's own: nothing to install
FIRST, LAST = str(machine_cpus()[0]), str(machine_cpus()[-1])
Preflight = Callable[..., tuple[int, str]]  # (environment, argv[, command]) -> exit code, what it said


def test_only_the_settings_module_reads_lab_variables() -> None:
    reading = re.compile(r"""(environ(\.get)?\s*[\[(]|getenv\()\s*["']LAB_""")
    offenders = [str(p.relative_to(ROOT)) for p in CODE if reading.search(p.read_text())]
    assert offenders == [], offenders


def test_the_readme_env_example_and_compose_files_follow_the_declarations() -> None:
    assert variables.drift() == []
    said = {n for f in ("docker-compose.yml", "docker-compose.two-hosts.yml")
            for n in re.findall(r"\$\{([A-Z_]+)", (ROOT / f).read_text())}  # fmt: skip
    assert said <= set(variables.documented()), said - set(variables.documented())  # compose reads no stranger


def test_a_variable_missing_or_extra_anywhere_is_named() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    without = compose.replace("    PAIR_ROUNDS: ${PAIR_ROUNDS:-}\n", "")
    assert variables.compose_drift(without, ("passed",), "f") == ["f does not pass PAIR_ROUNDS"]
    extra = compose.replace("  environment:\n", "  environment:\n    LAB_TARGET_HOST: x\n    NEW_THING: 1\n")
    assert [line.split(",")[0] for line in variables.compose_drift(extra, ("passed",), "f")] == [
        "f passes LAB_TARGET_HOST", "f passes NEW_THING"]  # fmt: skip
    readme = (ROOT / "README.md").read_text()
    assert variables.with_table(readme.replace("| `PAIR_ROUNDS` |", "| `PAIR_ROUND` |")) == readme
    assert "# PAIR_ROUNDS=" in variables.env_example() and "`--pair-rounds`" in variables.readme_table()


def test_settings_come_from_the_environment_given() -> None:
    s = Settings.from_env({"LAB_UID": "1000", "LAB_HOST_ID": " lab-7 ", "LAB_IN_CONTAINER": "1", "SERVERS": "x"})
    assert s.uid == 1000 and s.host_id == "lab-7" and s.in_container and s.matrix_file is None
    assert Settings.from_env({}) == Settings()


def test_every_commands_help_prints(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse %-formats help texts: a bare % in one (e.g. an option's unit) crashes `--help`."""
    for command in ("run", "preflight", "calibrate", "lifecycle", "plot", "compare", "reference"):
        with pytest.raises(SystemExit) as done:
            cli.main([command, "--help"])
        assert done.value.code == 0, command
        assert "usage: python -m lab " + command in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "(0: no budget, no extra rounds)" in shown and "or PAIR_ROUNDS;" not in shown
    assert "repeatable; or SERVERS (comma-separated)" in shown


# --- every variable and option, valid and not, through the preflight ------------------------------------------------

# A valid value of each documented variable, with what it needs beside it (your app's folder, a second variant).
VALID_ENV: dict[str, dict[str, str]] = {
    "PRESET": {"PRESET": "full"}, "RESUME": {"RESUME": "last"}, "BASE_IMAGE": {"BASE_IMAGE": "lab-base"},
    "CODE": {"CODE": "~/src"}, "LOCUST_MASTER_BIND_HOST": {"LOCUST_MASTER_BIND_HOST": "192.0.2.10"},
    "CELLS": {"CELLS": f"{CELL}, uvicorn-uvloop-httptools-w1-raw"}, "SCENARIOS": {"SCENARIOS": "json,plaintext"},
    "SWEEP_SCENARIOS": {"SWEEP_SCENARIOS": "plaintext"}, "SERVER_CPUS": {"SERVER_CPUS": FIRST},
    "LOAD_CPUS": {"LOAD_CPUS": LAST}, "LOCUST_WORKERS": {"LOCUST_WORKERS": "2"},
    "LAB_ALLOW_SHARED_CPUS": {"LAB_ALLOW_SHARED_CPUS": "1", "SERVER_CPUS": FIRST, "LOAD_CPUS": FIRST},
    "SERVERS": {"SERVERS": "granian uvicorn"}, "LOOPS": {"LOOPS": "uvloop"}, "APPS": {"APPS": "raw"},
    "VARIANTS": TWO, "AB": {"AB": "uvicorn==0.53.0"}, "PAIR_ROUNDS": {"PAIR_ROUNDS": "0"},
    "FAIL_IF_SLOWER": {"FAIL_IF_SLOWER": "2.5", **TWO}, "APP": OWN, "APP_CODE": {"APP_CODE": EXAMPLE},
    "REQUESTS": {**OWN, "REQUESTS": f"{EXAMPLE}/requests.toml"}, "LAB_RESULTS": {"LAB_RESULTS": "./results"},
    "LAB_UID": {"LAB_UID": "1000"}, "LAB_GID": {"LAB_GID": "1000"}, "LAB_DOCKER_VERSION": {"LAB_DOCKER_VERSION": "27"},
    "LAB_MATRIX": {"LAB_MATRIX": str(MATRIX_FILE)}, "LAB_HOST_ID": {"LAB_HOST_ID": "lab-7"},
    "LAB_IMAGE_ID": {"LAB_IMAGE_ID": "sha256:0123"}, "LAB_GIT_COMMIT": {"LAB_GIT_COMMIT": "0123abc"},
    "LAB_AGENT_SECRET_FILE": {"LAB_AGENT_SECRET_FILE": "/nonexistent/agent-secret"},
    "LAB_TARGET_HOST": {"LAB_TARGET_HOST": "127.0.0.1"}, "LAB_VARIANTS": {"LAB_VARIANTS": "/nonexistent/variants"},
    "LAB_IN_CONTAINER": {"LAB_IN_CONTAINER": "1"}, "LAB_OWN_APP": {"LAB_OWN_APP": "shop:app"},
    "LAB_OWN_CODE": {"LAB_OWN_CODE": EXAMPLE}, "LAB_LIFESPAN_REPORT": {"LAB_LIFESPAN_REPORT": "/tmp/lifespan.jsonl"},
}  # fmt: skip
# Bad values of each variable that has any (the others take any text), zero wherever zero is not a value.
INVALID_ENV: dict[str, list[dict[str, str]]] = {
    "CELLS": [{"CELLS": "nope"}, {"CELLS": "uvicorn-trio-h11-w1-raw"}], "SCENARIOS": [{"SCENARIOS": "grpc"}],
    "SWEEP_SCENARIOS": [{"SWEEP_SCENARIOS": "echo"}],
    "SERVER_CPUS": [{"SERVER_CPUS": "4096"}, {"SERVER_CPUS": "x"}, {"SERVER_CPUS": "1-0"}, {"SERVER_CPUS": "-1"}],
    "LOAD_CPUS": [{"LOAD_CPUS": "4096"}, {"LOAD_CPUS": "0,x"}, {"LOAD_CPUS": FIRST, "SERVER_CPUS": FIRST}],
    "LOCUST_WORKERS": [{"LOCUST_WORKERS": "0"}, {"LOCUST_WORKERS": "x"}, {"LOCUST_WORKERS": "1.5"},
                       {"LOCUST_WORKERS": "999"}],
    "LAB_ALLOW_SHARED_CPUS": [{"LAB_ALLOW_SHARED_CPUS": "maybe"}], "SERVERS": [{"SERVERS": "nginx"}],
    "LOOPS": [{"LOOPS": "curio"}], "APPS": [{"APPS": "django"}, {"APPS": "fastapi"}],  # fastapi: not in quick
    "VARIANTS": [{"VARIANTS": "nonsense"}, {"VARIANTS": "A=;A="}, {"VARIANTS": "A=", "AB": "uvicorn==0.53.0"}],
    "AB": [{"AB": "pydantic-core==2.0"}],
    "PAIR_ROUNDS": [{"PAIR_ROUNDS": "four"}, {"PAIR_ROUNDS": "-1"}, {"PAIR_ROUNDS": "200"}],
    "FAIL_IF_SLOWER": [{"FAIL_IF_SLOWER": "x", **TWO}, {"FAIL_IF_SLOWER": "0", **TWO}, {"FAIL_IF_SLOWER": "2"}],
    "APP": [{"APP": "shop"}, {"APP": "shop:nothing", "APP_CODE": EXAMPLE}],
    "APP_CODE": [{"APP": "shop:app", "APP_CODE": "/nonexistent"}],
    "REQUESTS": [{**OWN, "REQUESTS": "/nonexistent.toml"}, {**OWN, "REQUESTS": str(MATRIX_FILE)}],
    "LAB_UID": [{"LAB_UID": "root"}], "LAB_GID": [{"LAB_GID": "-1"}], "LAB_MATRIX": [{"LAB_MATRIX": "/nonexistent"}],
    "LAB_TARGET_HOST": [{"LAB_TARGET_HOST": "example.com"}, {"LAB_TARGET_HOST": "0.0.0.0"}],
}  # fmt: skip
FREE_TEXT = {"PRESET", "RESUME", "BASE_IMAGE", "CODE", "LOCUST_MASTER_BIND_HOST", "LAB_RESULTS", "LAB_DOCKER_VERSION",
             "LAB_HOST_ID", "LAB_IMAGE_ID", "LAB_GIT_COMMIT", "LAB_AGENT_SECRET_FILE", "LAB_VARIANTS",
             "LAB_IN_CONTAINER", "LAB_OWN_APP", "LAB_OWN_CODE", "LAB_LIFESPAN_REPORT"}  # fmt: skip

# A valid value of each run option, as the command line gives it (zero wherever zero is one).
VARIANT_PAIR = ["--variant", "A=", "--variant", "B="]
VALID_FLAGS: dict[str, list[str]] = {
    "preset": ["--preset", "quick"], "cells": ["--cell", CELL], "scenarios": ["--scenario", "json"],
    "repeats": ["--repeats", "1"], "duration": ["--duration", "0.5"], "warmup": ["--warmup", "0"],
    "users": ["--users", "1"], "client": ["--client", "stock"], "referee_seconds": ["--referee-seconds", "0"],
    "rates": ["--rate", "100", "--sweep-seconds", "1"], "swept": ["--sweep-scenario", "plaintext"],
    "sweep_seconds": ["--sweep-seconds", "0"], "arrivals": ["--arrivals", "uniform"], "streams": ["--streams", "1"],
    "stops": ["--stops", "0"], "restart": [], "graceful": ["--graceful", "default"],
    "max_connections": ["--max-connections", "32"], "budget_seconds": ["--budget-minutes", "0"],
    "max_repeats": ["--max-repeats", "100"], "server_cpus": ["--server-cpus", FIRST],
    "load_cpus": ["--load-cpus", LAST], "load_workers": ["--load-workers", "1"], "port": [],
    "calibrate": ["--no-calibrate"], "allow_shared_cpus": ["--allow-shared-cpus"],
    "target_agent": ["--server-agent", "http://127.0.0.1:7900"],
    "locust_master": ["--locust-master", "https://127.0.0.1:8089/"], "target_host": ["--target-host", "127.0.0.1"],
    "servers": ["--server", "uvicorn"], "loops": ["--loop", "uvloop"], "https": ["--http", "hyper"],
    "apps": ["--app", "raw"], "variants": VARIANT_PAIR, "ab": ["--ab", "uvicorn==0.53.0"],
    "pair_rounds": ["--pair-rounds", "0"], "pair_seconds": ["--pair-seconds", "0.5", *VARIANT_PAIR],
    "together": ["--together", "all"],
    "pair_mode": ["--pair-mode", "slices", *VARIANT_PAIR], "slice_seconds": ["--slice-seconds", "5", *VARIANT_PAIR],
    "fail_if_slower": ["--fail-if-slower", "0.01", *VARIANT_PAIR],
    "own_app": ["--own-app", "shop:app", "--own-code", EXAMPLE], "own_code": ["--own-code", EXAMPLE],
    "requests": ["--own-app", "shop:app", "--own-code", EXAMPLE, "--requests", f"{EXAMPLE}/requests.toml"],
}  # fmt: skip
INVALID_FLAGS: dict[str, list[list[str]]] = {
    "preset": [["--preset", "fastest"]], "cells": [["--cell", "nope"], ["--cell", f"{CELL}@B"]],
    "scenarios": [["--scenario", "grpc"]], "repeats": [["--repeats", "0"], ["--repeats", "x"], ["--repeats", "101"]],
    "duration": [["--duration", "0"], ["--duration", "nan"]], "warmup": [["--warmup", "-1"]],
    "users": [["--users", "0"]], "client": [["--client", "curl"]],
    "referee_seconds": [["--referee-seconds", "0.5"], ["--referee-seconds", "-1"]],
    "rates": [["--rate", "0", "--sweep-seconds", "1"], ["--rate", "100"], ["--rate", "1", "--sweep-seconds", "1"]],
    "swept": [["--sweep-scenario", "echo"]], "sweep_seconds": [["--sweep-seconds", "0.2"]],
    "arrivals": [["--arrivals", "burst"]], "streams": [["--streams", "0"]],
    "stops": [["--stops", "-1"], ["--stops", "101"]], "restart": [["--restart"]], "graceful": [["--graceful", "x"]],
    "max_connections": [["--max-connections", "0"], ["--max-connections", "31"]],
    "budget_seconds": [["--budget-minutes", "-1"], ["--budget-minutes", "inf"]],
    "max_repeats": [["--max-repeats", "0"], ["--max-repeats", "1"]],
    "server_cpus": [["--server-cpus", "4096"], ["--server-cpus", ""]],
    "load_cpus": [["--load-cpus", "x"], ["--load-cpus", FIRST, "--server-cpus", FIRST]],
    "load_workers": [["--load-workers", "0"], ["--load-workers", "x"]], "port": [["--port", "0"]],
    "calibrate": [["--no-calibrate=1"]], "allow_shared_cpus": [["--allow-shared-cpus=yes"]],
    "target_agent": [["--server-agent", "notaurl"], ["--server-agent", "ftp://h"], ["--server-agent", "http://:1"]],
    "locust_master": [["--locust-master", "127.0.0.1:8089"], ["--locust-master", "http://h:port"]],
    "target_host": [["--target-host", "example.com"], ["--target-host", "224.0.0.1"]],
    "servers": [["--server", "nginx"]], "loops": [["--loop", "curio"]], "https": [["--http", "quic"]],
    "apps": [["--app", "django"]], "variants": [["--variant", "nonsense"], ["--variant", "A=", "--variant", "A="]],
    "ab": [["--ab", "pydantic-core==2.0"], ["--ab", "uvicorn==0.53.0", "--variant", "C="]],
    "pair_rounds": [["--pair-rounds", "-1"], ["--pair-rounds", "101"]],
    "pair_seconds": [["--pair-seconds", "0", *VARIANT_PAIR]], "pair_mode": [["--pair-mode", "x"]],
    "slice_seconds": [["--slice-seconds", "0", *VARIANT_PAIR]], "together": [["--together", "none"]],
    "fail_if_slower": [["--fail-if-slower", "0", *VARIANT_PAIR], ["--fail-if-slower", "2"]],
    "own_app": [["--own-app", "shop"]], "own_code": [["--own-app", "shop:app", "--own-code", "/nonexistent"]],
    "requests": [["--own-app", "shop:app", "--own-code", EXAMPLE, "--requests", "/nonexistent.toml"]],
}  # fmt: skip


@pytest.fixture
def preflight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Preflight:
    """`python -m lab preflight --preset quick` in this process with these settings and flags, on free ports (the
    compose lab's own may be busy here): its exit code and what it said. No variant is installed, nor resolved."""
    for name in variables.documented():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(preflight_command, "SERVICE_PORTS", {free_port(): "a service's port"})
    monkeypatch.setattr(run_command, "check_variants", lambda variants: None)  # pip's resolver needs the network

    def run(env: dict[str, str], argv: list[str], command: str = "preflight") -> tuple[int, str]:
        results = tmp_path / "results"
        with monkeypatch.context() as m:
            for name, value in env.items():
                m.setenv(name, value)
            port = [] if "--port" in argv else ["--port", str(free_port(count=8))]
            try:
                code = cli.main([command, "--preset", "quick", "--results", str(results), *port, *argv])
            except SystemExit as exc:  # argparse's refusal (lab/cli.py: Parser.error)
                code = exc.code
        said = capsys.readouterr().err
        if code == 2:  # refused: one line, nothing written
            assert re.fullmatch(r"asgi-bench-lab: error: [^\n]+\n", said), said
            assert not results.exists() or not any(results.iterdir())
        return code, said

    return run


def test_every_variable_and_option_has_a_valid_case_and_a_bad_one_where_it_can() -> None:
    assert set(VALID_ENV) == set(variables.documented())
    assert set(INVALID_ENV) | FREE_TEXT == set(variables.documented()) and not set(INVALID_ENV) & FREE_TEXT
    assert set(VALID_FLAGS) == set(INVALID_FLAGS) == set(run_config.options())


@pytest.mark.parametrize("name", VALID_ENV)
def test_a_valid_variable_passes_the_preflight(preflight: Preflight, name: str) -> None:
    code, said = preflight(VALID_ENV[name], [])
    assert code == 0 and "preflight ok" in said, said


@pytest.mark.parametrize(("name", "env"), [(n, e) for n, bad in INVALID_ENV.items() for e in bad])
def test_a_bad_variable_is_refused_in_one_line(preflight: Preflight, name: str, env: dict[str, str]) -> None:
    code, said = preflight(env, [])
    assert code == 2, said


@pytest.mark.parametrize("name", VALID_FLAGS)
def test_a_valid_option_passes_the_preflight(preflight: Preflight, name: str) -> None:
    if name == "restart":  # the lifecycle command's only: there, with no restarts asked for, it starts nothing
        code, said = preflight({}, ["--restart", "--stops", "0"], "lifecycle")
        assert code == 0 and "--stops 0: no restarts asked for" in said, said
        return
    code, said = preflight({}, VALID_FLAGS[name])
    assert code == 0 and "preflight ok" in said, said


@pytest.mark.parametrize(("name", "argv"), [(n, a) for n, bad in INVALID_FLAGS.items() for a in bad])
def test_a_bad_option_is_refused_in_one_line(preflight: Preflight, name: str, argv: list[str]) -> None:
    code, said = preflight({}, argv)
    assert code == 2, said


def test_a_variable_becomes_its_options_type(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in variables.documented():
        monkeypatch.delenv(name, raising=False)
    given = {
        "VARIANTS": "A=;B=",
        "PAIR_ROUNDS": "4",
        "FAIL_IF_SLOWER": "2",
        "LOCUST_WORKERS": "2",
        "SERVER_CPUS": FIRST,
        "LOAD_CPUS": LAST,
        "LAB_ALLOW_SHARED_CPUS": "yes",
        "SCENARIOS": "json plaintext",
    }
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    c = run_config.parse(["--preset", "quick"], load())
    assert (c.pair_rounds, c.fail_if_slower, c.load_workers, c.allow_shared_cpus) == (4, 2.0, 2, True)
    assert (c.server_cpus, c.load_cpus, c.scenarios) == ([int(FIRST)], [int(LAST)], ["json", "plaintext"])
    monkeypatch.setenv("PAIR_ROUNDS", "0")
    assert run_config.parse(["--preset", "quick"], load()).pair_rounds == 0  # zero given: none, not the default
    monkeypatch.delenv("PAIR_ROUNDS")
    assert run_config.parse(["--preset", "quick"], load()).pair_rounds == run_config.PAIR_ROUNDS


def test_a_bad_variable_is_named_as_it_was_set(preflight: Preflight) -> None:
    said = {name: preflight(env, [])[1] for name, env in [("PAIR_ROUNDS", {"PAIR_ROUNDS": "four"}),
            ("bound", {"PAIR_ROUNDS": "200"}), ("LOCUST_WORKERS", {"LOCUST_WORKERS": "0"})]}  # fmt: skip
    assert said["PAIR_ROUNDS"].endswith(": PAIR_ROUNDS='four': give a whole number, e.g. PAIR_ROUNDS=16\n")
    assert said["bound"].endswith(": PAIR_ROUNDS=200 must be in 0-100\n")
    assert said["LOCUST_WORKERS"].endswith(": LOCUST_WORKERS=0 must be at least 1\n")


def test_zero_is_a_value_not_a_missing_one(
    preflight: Preflight, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert run_config.parse(["--budget-minutes", "0", "--preset", "default"], load()).budget_seconds == 0
    assert run_config.parse(["--preset", "default"], load()).budget_seconds == 17 * 60
    assert run_config.parse(["--stops", "0", "--preset", "default"], load()).stops == 0
    counts = []
    monkeypatch.setattr(lifecycle_command.os, "sched_setaffinity", lambda pid, cpus: None)  # it pins itself
    monkeypatch.setattr(
        lifecycle_command, "tests", lambda config, matrix, targets, count, out: (counts.append(count), 0)[1]
    )
    out = tmp_path / "stops"
    code, said = preflight({}, ["--cell", CELL, "--stops", "0", "--out", str(out)], "lifecycle")
    assert code == 0 and "--stops 0: no stops asked for; nothing started, nothing written" in said and not out.exists()
    assert counts == []
    assert preflight({}, ["--cell", CELL, "--out", str(out)], "lifecycle")[0] == 0
    assert preflight({}, ["--cell", CELL, "--stops", "2", "--out", str(out)], "lifecycle")[0] == 0
    assert counts == [lifecycle_command.DEFAULT_STOPS, 2]  # its own default only when --stops is not given


# --- as a user types them: two cases the issue names, in a process of their own ----------------------------------


@pytest.mark.parametrize(
    ("env", "argv", "said"),
    [
        ({"PAIR_ROUNDS": "four"}, ["preflight"], "PAIR_ROUNDS='four': give a whole number"),
        ({}, ["run", "--server-agent", "notaurl"], "--server-agent 'notaurl': give the service's URL"),
    ],
)
def test_a_bad_setting_from_the_shell_ends_in_one_line(tmp_path: Path, env: dict[str, str], argv: list[str],
                                                       said: str) -> None:  # fmt: skip
    clean = {k: v for k, v in os.environ.items() if k not in variables.documented()}
    results = tmp_path / "results"
    done = subprocess.run([sys.executable, "-m", "lab", *argv, "--results", str(results)], cwd=ROOT,
                          env={**clean, **env}, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and said in done.stderr, done.stderr
    assert done.stderr.startswith("asgi-bench-lab: error:") and not results.exists()
