"""The result bundle: the contract between the runner and everything that reads results (charts, report, compare).

    results/<run-id>/manifest.json              the run: config, machine fingerprint, versions, status, failures
    results/<run-id>/calibration.json           the load generator's ceiling on this machine (when measured)
    results/<run-id>/runs/<cell>__<scenario>[@<rate>]__r<N>.json     one measured repeat
    results/<run-id>/groups/<group>__<scenario>__r<N>.json  one side-by-side window: a group's cells loaded together
    results/<run-id>/pairs/<cell>__<scenario>__r<N>.json    an A/B pair round's window (bundles before groups)
    results/<run-id>/failures/<cell>[__<scenario>].json     a cell (or scenario) that failed, with its log tail
    results/<run-id>/stops/<cell>__<graceful>__s<N>.json    one stop under load (lab/lifecycle.py)
    results/<run-id>/summary.csv                one row per cell x scenario

Every file is validated by the models below (unknown, missing or mistyped fields are rejected) and written
atomically, so a reader never sees half a file. The loader reads schema_version 2 only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from core.errors import UsageError
from core.host import atomic_write
from core.hostfacts import HostFacts
from core.model import Record
from lab.config import RunConfig
from lab.verdict import Verdict
from loadtests.load import LoadResult, RefereeResult
from loadtests.stopping import StopLoad
from servers.matrix import Cell
from servers.target import Restart, ServerSample, Termination
from servers.variants import Environment

SCHEMA_VERSION = 2


class BundleError(UsageError):
    """A bundle or bundle file that this lab cannot read, with the file and the field named."""


class ServerFigures(ServerSample):
    """The server during one repeat: where it ran, how long it took to start, and its sample for the window."""

    cpus: list[int]
    startup_seconds: float


class Cost(Record):
    """CPU per correct answer, in microseconds, on each side."""

    server_us: float | None  # the server's process tree (user + system)
    server_cpus_us: float | None  # the server's CPUs busy with anything, softirq included
    client_us: float | None  # the Locust workers


class Conditions(Record):
    """What else the machine did during the window (lab/measure.py has the rules)."""

    steal: float  # the largest share of the window the hypervisor took from any server or load CPU
    other_server: float | None  # share of the server CPUs busy with neither the server nor interrupts
    other_load: float | None  # share of the load CPUs busy with neither Locust nor interrupts
    unsteady: bool  # some quarter-second of the window had far fewer correct answers than the median quarter
    disturbed: bool  # steal or other work: a throughput repeat is measured again (unsteady and a slow probe are only
    # noted: a window's dip can be the server's own doing, and the CPU's speed is measured during the window)
    note: str
    # The first server CPU's speed (lab/fingerprint.py: probe) just before the warm-up and just after the window,
    # as a share of the run's full speed; None in bundles from before the probes.
    speed_before: float | None = None
    speed_after: float | None = None
    # The server CPUs' speed during the window and during wrk's run when this repeat carries the referee: the
    # speedometer's samples, inserts per CPU-second (lab/speedometer.py); empty in the open model and in bundles from
    # before it.
    speed_samples: list[int] = Field(default_factory=list)
    referee_speed: list[int] = Field(default_factory=list)


class Repeat(Record):
    """One measured repeat of a point (cell x scenario x offered rate). A failed repeat keeps what it has and says
    why; it counts in no median and no chart, and a resumed run measures it again."""

    schema_version: int
    kind: Literal["repeat"]
    run_id: str
    key: str
    cell: Cell
    scenario: str
    offered_rps: float | None
    repeat: int
    status: Literal["ok", "failed"]
    failure: str | None
    load: LoadResult | None
    server: ServerFigures | None
    referee: RefereeResult | None  # wrk on this cell and scenario, in this repeat's round, right after it (closed)
    referee_cost: Cost | None  # CPU per answer under wrk: the server's (to set beside its cost here) and wrk's
    verdict: Verdict | None
    cost: Cost | None
    conditions: Conditions | None
    attempt: int  # 2 when the first attempt was disturbed and measured again
    earlier: list[str]  # why the earlier attempts were not kept

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def failed(cls, why: str, **head: Any) -> Repeat:
        """A repeat that measured nothing: its head (what it was to measure) and why."""
        return cls(**head, status="failed", failure=why, load=None, server=None, verdict=None, cost=None,
                   conditions=None)  # fmt: skip


class PairWindow(Record):
    """One pair round of an A/B run on one cell and scenario (lab/pairs.py): both variants' servers running at once
    on the server CPUs, fresh in this round, and one window of load on both (loadtests/load.py: PairResult). Its
    `load` holds both sides' answers together and `load.pair` each one's; `server_a` and `server_b` each server's own
    CPU and its CPUs' busy time over the window."""

    schema_version: int
    kind: Literal["pair"]
    run_id: str
    key: str  # the cell in the image's terms (no variant)
    cell: Cell
    scenario: str
    round: int
    variants: tuple[str, str]  # A's name, B's
    first: Literal["A", "B"]  # the side that started first, on the run's port
    status: Literal["ok", "failed"]
    failure: str | None
    load: LoadResult | None
    server_a: ServerFigures | None
    server_b: ServerFigures | None
    conditions: Conditions | None
    attempt: int = 1  # 2 or 3 when the earlier windows were disturbed or their server CPUs not saturated
    earlier: list[str] = Field(default_factory=list)  # why the earlier attempts were not kept

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.load is not None and self.load.pair is not None

    @classmethod
    def failed(cls, why: str, **head: Any) -> PairWindow:
        """A pair window that measured nothing: its head (what it was to measure) and why."""
        return cls(**head, status="failed", failure=why, load=None, server_a=None, server_b=None, conditions=None)


