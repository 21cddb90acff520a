"""A run's bundle as the runner keeps it: read once when the run starts (or resumes), kept in step with every write,
and the only writer of the bundle's files (lab/bundle.py validates each before it lands).

What it answers: is this repeat done (an ok record on disk), a point's ok repeats, what the referee said on a point,
which cells failed, and the calibration. A file that no longer validates counts as not there, so a resumed run
measures it again.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core import hostfacts
from core.errors import UsageError
from core.host import ROOT
from lab import bundle
from lab.bundle import Calibration, Failure, GroupWindow, Manifest, Repeat
from lab.measure.window import Work
from lab.run.plan import GroupVisit, GroupWork
from servers.matrix import Cell

DEFAULT_RESULTS = ROOT / "results"
Point = tuple[str, str, float]  # cell key, scenario, offered rate (0: closed)


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
    host = hostfacts.machine_id()
    for n in range(100):
        candidate = results / (f"{stamp}-{host}" + (f"-{n}" if n else ""))
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            continue
    raise UsageError(f"cannot create a new run directory under {results}")


@contextlib.contextmanager
def holding(run_dir: Path) -> Iterator[None]:
    """One runner per run: an exclusive lock on <run>/.lock while it runs. The kernel drops the lock when its holder
    dies (even by kill -9), so a run left `running` by a dead runner can be resumed."""
    import fcntl

    with open(run_dir / ".lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise UsageError(
                f"run {run_dir.name} is being run right now (pid {lock.read().strip() or '?'}); wait for it or stop it"
            ) from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        yield


def find_run(results: Path, wanted: str) -> Path:
    """The run to resume: by id, or `last`, the newest one not complete."""
    if wanted == "last":
        unfinished = []
        for manifest in sorted(results.glob("*/manifest.json")):
            with contextlib.suppress(bundle.BundleError):
                if bundle.read_model(manifest, "manifest").status != "complete":
                    unfinished.append(manifest.parent)
        if not unfinished:
            raise UsageError(f"--resume last: no unfinished run in {results}; give a run id (a folder there)")
        return unfinished[-1]
    run_dir = results / wanted
    if "/" in wanted or not (run_dir / "manifest.json").exists():
        raise UsageError(f"--resume {wanted!r}: no such run in {results}; give one of its folders' names, or last")
    return run_dir


class Ledger:
    def __init__(self, root: Path, run_id: str) -> None:
        self.root, self.run_id = root, run_id
        self.repeats: dict[tuple[Point, int], Repeat] = {}
        for path in sorted((root / "runs").glob("*.json")):
            with contextlib.suppress(bundle.BundleError):
                record = bundle.read_model(path, "repeat")
                if path == bundle.repeat_path(
                    root, record.key, record.scenario, record.repeat, record.offered_rps or 0
                ):
                    self.repeats[((record.key, record.scenario, record.offered_rps or 0.0), record.repeat)] = record
        self.groups: dict[tuple[str, str, int], GroupWindow] = {}
        for path in sorted((root / "groups").glob("*.json")):
            with contextlib.suppress(bundle.BundleError):
                group = bundle.read_model(path, "group")
                if path == bundle.group_path(root, group.key, group.scenario, group.round):
                    self.groups[(group.key, group.scenario, group.round)] = group
        self.manifest: Manifest | None = None

    # --- what is known ------------------------------------------------------------------------------------------
    def done(self, cell: Cell, work: Work) -> bool:
        found = self.repeats.get(((cell.key, work.scenario, work.rate), work.number))
        return found is not None and found.ok

    def group_done(self, visit: GroupVisit, item: GroupWork) -> bool:
        found = self.groups.get((visit.key, item.work.scenario, item.work.number))
        return found is not None and found.ok

    def ok(self, cell: Cell, scenario: str, rate: float = 0.0) -> list[Repeat]:
        """The point's ok repeats, by round."""
        found = [r for (point, _), r in self.repeats.items() if point == (cell.key, scenario, rate)]
        return sorted((r for r in found if r.ok and r.load is not None), key=lambda r: r.repeat)

    def referee_carrier(self, cell: Cell, scenario: str) -> Repeat | None:
        """The first repeat of a closed point that wrk ran after: what the referee said there."""
        return next((r for r in self.ok(cell, scenario) if r.referee is not None), None)

    def failures(self) -> list[str]:
        return sorted(p.stem for p in (self.root / "failures").glob("*.json"))

    def calibration(self) -> Calibration | None:
        """The run's calibration, when a valid one is on disk (a damaged one is removed, to be measured again)."""
        path = self.root / "calibration.json"
        try:
            return bundle.read_model(path, "calibration")
        except bundle.BundleError:
            path.unlink(missing_ok=True)
            return None

    # --- the writes -----------------------------------------------------------------------------------------------
    def record(self, repeat: Repeat) -> None:
        rate = repeat.offered_rps or 0.0
        bundle.write_record(bundle.repeat_path(self.root, repeat.key, repeat.scenario, repeat.repeat, rate), repeat)
        self.repeats[((repeat.key, repeat.scenario, rate), repeat.repeat)] = repeat

    def record_group(self, group: GroupWindow) -> None:
        bundle.write_record(bundle.group_path(self.root, group.key, group.scenario, group.round), group)
        self.groups[(group.key, group.scenario, group.round)] = group

    def fail(self, cell: Cell, scenario: str | None, phase: str, error: str, log_tail: str) -> None:
        record = Failure(
            schema_version=bundle.SCHEMA_VERSION, kind="failure", run_id=self.run_id, key=cell.key, cell=cell,
            scenario=scenario, phase=phase, error=error, log_tail=log_tail, at=time.time(),  # type: ignore[arg-type]
        )  # fmt: skip
        bundle.write_record(bundle.failure_path(self.root, cell.key, scenario), record)
        self.save()

    def clear_failures(self, cell: Cell) -> None:
        """A cell tried again (a resumed run) starts without its earlier failure records."""
        for path in (self.root / "failures").glob(f"{cell.key}*.json"):
            path.unlink(missing_ok=True)

    def calibrated(self, record: Calibration) -> None:
        bundle.write_record(self.root / "calibration.json", record)

    def save(self, manifest: Manifest | None = None, **changes: Any) -> Manifest:
        """Write the manifest (the one given, or the current one) with these changes and the failures on disk."""
        current = manifest or self.manifest
        assert current is not None, "save(manifest) first"
        self.manifest = current.model_copy(update={"failures": self.failures(), **changes})
        bundle.write_record(self.root / "manifest.json", self.manifest)
        return self.manifest
