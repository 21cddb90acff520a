"""The run's parts on their own: the plan is a pure function of the configuration, the ledger holds what is on disk,
each option's bound holds wherever a configuration is made, a load survives the trip through Locust's options, and
an error that is not the lab's is a bug the manifest records."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from core.errors import LabError, ProcessFailedError, UsageError
from lab import bundle, cli
from lab import config as run_config
from lab.lifecycle.stops import stop_cells
from lab.run import plan
from lab.run.ledger import Ledger
from lab.run.runner import Runner
from loadtests.load import LAB_FIELDS, Load
from loadtests.recorder import Recorder, Snapshot
from servers.local import LocalTargets
from servers.matrix import load
from tests.synthetic import make_bundle

MATRIX = load()
KEYS = [c.key for c in MATRIX.preset("default").cells]


def config(*argv: str) -> run_config.RunConfig:
    return run_config.parse(["--server-cpus", "0", "--load-cpus", "0", "--allow-shared-cpus", *argv], MATRIX)


# --- the plan ---------------------------------------------------------------------------------------------------


def test_the_plan_is_the_same_each_time_and_visits_every_cell_once_a_round_in_its_own_order() -> None:
    c = config("--preset", "default")
    rounds = plan.plan(c, MATRIX, "20260101T000000Z-abc")
    assert rounds == plan.plan(c, MATRIX, "20260101T000000Z-abc")
    assert len(rounds) == c.repeats
    for number, visits in enumerate(rounds, start=1):
        assert sorted(v.cell.key for v in visits) == sorted(KEYS)
        assert all(
            w.number == number and w.duration == c.duration and w.warmup == c.warmup for v in visits for w in v.work
        )
        assert all([w.scenario for w in v.work] == c.scenarios_of(v.cell, MATRIX) for v in visits)
    orders = [[v.cell.key for v in visits] for visits in rounds]
    assert len({tuple(o) for o in orders}) == len(orders)  # 18 cells: three shuffles that differ
    assert orders != plan.plan(c, MATRIX, "20260101T000000Z-other")  # the run's id seeds them


def test_a_fast_only_rate_is_planned_only_where_the_cell_serves_it() -> None:
    c = config("--cell", KEYS[0], "--cell", KEYS[1], "--scenario", "plaintext", "--sweep-seconds", "2")
    rates = {"plaintext": plan.Rates(common=[100.0, 400.0], fast=[5000.0])}
    serves = {KEYS[0]: {("plaintext", 5000.0): True}, KEYS[1]: {("plaintext", 5000.0): False}}
    visits = {v.cell.key: v for v in plan.sweep_visits(c, MATRIX, "run", rates, serves)}
    assert [w.rate for w in visits[KEYS[0]].work] == [100.0, 400.0, 5000.0]
    assert [w.rate for w in visits[KEYS[1]].work] == [100.0, 400.0]
    assert [w.warmup for w in visits[KEYS[0]].work] == [plan.SWEEP_WARMUP, 0.0, 0.0]  # the first rate warms up


def test_the_sweep_runs_the_presets_scenarios_of_the_run_or_the_ones_named() -> None:
    assert config("--preset", "default").sweep_scenarios == ["plaintext"]  # the default's: within its 20 minutes
    assert config("--preset", "default", "--scenario", "json").sweep_scenarios == ["json"]  # none of the preset's
    named = config("--preset", "default", "--sweep-scenario", "json", "--sweep-scenario", "plaintext")
    assert named.sweep_scenarios == ["plaintext", "json"]  # in the run's order
    assert config("--preset", "full").sweep_scenarios == list(MATRIX.preset("full").scenarios)
    with pytest.raises(UsageError, match="--sweep-scenario echo: not a scenario of this run"):
        config("--preset", "default", "--sweep-scenario", "echo")


def test_the_stop_phase_stops_the_http1_cells_and_leaves_h2c_to_their_servers_http1_cells(tmp_path: Path) -> None:
    c = config("--preset", "default")
    h2c = [cell.key for cell in c.cells if MATRIX.protocol(cell) == "h2"]
    stopped = stop_cells(c.cells, MATRIX)  # the runner's stop phase stops these
    assert h2c and [cell.key for cell in stopped] == [k for k in [x.key for x in c.cells] if k not in h2c]


# --- the ledger -------------------------------------------------------------------------------------------------


def test_the_ledger_reads_the_bundle_once_and_a_damaged_file_counts_as_not_there(tmp_path: Path) -> None:
    key = "uvicorn-uvloop-httptools-w1-raw"
    root = make_bundle(tmp_path, {(key, "plaintext", 0): [1000.0, 1100.0, 1200.0]})
    damaged = bundle.repeat_path(root, key, "plaintext", 3)
    damaged.write_text(damaged.read_text()[:100])
    ledger = Ledger(root, root.name)
    cell = MATRIX.cell_from_key(key)
    done = [ledger.done(cell, plan.Work("plaintext", 0.0, n, 1.0, 5.0)) for n in (1, 2, 3)]
    assert done == [True, True, False]
    assert [r.repeat for r in ledger.ok(cell, "plaintext")] == [1, 2]
    again = ledger.repeats[((key, "plaintext", 0.0), 1)].model_copy(update={"repeat": 3})
    ledger.record(again)  # written, and known without reading the folder again
    assert ledger.done(cell, plan.Work("plaintext", 0.0, 3, 1.0, 5.0))
    assert bundle.read_model(damaged, "repeat").repeat == 3


# --- one option table -------------------------------------------------------------------------------------------


def bounded() -> list[tuple[str, run_config.Option]]:
    return [(name, o) for name, o in run_config.options().items() if o.low is not None]


@pytest.mark.parametrize(("name", "option"), bounded(), ids=[name for name, _ in bounded()])
def test_each_bound_holds_on_the_command_line_and_on_a_resumed_configuration(name: str, option: Any) -> None:
    """Declared once on its field, a bound refuses a value from the command line and the same value in a manifest."""
    kind = run_config.RunConfig.model_fields[name].annotation
    bad = option.low - 1
    shown = str(int(bad)) if kind is int else str(float(bad))
    with pytest.raises(UsageError, match=f"^{option.flag} "):
        config("--preset", "quick", option.flag, shown)
    good = config("--preset", "quick")
    now = getattr(good, name)
    stored = good.model_copy(update={name: (float if now is None else type(now))(bad * option.scale)})  # None: unset
    with pytest.raises(UsageError, match=f"^{option.flag} "):
        stored.check(MATRIX)


def test_every_run_option_is_a_field_and_every_flag_is_on_the_parser() -> None:
    parser = argparse.ArgumentParser()
    run_config.add_options(parser, MATRIX)
    flags = {flag for action in parser._actions for flag in action.option_strings}
    table = run_config.options()
    assert {o.flag for o in table.values()} <= flags
    assert set(run_config.RunConfig.model_fields) - set(table) == {"matrix", "own"}  # the fields no option sets


def test_a_resumed_run_refuses_a_matrix_file_that_changed(tmp_path: Path) -> None:
    own = tmp_path / "matrix.toml"
    own.write_text(MATRIX.source.read_text() + "\n# my own\n")  # type: ignore[union-attr]
    mine = load(own)
    c = run_config.parse(["--preset", "quick"], mine)
    assert c.matrix is not None and c.matrix.digest == mine.digest != MATRIX.digest
    assert c.matrix_of(MATRIX).digest == mine.digest  # resumed where LAB_MATRIX is not set: the run's own file
    own.write_text(own.read_text() + "\n# edited\n")
    with pytest.raises(UsageError, match="changed; restore it"):
        c.matrix_of(MATRIX)


# --- a load through Locust's options, a snapshot through the master ----------------------------------------------


def test_a_load_is_the_same_after_the_trip_through_locusts_options() -> None:
    sent = Load(target="http://127.0.0.1:8000", scenario=MATRIX.scenario("io"), params={"ms": "5"}, users=7,
                duration=2.5, rate=300.0, warmup=0.5, arrivals="uniform", max_connections=40)  # fmt: skip
    parser = argparse.ArgumentParser()
    Load.add_arguments(parser)
    argv = sent.command_line()
    own = argv[argv.index("--lab-" + LAB_FIELDS[0].replace("_", "-")) : -1]  # the --lab-* ones (the user class last)
    options = parser.parse_args(own)
    assert Load.from_options(options, sent.target, sent.users, sent.client) == sent
    assert sent.form()["user_count"] == 7 and json.loads(sent.form()["lab_scenario"])["path"] == "/io"  # type: ignore[arg-type]


def test_a_worker_snapshot_crosses_as_a_typed_record() -> None:
    r = Recorder()
    r.open()
    r.success(0.000250)
    r.failure("status 500")
    r.close()
    back = Snapshot.model_validate_json(r.snapshot().model_dump_json())
    assert back == r.snapshot() and back.ok == 1 and back.errors == {"status 500": 1}


# --- the lab's errors and everyone else's -----------------------------------------------------------------------


def test_a_process_failure_keeps_its_log_tail_beside_the_message() -> None:
    error = ProcessFailedError("the server exited 1 before it was ready", "Traceback ...\nImportError: no_such_app")
    assert str(error) == "the server exited 1 before it was ready"
    assert error.line().startswith("failed: the server exited 1") and error.line().endswith("no_such_app")


def test_a_bug_during_a_run_marks_the_manifest_failed_and_goes_on_as_itself(tmp_path: Path) -> None:
    class Broken(LocalTargets):
        def serve(self, cell: object, port: int, graceful: str = "lab") -> object:  # type: ignore[override]
            raise ZeroDivisionError("a bug in a backend")

    root = tmp_path / "20260101T000000Z-abc"
    root.mkdir()
    c = config("--cell", KEYS[0], "--scenario", "plaintext", "--repeats", "1", "--no-calibrate", "--sweep-seconds", "0",
               "--referee-seconds", "0")  # fmt: skip
    runner = Runner(c, MATRIX, root, Broken(tmp_path, (0,)), SimpleNamespace(cpus=(0,), workers=1), SimpleNamespace(  # type: ignore[arg-type]
        planned=lambda n: None, passed=lambda n: None, measured=print, say=print))  # fmt: skip
    with pytest.raises(ZeroDivisionError):
        runner.run()
    manifest = bundle.read_model(root / "manifest.json", "manifest")
    assert manifest.status == "failed" and "ZeroDivisionError: a bug in a backend" in manifest.parts[-1].note


def test_the_command_line_turns_the_labs_errors_into_one_line_and_leaves_the_rest_alone(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(args: object, matrix: object) -> int:
        raise UsageError("--thing 3 must be in 4-5")

    monkeypatch.setattr(cli, "preflight_main", refuse)
    assert cli.main(["preflight"]) == 2
    assert capsys.readouterr().err == "asgi-bench-lab: error: --thing 3 must be in 4-5\n"

    def broken(args: object, matrix: object) -> int:
        raise KeyError("a bug")

    monkeypatch.setattr(cli, "preflight_main", broken)
    with pytest.raises(KeyError):
        cli.main(["preflight"])
    assert issubclass(UsageError, LabError) and not issubclass(KeyError, LabError)