class GroupWindow(Record):
    """One side-by-side window (lab/measure/group.py): every cell of a group running at once on the server CPUs, each
    started afresh in this round (in `started` order), and one window of load on all of them together
    (loadtests/load.py: GroupResult, its sides in `cells`' order). Its `load` holds every side's answers together and
    `load.group` each one's; `servers` each server's own CPU and its CPUs' busy time over the window."""

    schema_version: int
    kind: Literal["group"]
    run_id: str
    key: str  # the group's name: what its cells share
    cells: list[Cell]  # in the load's order
    scenario: str
    round: int
    started: list[str]  # the cells' keys in the order their servers started (the first on the run's port)
    status: Literal["ok", "failed"]
    failure: str | None
    load: LoadResult | None
    servers: list[ServerFigures] | None  # in `cells`' order
    conditions: Conditions | None
    attempt: int = 1  # 2 or 3 when the earlier windows were disturbed or their server CPUs not saturated
    earlier: list[str] = Field(default_factory=list)  # why the earlier attempts were not kept

    @property
    def ok(self) -> bool:
        group = self.load.group if self.load else None
        return self.status == "ok" and group is not None and len(group.sides) == len(self.cells)

    @classmethod
    def failed(cls, why: str, **head: Any) -> GroupWindow:
        """A window that measured nothing: its head (what it was to measure) and why."""
        return cls(**head, status="failed", failure=why, load=None, servers=None, conditions=None)


class Failure(Record):
    schema_version: int
    kind: Literal["failure"]
    run_id: str
    key: str
    cell: Cell
    scenario: str | None
    phase: Literal["start", "load", "stop"]
    error: str
    log_tail: str
    at: float


class StopTest(Record):
    """One stop under load (lab/lifecycle.py): the client's schedule and the outcome of every request of it, and what
    the server did after SIGTERM. Times in `load` are seconds from SIGTERM; `server`'s are the epoch."""

    schema_version: int
    kind: Literal["stop"]
    run_id: str
    key: str
    cell: Cell
    number: int
    graceful: Literal["lab", "default"]
    capacity: float  # correct answers per second, closed model, just before (loadtests/stopping.py: capacity)
    fraction: float  # the schedule's rate as a share of it
    load: StopLoad
    server: Termination

    @property
    def lost(self) -> int:
        return self.load.lost

    @property
    def exit_after(self) -> float | None:
        """Seconds from SIGTERM to the exit of the server's main process; None when it had to be killed."""
        return None if self.server.exit_at is None else self.server.exit_at - self.server.signal_at


