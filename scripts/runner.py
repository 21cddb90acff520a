"""Run cells x scenarios x repeats honestly and keep every result.

For each cell: start its server pinned to the server CPUs, and for each scenario the cell supports: an unrecorded
warm-up, then N measured repeats from the load generator pinned to its own CPUs, each saved as soon as it ends.
A cell that fails to start, crashes or hangs is recorded with its log tail and the matrix goes on. Interrupted, the
current server is stopped, what is on disk stays valid, and `--resume RUN_ID` skips what is done.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtests import run as loadrun
from loadtests.calibrate import calibrate
from scripts import bundle, fingerprint
from servers.launcher import check_port_free
from servers.matrix import ROOT, Cell, Matrix, MatrixError, load
from servers.process import Server, ServerError, serve

DEFAULT_RESULTS = ROOT / "results"


@dataclass(frozen=True)
class Plan:
    """A run's settings, resolved once and checked before anything starts."""

    cells: tuple[Cell, ...]
    scenarios: tuple[str, ...]
    repeats: int
    duration: float
    warmup: float
    users: int
    processes: int = 1
    rates: tuple[float, ...] = (0.0,)  # 0 = closed model; each other value an offered requests/s (open model)
    client: str = "lean"
    server_cpus: tuple[int, ...] = (0,)
    load_cpus: tuple[int, ...] = (1,)
    port: int = 8000
    calibrate: bool = True
    preset: str | None = None
    matrix: Matrix = field(default_factory=load, compare=False, repr=False)
    local_cpus: bool = True  # False when the server and Locust run in containers with their own CPU sets
    allow_shared_cpus: bool = False  # server and load generator on the same CPUs: an unpinned, "as people run it" run

    def __post_init__(self) -> None:
        if not self.cells:
            raise MatrixError("no cells to run")
        for name in self.scenarios:
            self.matrix.scenario(name)
        if self.repeats < 1 or self.duration <= 0 or self.warmup < 0 or self.users < 1:
            raise MatrixError("repeats and users must be >= 1, duration > 0, warmup >= 0")
        if not self.rates or any(r < 0 for r in self.rates) or len(set(self.rates)) != len(self.rates):
            raise MatrixError(f"rates {list(self.rates)} must be distinct and >= 0 (0 = closed model)")
        available = set(os.sched_getaffinity(0)) if self.local_cpus else set(self.server_cpus) | set(self.load_cpus)
        for name, cpus in (("server", self.server_cpus), ("load", self.load_cpus)):
            if not cpus or not set(cpus) <= available:
                raise MatrixError(f"{name} CPU set {list(cpus)} is not within this machine's CPUs {sorted(available)}")
        if set(self.server_cpus) & set(self.load_cpus) and len(available) > 1 and not self.allow_shared_cpus:
            raise MatrixError(
                f"server CPUs {list(self.server_cpus)} and load CPUs {list(self.load_cpus)} overlap; "
                "give them disjoint sets so the client does not compete with the server (or --allow-shared-cpus)"
            )
        # Each load is validated on a stand-in target: scenario parameters, client, users, rates.
        for name in self.scenarios:
            for rate in self.rates:
                loadrun.Load(
                    target="http://127.0.0.1:1", scenario=name, users=self.users, client=self.client, rate=rate
                )

    def units(self) -> list[tuple[Cell, str, float]]:
        """(cell, scenario, offered rate) in run order; a cell's units run on one server start."""
        return [(c, s, r) for c in self.cells for s in self.scenarios if self.matrix.supports(c, s) for r in self.rates]

    def config(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "cells": [c.key for c in self.cells],
            "scenarios": list(self.scenarios),
            "repeats": self.repeats,
            "duration": self.duration,
            "warmup": self.warmup,
            "users": self.users,
            "processes": self.processes,
            "rates": list(self.rates),
            "client": self.client,
            "server_cpus": list(self.server_cpus),
            "load_cpus": list(self.load_cpus),
            "port": self.port,
            "calibrate": self.calibrate,
        }

    @classmethod
    def from_config(cls, config: bundle.RunConfig, matrix: Matrix | None = None, local_cpus: bool = True) -> Plan:
        matrix = matrix or load()
        return cls(
            cells=tuple(matrix.cell_from_key(k) for k in config.cells),
            scenarios=tuple(config.scenarios),
            repeats=config.repeats,
            duration=config.duration,
            warmup=config.warmup,
            users=config.users,
            processes=config.processes,
            rates=tuple(config.rates),
            client=config.client,
            server_cpus=tuple(config.server_cpus),
            load_cpus=tuple(config.load_cpus),
            port=config.port,
            calibrate=config.calibrate,
            preset=config.preset,
            matrix=matrix,
            local_cpus=local_cpus,
            allow_shared_cpus=bool(set(config.server_cpus) & set(config.load_cpus)),
        )


