"""Run cells x scenarios x repeats honestly and keep every result.

For each cell: start its server through the target backend, and for each scenario the cell supports: an unrecorded
warm-up, then N measured repeats through the load backend, each saved as soon as it ends. A cell that fails to
start, crashes or hangs is recorded with its log tail and the matrix goes on. Interrupted, the current server is
stopped, what is on disk stays valid, and `--resume RUN_ID` skips what is done.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.host import ROOT, UsageError
from lab import bundle, fingerprint
from lab.bundle import CellInfo, Failure, Manifest, Repeat, ServerFigures, Skipped
from lab.calibration import calibrate
from lab.config import RunConfig
from loadtests.load import Load, LoadBackend, LoadError
from servers.matrix import Cell
from servers.target import RunningServer, ServerError, TargetBackend

DEFAULT_RESULTS = ROOT / "results"


def point_label(scenario: str, rate: float) -> str:
    """A scenario, or a scenario at an offered rate: json, json@2000."""
    return f"{scenario}@{rate:g}" if rate else scenario


def check_writable(directory: Path) -> None:
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"results path {directory} is a file, not a directory; choose a directory with --results")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"results directory {directory} is not writable ({exc.strerror}); choose another with --results"
        ) from None


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
    raise UsageError(f"cannot create a new run directory under {results}")


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


@dataclass
class Runner:
    config: RunConfig
    root: Path
    run_id: str
    targets: TargetBackend
    loads: LoadBackend
    progress: Progress | None = None
    manifest: Manifest | None = None

    # manifest --------------------------------------------------------------------------------------------------
    def start_manifest(self, resumed: Manifest | None) -> None:
        self.manifest = Manifest(
            schema_version=bundle.SCHEMA_VERSION,
            kind="manifest",
            run_id=self.run_id,
            status="running",
            started=resumed.started if resumed else time.time(),
            ended=None,
            config=self.config,
            machine=fingerprint.machine(),
            versions=fingerprint.versions(),
            lab_commit=fingerprint.lab_commit(),
            skipped=[Skipped(key=c.key, scenario=s, reason=r) for c, s, r in self.config.skipped()],
            failures=[],
        )
        self.save_manifest()

    def save_manifest(self, **changes: Any) -> None:
        assert self.manifest is not None
        failures = sorted(p.stem for p in (self.root / "failures").glob("*.json"))
        self.manifest = self.manifest.model_copy(update={"failures": failures, **changes})
        bundle.write_record(self.root / "manifest.json", self.manifest)

    # failures --------------------------------------------------------------------------------------------------
    def fail(self, cell: Cell, scenario: str | None, phase: str, error: str, log_tail: str) -> None:
        record = Failure(
            schema_version=bundle.SCHEMA_VERSION,
            kind="failure",
            run_id=self.run_id,
            key=cell.key,
            cell=CellInfo(**vars(cell)),
            scenario=scenario,
            phase=phase,  # type: ignore[arg-type]
            error=error,
            log_tail=log_tail,
            at=time.time(),
        )
        bundle.write_record(bundle.failure_path(self.root, cell.key, scenario), record)
        self.save_manifest()
        assert self.progress
        self.progress.line(f"FAILED {cell.key} {scenario or ''} ({phase}): {error.splitlines()[0][:200]}")

    # one measured repeat ---------------------------------------------------------------------------------------
    def load_spec(self, server: RunningServer, scenario: str, duration: float, rate: float) -> Load:
        c = self.config
        return Load(target=server.url, scenario=scenario, users=c.users, duration=duration, rate=rate, client=c.client)

    def measure(self, server: RunningServer, cell: Cell, scenario: str, rate: float, repeat: int) -> Repeat:
        server.sample_open()
        try:
            result = self.loads.run(self.load_spec(server, scenario, self.config.duration, rate))
        except BaseException:
            server.sample_close(0.0, 0.0)  # stops the sampling; the figures are not wanted
            raise
        sample = server.sample_close(result.window.start, result.window.end)
        return Repeat(
            schema_version=bundle.SCHEMA_VERSION,
            kind="repeat",
            run_id=self.run_id,
            key=cell.key,
            cell=CellInfo(**vars(cell)),
            scenario=scenario,
            offered_rps=rate or None,
            repeat=repeat,
            load=result,
            server=ServerFigures(
                cpus=list(self.targets.cpus), startup_seconds=server.report.startup_seconds, **sample.model_dump()
            ),
        )

    # a cell ----------------------------------------------------------------------------------------------------
    def run_cell(self, cell: Cell, points: list[tuple[str, float]]) -> None:
        """Start the cell's server once, run each (scenario, rate) on it, stop it; record whatever goes wrong."""
        c, progress = self.config, self.progress
        assert progress
        started = False
        try:
            with self.targets.serve(cell, c.port) as server:
                started = True
                for i, (scenario, rate) in enumerate(points):
                    self.run_point(server, cell, scenario, rate)
                    if not server.alive():
                        code = server.exit_code
                        label = point_label(scenario, rate)
                        self.fail(cell, label, "load", f"server exited {code} during the load", server.log_tail())
                        progress.done += c.repeats * (len(points) - i - 1)
                        return
                code = server.stop()
                if code != 0:
                    self.fail(cell, None, "stop", f"server exited {code} after SIGTERM", server.log_tail())
        except ServerError as exc:
            message, _, log_tail = str(exc).partition("\n")
            self.fail(cell, None, "stop" if started else "start", message, log_tail)
            if not started:
                progress.done += c.repeats * len(points)

    def run_point(self, server: RunningServer, cell: Cell, scenario: str, rate: float) -> None:
        c, progress = self.config, self.progress
        assert progress
        label = point_label(scenario, rate)
        todo = [r for r in range(1, c.repeats + 1) if not self.done(cell, scenario, rate, r)]
        progress.done += c.repeats - len(todo)
        bundle.failure_path(self.root, cell.key, label).unlink(missing_ok=True)
        try:
            if todo and c.warmup > 0:
                progress.line(f"{cell.key} {label}: warm-up {c.warmup:g} s")
                self.loads.run(self.load_spec(server, scenario, c.warmup, rate))
            for r in todo:
                record = self.measure(server, cell, scenario, rate, r)
                bundle.write_record(bundle.repeat_path(self.root, cell.key, scenario, r, rate), record)
                progress.done += 1
                progress.measured += 1
                result = record.load
                flags = " CLIENT-BOUND" if result.client_bound else ""
                flags += " SHORT-OF-RATE" if result.rate_shortfall else ""
                flags += f" errors={sum(result.errors.values())}" if result.errors else ""
                p99 = result.latency.percentiles_us.get("p99", 0) / 1000
                progress.line(
                    f"{cell.key} {label} repeat {r}/{c.repeats}: {result.rps:.0f} RPS, p99 {p99:.2f} ms{flags}"
                )
        except LoadError as exc:
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

    def run(self, resumed: Manifest | None = None) -> int:
        c = self.config
        units = c.units()
        self.progress = self.progress or Progress(total=len(units) * c.repeats)
        self.start_manifest(resumed)
        self.progress.line(
            f"run {self.run_id}: {len(c.cells)} cells, {len(units)} cell x scenario, {c.repeats} repeats"
        )
        status = "complete"
        with interruptible():
            try:
                if c.calibrate and not (self.root / "calibration.json").exists():
                    self.run_calibration()
                by_cell: dict[Cell, list[tuple[str, float]]] = {}
                for cell, scenario, rate in units:
                    by_cell.setdefault(cell, []).append((scenario, rate))
                for cell, points in by_cell.items():
                    if all(self.done(cell, s, q, r) for s, q in points for r in range(1, c.repeats + 1)):
                        self.progress.done += len(points) * c.repeats
                        continue
                    bundle.failure_path(self.root, cell.key, None).unlink(missing_ok=True)
                    self.run_cell(cell, points)
            except RunInterruptedError as exc:
                status = "interrupted"
                self.progress.line(f"interrupted by {exc}; resume with --resume {self.run_id}")
        self.save_manifest(status=status, ended=time.time())
        charts_ok = self.write_outputs()
        if status == "interrupted":
            return 130
        assert self.manifest is not None
        return 1 if self.manifest.failures or not charts_ok else 0

    def write_outputs(self) -> bool:
        """summary.csv, charts, report.html and summary.md, from the bundle as it is on disk."""
        from lab import charts, report, results

        assert self.progress
        result = bundle.load_bundle(self.root)
        results.write_summary_csv(result)
        if not result.repeats:
            self.progress.line("no measured results, so no charts")
            return True
        try:
            data, files = charts.render(result)
            pages = report.write(result, data, files)
        except Exception as exc:  # a chart bug must not lose the run: the bundle is already on disk
            self.progress.line(f"charts failed: {type(exc).__name__}: {exc}; rerun: python -m lab plot {self.root}")
            return False
        self.progress.line(f"{len(files)} chart files, {pages[0]} and {pages[1]}")
        return True

    def run_calibration(self) -> None:
        assert self.progress
        self.progress.line("calibrating the load generator")
        c = self.config
        try:
            record = calibrate(self.targets, self.loads, c.users, c.duration, c.port)
        except (LoadError, ServerError) as exc:
            self.progress.line(f"calibration failed (charts will have no ceiling line): {str(exc).splitlines()[0]}")
            return
        bundle.write_record(self.root / "calibration.json", record)
        referee = f"{record.referee.rps:.0f}" if record.referee else "not installed"
        self.progress.line(f"calibration: lab client {record.lab_client.rps:.0f} RPS, wrk {referee}")


def start_in(root: Path, config: RunConfig, targets: TargetBackend, loads: LoadBackend) -> tuple[Path, int]:
    """A new run in its new directory (new_run_dir). Returns (bundle directory, exit code)."""
    return root, Runner(config, root, root.name, targets, loads).run()


def resume(run_dir: Path, manifest: Manifest, targets: TargetBackend, loads: LoadBackend) -> tuple[Path, int]:
    """Continue an interrupted (or failed) run with its own settings, skipping every repeat already on disk."""
    return run_dir, Runner(manifest.config, run_dir, manifest.run_id, targets, loads).run(resumed=manifest)