class RestartTest(Record):
    """One restart under load (lab/lifecycle.py): the same client and per-request accounting as a stop, around the
    server's restart signal, with the schedule kept on until its new workers serve and `settle` seconds more; then
    whether it still served and stopped cleanly. Times in `load` are seconds from the signal; `server`'s the epoch."""

    schema_version: int
    kind: Literal["restart"]
    run_id: str
    key: str
    cell: Cell  # with the workers the restart needs (matrix.toml restart_workers)
    number: int
    graceful: Literal["lab", "default"]
    capacity: float  # correct answers per second, closed model, just before
    fraction: float
    settle: float  # seconds of schedule kept on after the restart was seen done
    load: StopLoad
    server: Restart
    capacity_after: float  # the same closed-model measure after the schedule: it still serves (0: it does not)
    exit_code: int | None  # of the stop (SIGTERM) after it all
    stopped_cleanly: bool  # exited by itself within the stop's timeout, with code 0

    @property
    def lost(self) -> int:
        return self.load.lost


class Machine(Record):
    machine_id: str
    cpu_model: str
    logical_cpus: int
    physical_cores: int | None
    cpu_affinity: list[int]
    cpu_max_mhz: float | None
    memory_bytes: int
    kernel: str
    os: str
    python: str
    container: bool
    docker_version: str | None
    image_id: str | None


# How a run (or one part of it) ended: stopped = a service was lost; failed = a bug in the lab, named in the note.
Status = Literal["running", "complete", "interrupted", "stopped", "failed"]


class Skipped(Record):
    key: str
    scenario: str
    reason: str


class Part(Record):
    """One session of a run: the first start, and each resume."""

    started: float
    ended: float | None
    status: Status
    machine_id: str
    container: bool
    uid: int  # the user the runner ran as
    wiring: str  # how it reached the servers and Locust: on this machine, or through which services
    note: str | None  # why it ended, when not complete (the signal, or the service that was lost)


class SweepRates(Record):
    """One scenario's offered rates in the sweep: the common ones (every cell) and the fast-only ones."""

    common: list[float]
    fast: list[float]
    chosen_from: str  # how: "the run's throughput figures", or "--rate"


class Speed(Record):
    """A short fixed CPU workload timed on the server and the load CPUs: how fast this machine is, to compare runs.
    Timed at the start of the run and of every round and the sweep, so that a moment when the machine is slow (a
    shared VM's CPU can run a third slower for a second or two) does not set the index; the index is the median."""

    workload: str
    server_ops: float  # per second, on the first server CPU: the median of server_samples
    load_ops: float  # per second, on the first load CPU: the median of load_samples
    server_samples: list[float]
    load_samples: list[float]


class Manifest(Record):
    schema_version: int
    kind: Literal["manifest"]
    run_id: str
    status: Status
    started: float
    ended: float | None
    config: RunConfig
    machine: Machine
    versions: dict[str, str]
    lab_commit: str | None
    skipped: list[Skipped]
    failures: list[str]
    parts: list[Part]
    rounds: list[list[str]]  # each throughput round's cell order, as run (extra rounds in bundles before groups)
    sweep: dict[str, SweepRates]
    extra_rule: str  # the rule that gave some cells extra repeats, with the run's budget
    speed: Speed | None
    environments: list[Environment] = Field(default_factory=list)  # the run's variants as installed (none before them)
    # Both hosts as each read itself (load: the runner's; target: the agent's, or the same host), and what about them
    # would bias the result (lab/hosts.py); none in bundles from before them.
    hosts: dict[str, HostFacts] = Field(default_factory=dict)
    host_notes: list[str] = Field(default_factory=list)
    extra_rounds: list[list[str]] = Field(default_factory=list)  # each extra side-by-side round's groups, as run


class CalibrationPoint(Record):
    """The load generator on the calibration cell for one scenario: its repeats, the referee, its CPU per answer."""

    scenario: str
    rps: list[float]  # the lab client's RPS in each repeat
    lab_rps: float  # their median
    referee: RefereeResult | None
    lab_vs_referee: float | None
    client_us: float | None  # the Locust workers' CPU per answer (median of the repeats)
    server_cpus_us: float | None  # the server CPUs' busy time per answer (median)
    limit: str  # what limited the repeats (lab/verdict.py), the worst of them
    ceiling_rps: float  # the lab client's ceiling: measured when it was the limit, else projected from its CPU
    ceiling: Literal["measured", "projected"]