def point_label(scenario: str, rate: float) -> str:
    """A scenario, or a scenario at an offered rate: json, json@2000."""
    return f"{scenario}@{rate:g}" if rate else scenario


def check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise MatrixError(f"results directory {directory} is not writable: {exc.strerror}") from None


def new_run_dir(results: Path) -> Path:
    """results/<UTC timestamp>-<host id>, created exclusively: never an earlier run's directory."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    host = fingerprint.machine_id()
    for n in range(100):
        candidate = results / (f"{stamp}-{host}" + (f"-{n}" if n else ""))
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            continue
    raise MatrixError(f"cannot create a new run directory under {results}")


# --- progress ----------------------------------------------------------------------------------------------------


@dataclass
class Progress:
    total: int
    write: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr, flush=True))
    done: int = 0
    measured: int = 0  # units measured in this session (for the ETA)
    started: float = field(default_factory=time.monotonic)

    def line(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        eta = f"ETA {fmt(elapsed / self.measured * (self.total - self.done))}" if self.measured else "ETA ?"
        self.write(f"[{self.done}/{self.total}] {text} | elapsed {fmt(elapsed)}, {eta}")


def fmt(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


# --- the run -----------------------------------------------------------------------------------------------------


class RunInterruptedError(Exception):
    """SIGTERM or Ctrl-C."""


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        raise RunInterruptedError(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


ServeFn = Callable[..., contextlib.AbstractContextManager[Server]]
LoadFn = Callable[[loadrun.Load, Path], dict[str, Any]]


@dataclass
class Runner:
    plan: Plan
    root: Path
    run_id: str
    serve: ServeFn = serve
    load: LoadFn = loadrun.run
    progress: Progress | None = None

    def __post_init__(self) -> None:
        self.logs = self.root / "logs"
        self.manifest: dict[str, Any] = {}

    # manifest --------------------------------------------------------------------------------------------------
    def start_manifest(self, resumed: dict[str, Any] | None) -> None:
        skipped = [
            {"key": c.key, "scenario": s, "reason": self.plan.matrix.invalid_reason(c, s)}
            for c in self.plan.cells
            for s in self.plan.scenarios
            if not self.plan.matrix.supports(c, s)
        ]
        self.manifest = {
            "schema_version": bundle.SCHEMA_VERSION,
            "kind": "manifest",
            "run_id": self.run_id,
            "status": "running",
            "started": resumed["started"] if resumed else time.time(),
            "ended": None,
            "config": self.plan.config(),
            "machine": fingerprint.machine(),
            "versions": fingerprint.versions(),
            "lab_commit": fingerprint.lab_commit(),
            "skipped": skipped,
            "failures": [],
        }
        self.save_manifest()

    def save_manifest(self) -> None:
        self.manifest["failures"] = sorted(p.stem for p in (self.root / "failures").glob("*.json"))
        bundle.write_record(self.root / "manifest.json", self.manifest)

    # failures --------------------------------------------------------------------------------------------------
    def fail(self, cell: Cell, scenario: str | None, phase: str, error: str, log_tail: str) -> None:
        record = {
            "schema_version": bundle.SCHEMA_VERSION,
            "kind": "failure",
            "run_id": self.run_id,
            "key": cell.key,
            "cell": asdict(cell),
            "scenario": scenario,
            "phase": phase,
            "error": error,
            "log_tail": log_tail,
            "at": time.time(),
        }
        bundle.write_record(bundle.failure_path(self.root, cell.key, scenario), record)
        self.save_manifest()
        assert self.progress
        self.progress.line(f"FAILED {cell.key} {scenario or ''} ({phase}): {error.splitlines()[0][:200]}")

    # one measured repeat ---------------------------------------------------------------------------------------
    def load_spec(self, server: Server, scenario: str, duration: float, rate: float) -> loadrun.Load:
        p = self.plan
        return loadrun.Load(
            target=server.url,
            scenario=scenario,
            users=p.users,
            duration=duration,
            rate=rate,
            processes=p.processes,
            cpus=p.load_cpus,
            client=p.client,
        )

    def measure(self, server: Server, cell: Cell, scenario: str, rate: float, repeat: int) -> dict[str, Any]:
        server.sample_open()
        try:
            result = self.load(self.load_spec(server, scenario, self.plan.duration, rate), self.logs / "load")
        except BaseException:
            server.sample_close(0.0, 0.0)  # stops the sampling; the figures are not wanted
            raise
        figures = server.sample_close(result["window"]["start"], result["window"]["end"])
        result.update(
            schema_version=bundle.SCHEMA_VERSION,
            kind="repeat",
            run_id=self.run_id,
            key=cell.key,
            cell=asdict(cell),
            repeat=repeat,
            server={
                "cpus": list(self.plan.server_cpus),
                "startup_seconds": server.report["startup_seconds"],
                **figures,
            },
        )
        result.pop("load", None)
        return result

    # a cell ----------------------------------------------------------------------------------------------------
    def run_cell(self, cell: Cell, points: list[tuple[str, float]]) -> None:
        """Start the cell's server once, run each (scenario, rate) on it, stop it; record whatever goes wrong."""
        p, progress = self.plan, self.progress
        assert progress
        started = False
        try:
            with self.serve(cell, self.logs, port=p.port, cpus=p.server_cpus) as server:
                started = True
                for i, (scenario, rate) in enumerate(points):
                    self.run_point(server, cell, scenario, rate)
                    if not server.alive():
                        code = server.exit_code
                        label = point_label(scenario, rate)
                        self.fail(cell, label, "load", f"server exited {code} during the load", server.log_tail())
                        progress.done += p.repeats * (len(points) - i - 1)
                        return
                code = server.stop()
                if code != 0:
                    self.fail(cell, None, "stop", f"server exited {code} after SIGTERM", server.log_tail())
        except ServerError as exc:
            message, _, log_tail = str(exc).partition("\n")
            self.fail(cell, None, "stop" if started else "start", message, log_tail)
            if not started:
                progress.done += p.repeats * len(points)

    def run_point(self, server: Server, cell: Cell, scenario: str, rate: float) -> None:
        p, progress = self.plan, self.progress
        assert progress
        label = point_label(scenario, rate)
        todo = [r for r in range(1, p.repeats + 1) if not self.done(cell, scenario, rate, r)]
        progress.done += p.repeats - len(todo)
        bundle.failure_path(self.root, cell.key, label).unlink(missing_ok=True)
        try:
            if todo and p.warmup > 0:
                progress.line(f"{cell.key} {label}: warm-up {p.warmup:g} s")
                self.load(self.load_spec(server, scenario, p.warmup, rate), self.logs / "load")
            for r in todo:
                result = self.measure(server, cell, scenario, rate, r)
                bundle.write_record(bundle.repeat_path(self.root, cell.key, scenario, r, rate), result)
                progress.done += 1
                progress.measured += 1
                flags = " CLIENT-BOUND" if result["client_bound"] else ""
                flags += " SHORT-OF-RATE" if result["rate_shortfall"] else ""
                flags += f" errors={sum(result['errors'].values())}" if result["errors"] else ""
                p99 = result["latency"]["percentiles_us"].get("p99", 0) / 1000
                progress.line(
                    f"{cell.key} {label} repeat {r}/{p.repeats}: {result['rps']:.0f} RPS, p99 {p99:.2f} ms{flags}"
                )
        except loadrun.LoadError as exc:
            message, _, log_tail = str(exc).partition("\n")
            self.fail(cell, label, "load", message, log_tail)
            progress.done += sum(not self.done(cell, scenario, rate, r) for r in todo)

    def done(self, cell: Cell, scenario: str, rate: float, repeat: int) -> bool:
        path = bundle.repeat_path(self.root, cell.key, scenario, repeat, rate)
        if not path.exists():
            return False
        try:
            bundle.read_model(path, "repeat")
        except bundle.BundleError:
            return False
        return True

    def run(self, resumed: dict[str, Any] | None = None) -> int:
        p = self.plan
        units = p.units()
        self.progress = self.progress or Progress(total=len(units) * p.repeats)
        self.start_manifest(resumed)
        self.progress.line(
            f"run {self.run_id}: {len(p.cells)} cells, {len(units)} cell x scenario, {p.repeats} repeats"
        )
        status = "complete"
        with interruptible():
            try:
                if p.calibrate and not (self.root / "calibration.json").exists():
                    self.run_calibration()
                by_cell: dict[Cell, list[tuple[str, float]]] = {}
                for cell, scenario, rate in units:
                    by_cell.setdefault(cell, []).append((scenario, rate))
                for cell, points in by_cell.items():
                    if all(self.done(cell, s, q, r) for s, q in points for r in range(1, p.repeats + 1)):
                        self.progress.done += len(points) * p.repeats
                        continue
                    bundle.failure_path(self.root, cell.key, None).unlink(missing_ok=True)
                    self.run_cell(cell, points)
            except RunInterruptedError as exc:
                status = "interrupted"
                self.progress.line(f"interrupted by {exc}; resume with --resume {self.run_id}")
        self.manifest.update(status=status, ended=time.time())
        self.save_manifest()
        charts_ok = self.write_outputs()
        if status == "interrupted":
            return 130
        return 1 if self.manifest["failures"] or not charts_ok else 0

    def write_outputs(self) -> bool:
        """summary.csv, charts, report.html and summary.md, from the bundle as it is on disk."""
        from scripts import plot, report

        assert self.progress
        result = bundle.load_bundle(self.root)
        bundle.write_summary_csv(result)
        if not result.repeats:
            self.progress.line("no measured results, so no charts")
            return True
        try:
            data, charts = plot.render(result, matrix=self.plan.matrix)
            pages = report.write(result, data, charts)
        except Exception as exc:  # a chart bug must not lose the run: the bundle is already on disk
            self.progress.line(f"charts failed: {type(exc).__name__}: {exc}; rerun: python -m scripts.plot {self.root}")
            return False
        self.progress.line(f"{len(charts)} chart files, {pages[0]} and {pages[1]}")
        return True

    def run_calibration(self) -> None:
        assert self.progress
        self.progress.line("calibrating the load generator")
        try:
            result = calibrate(
                self.plan.server_cpus,
                self.plan.load_cpus,
                self.plan.users,
                self.plan.duration,
                self.logs / "calibration",
            )
        except (loadrun.LoadError, ServerError) as exc:
            self.progress.line(f"calibration failed (charts will have no ceiling line): {str(exc).splitlines()[0]}")
            return
        result.update(schema_version=bundle.SCHEMA_VERSION, kind="calibration")
        bundle.write_record(self.root / "calibration.json", result)
        self.progress.line(
            f"calibration: lab client {result['lean']['rps']:.0f} RPS, stock {result['stock']['rps']:.0f}, "
            f"wrk {result['wrk']['rps'] if result['wrk'] else 'not installed'}"
        )


def start(
    plan: Plan, results: Path = DEFAULT_RESULTS, serve_fn: ServeFn = serve, load_fn: LoadFn = loadrun.run
) -> tuple[Path, int]:
    """A new run: check the port and the results directory, then run. Returns (bundle directory, exit code)."""
    check_port_free("127.0.0.1", plan.port)
    check_writable(results)
    root = new_run_dir(results)
    runner = Runner(plan, root, root.name, serve_fn, load_fn)
    return root, runner.run()


def resume(run_dir: Path, serve_fn: ServeFn = serve, load_fn: LoadFn = loadrun.run) -> tuple[Path, int]:
    """Continue an interrupted (or failed) run with its own settings, skipping every repeat already on disk."""
    manifest = bundle.read_model(run_dir / "manifest.json", "manifest")
    plan = Plan.from_config(manifest.config, local_cpus=serve_fn is serve)
    check_port_free("127.0.0.1", plan.port)
    runner = Runner(plan, run_dir, manifest.run_id, serve_fn, load_fn)
    return run_dir, runner.run(resumed=manifest.model_dump(mode="json"))
