"""The result bundle: the contract between the runner and everything that reads results (charts, report, compare).

    results/<run-id>/manifest.json              the run: config, machine fingerprint, versions, status, failures
    results/<run-id>/calibration.json           the load generator's ceiling on this machine (when measured)
    results/<run-id>/runs/<cell>__<scenario>[@<rate>]__r<N>.json     one measured repeat
    results/<run-id>/failures/<cell>[__<scenario>].json     a cell (or scenario) that failed, with its log tail
    results/<run-id>/summary.csv                one row per cell x scenario

Every file is validated by the models below (unknown, missing or mistyped fields are rejected) and written
atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hdrh.histogram import HdrHistogram
from pydantic import BaseModel, ConfigDict, ValidationError

from loadtests import recorder

SCHEMA_VERSION = 1


class BundleError(ValueError):
    """A bundle or bundle file that this lab cannot read, with the file and the field named."""


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class CellInfo(Model):
    server: str
    loop: str
    http: str
    workers: int
    app: str


class Window(Model):
    start: float
    end: float
    seconds: float


class Latency(Model):
    count: int
    mean_us: float | None = None
    min_us: int | None = None
    max_us: int | None = None
    percentiles_us: dict[str, int]
    curve_us: list[tuple[float, int]]
    hdr: str


class LoadGenerator(Model):
    cpus: list[int]
    processes: int
    client: str
    cpu_seconds: float
    capacity_utilization: float
    cpu_busy: float
    worker_utilization: list[float]


class ServerFigures(Model):
    cpus: list[int]
    startup_seconds: float
    cpu_seconds: float
    cpu_cores: float  # CPU seconds per second of the window: how many cores the server kept busy
    rss_peak_bytes: int | None
    processes: int


class Repeat(Model):
    schema_version: int
    kind: Literal["repeat"]
    run_id: str
    key: str
    cell: CellInfo
    scenario: str
    params: dict[str, int]
    repeat: int
    client: str
    model: Literal["open", "closed"]
    users: int
    offered_rps: float | None
    rate_shortfall: bool | None
    window: Window
    requests: int
    ok: int
    errors: dict[str, int]
    rps: float
    latency: Latency
    processes: int
    per_process_ok: list[int]
    load_generator: LoadGenerator
    client_bound: bool
    client_bound_reason: str
    server: ServerFigures
    locust_exit_code: int


class Failure(Model):
    schema_version: int
    kind: Literal["failure"]
    run_id: str
    key: str
    cell: CellInfo
    scenario: str | None
    phase: Literal["start", "load", "stop"]
    error: str
    log_tail: str
    at: float


class Machine(Model):
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


class RunConfig(Model):
    preset: str | None
    cells: list[str]
    scenarios: list[str]
    repeats: int
    duration: float
    warmup: float
    users: int
    processes: int
    rates: list[float]
    client: str
    server_cpus: list[int]
    load_cpus: list[int]
    port: int
    calibrate: bool


class Skipped(Model):
    key: str
    scenario: str
    reason: str


class Manifest(Model):
    schema_version: int
    kind: Literal["manifest"]
    run_id: str
    status: Literal["running", "complete", "interrupted"]
    started: float
    ended: float | None
    config: RunConfig
    machine: Machine
    versions: dict[str, str]
    lab_commit: str | None
    skipped: list[Skipped]
    failures: list[str]


class ClientFigures(Model):
    rps: float
    rps_per_core: float
    errors: dict[str, int]
    p50_us: int | None
    p99_us: int | None
    client_bound: bool
    load_generator: LoadGenerator


class Calibration(Model):
    schema_version: int
    kind: Literal["calibration"]
    cell: str
    scenario: str
    server_cpus: list[int]
    load_cpus: list[int]
    users: int
    duration: float
    started: float
    versions: dict[str, str]
    lean: ClientFigures
    stock: ClientFigures
    wrk: dict[str, Any] | None
    ratios: dict[str, float | None]
    targets: dict[str, float]
    ceiling_rps: float


KINDS: dict[str, type[Model]] = {
    "manifest": Manifest,
    "repeat": Repeat,
    "failure": Failure,
    "calibration": Calibration,
}


# --- reading and writing -----------------------------------------------------------------------------------------


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically: a temporary file in the same directory, then rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=1) + "\n"  # serialise first: a failure here leaves nothing behind
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide results from the rest of the team
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_record(path: Path, data: dict[str, Any]) -> None:
    """Validate a record exactly as a reader will (from its JSON text), then write it atomically."""
    validate(path, json.dumps(data), data.get("kind", "?"))
    write_json(path, data)


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


def failure_path(root: Path, key: str, scenario: str | None) -> Path:
    return root / "failures" / (f"{key}__{scenario}.json" if scenario else f"{key}.json")


@dataclass
class Bundle:
    root: Path
    manifest: Manifest
    repeats: list[Repeat]
    failures: list[Failure]
    calibration: Calibration | None

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
    for r in repeats:
        if r.run_id != manifest.run_id:
            raise BundleError(
                f"{root}: {r.key} {r.scenario} r{r.repeat} belongs to run {r.run_id}, not {manifest.run_id}"
            )
    return Bundle(root, manifest, repeats, failures, calibration)


# --- the summary: one row per cell x scenario --------------------------------------------------------------------

SUMMARY_FIELDS = [
    "key", "server", "loop", "http", "workers", "app", "scenario", "offered_rps", "status", "repeats",
    "rps_median", "rps_min", "rps_max", "rps_spread_pct",
    "p50_us", "p90_us", "p99_us", "p99_9_us", "max_us",
    "errors", "client_bound", "rate_shortfall",
    "server_cpu_cores", "server_rss_mb", "startup_s", "load_cpu_busy",
]  # fmt: skip


def summarize(bundle: Bundle) -> list[dict[str, Any]]:
    """Median RPS with min/max across repeats; latency from the repeats' histograms merged."""
    groups: dict[tuple[str, str, float], list[Repeat]] = {}
    for r in bundle.repeats:
        groups.setdefault((r.key, r.scenario, r.offered_rps or 0.0), []).append(r)
    rows = []
    for (key, scenario, offered), reps in groups.items():
        histogram = HdrHistogram(recorder.LOWEST_US, recorder.HIGHEST_US, recorder.SIGNIFICANT_DIGITS)
        for r in reps:
            histogram.add(HdrHistogram.decode(r.latency.hdr.encode()))
        lat = recorder.latency_summary(histogram)["percentiles_us"]
        rps = [r.rps for r in reps]
        median = statistics.median(rps)
        cell = reps[0].cell
        rows.append(
            {
                "key": key,
                **cell.model_dump(),
                "scenario": scenario,
                "offered_rps": offered or None,
                "status": "ok",
                "repeats": len(reps),
                "rps_median": round(median, 1),
                "rps_min": round(min(rps), 1),
                "rps_max": round(max(rps), 1),
                "rps_spread_pct": round(100 * (max(rps) - min(rps)) / median, 1) if median else None,
                "p50_us": lat.get("p50"),
                "p90_us": lat.get("p90"),
                "p99_us": lat.get("p99"),
                "p99_9_us": lat.get("p99.9"),
                "max_us": histogram.get_max_value() if histogram.get_total_count() else None,
                "errors": sum(sum(r.errors.values()) for r in reps),
                "client_bound": any(r.client_bound for r in reps),
                "rate_shortfall": any(bool(r.rate_shortfall) for r in reps),
                "server_cpu_cores": round(statistics.median(r.server.cpu_cores for r in reps), 3),
                "server_rss_mb": round(max(r.server.rss_peak_bytes or 0 for r in reps) / 2**20, 1),
                "startup_s": reps[0].server.startup_seconds,
                "load_cpu_busy": round(statistics.median(r.load_generator.cpu_busy for r in reps), 3),
            }
        )
    for f in bundle.failures:
        rows.append({"key": f.key, **f.cell.model_dump(), "scenario": f.scenario or "", "status": f"failed: {f.phase}"})
    return sorted(rows, key=lambda row: (row["scenario"], row["key"], row.get("offered_rps") or 0))


def write_summary_csv(bundle: Bundle) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_FIELDS, restval="")
    writer.writeheader()
    writer.writerows(summarize(bundle))
    path = bundle.root / "summary.csv"
    tmp = path.with_name(".summary.csv.tmp")
    tmp.write_text(buffer.getvalue())
    os.replace(tmp, path)
    return path