class Calibration(Record):
    schema_version: int
    kind: Literal["calibration"]
    cell: str
    server_cpus: list[int]
    load_cpus: list[int]
    load_workers: int
    users: int
    duration: float
    warmup: float
    started: float
    versions: dict[str, str]
    points: list[CalibrationPoint]

    def point(self, scenario: str) -> CalibrationPoint | None:
        return next((p for p in self.points if p.scenario == scenario), None)


KINDS: dict[str, type[Record]] = {
    "manifest": Manifest,
    "repeat": Repeat,
    "pair": PairWindow,
    "group": GroupWindow,
    "failure": Failure,
    "calibration": Calibration,
    "stop": StopTest,
    "restart": RestartTest,
}


# --- reading and writing -----------------------------------------------------------------------------------------


def write_record(path: Path, record: Record) -> None:
    """Write a record atomically, after checking it reads back exactly as a reader will read it."""
    text = record.model_dump_json(indent=1) + "\n"
    validate(path, text, record.kind)  # type: ignore[attr-defined]
    atomic_write(path, text)


def read_model(path: Path, kind: str) -> Any:
    """One bundle file, validated; BundleError names the file and every bad field."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise BundleError(f"{path}: cannot read: {exc.strerror}") from None
    return validate(path, text, kind)


def validate(path: Path, text: str, kind: str) -> Any:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path}: expected a JSON object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(f"{path}: schema_version {version!r}; this lab reads schema_version {SCHEMA_VERSION}")
    if data.get("kind") != kind:
        raise BundleError(f"{path}: kind {data.get('kind')!r}, expected {kind!r}")
    if kind not in KINDS:
        raise BundleError(f"{path}: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    try:
        return KINDS[kind].model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise BundleError(f"{path}: {problems}") from None


def repeat_path(root: Path, key: str, scenario: str, repeat: int, rate: float = 0.0) -> Path:
    point = f"{scenario}@{rate:g}" if rate else scenario
    return root / "runs" / f"{key}__{point}__r{repeat}.json"


def pair_path(root: Path, key: str, scenario: str, number: int) -> Path:
    return root / "pairs" / f"{key}__{scenario}__r{number}.json"


def group_path(root: Path, key: str, scenario: str, number: int) -> Path:
    return root / "groups" / f"{key}__{scenario}__r{number}.json"


def stop_path(root: Path, key: str, graceful: str, number: int) -> Path:
    return root / "stops" / f"{key}__{graceful}__s{number}.json"


def restart_path(root: Path, key: str, graceful: str, number: int) -> Path:
    return root / "restarts" / f"{key}__{graceful}__r{number}.json"


def failure_path(root: Path, key: str, scenario: str | None) -> Path:
    return root / "failures" / (f"{key}__{scenario}.json" if scenario else f"{key}.json")


@dataclass
class Bundle:
    root: Path
    manifest: Manifest
    repeats: list[Repeat]
    failures: list[Failure]
    calibration: Calibration | None
    pairs: list[PairWindow] = field(default_factory=list)
    stops: list[StopTest] = field(default_factory=list)
    groups: list[GroupWindow] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.manifest.run_id


def load_bundle(root: Path) -> Bundle:
    """A whole bundle, every file validated."""
    root = Path(root)
    if not (root / "manifest.json").exists():
        raise BundleError(f"{root}: no manifest.json; not a result bundle")
    manifest = read_model(root / "manifest.json", "manifest")
    repeats = [read_model(p, "repeat") for p in sorted((root / "runs").glob("*.json"))]
    failures = [read_model(p, "failure") for p in sorted((root / "failures").glob("*.json"))]
    calibration = read_model(root / "calibration.json", "calibration") if (root / "calibration.json").exists() else None
    pairs = [read_model(p, "pair") for p in sorted((root / "pairs").glob("*.json"))]
    stops = [read_model(p, "stop") for p in sorted((root / "stops").glob("*.json"))]
    groups = [read_model(p, "group") for p in sorted((root / "groups").glob("*.json"))]
    for r in [*repeats, *pairs, *stops, *groups]:
        if r.run_id != manifest.run_id:
            raise BundleError(f"{root}: {r.key} {r.scenario} {r.kind} belongs to run {r.run_id}, not {manifest.run_id}")
    return Bundle(root, manifest, repeats, failures, calibration, pairs, stops, groups)
