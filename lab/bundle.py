"""The result bundle: the contract between the runner and everything that reads results (charts, report, compare).

    results/<run-id>/manifest.json              the run: config, machine fingerprint, versions, status, failures
    results/<run-id>/calibration.json           the load generator's ceiling on this machine (when measured)
    results/<run-id>/runs/<cell>__<scenario>[@<rate>]__r<N>.json     one measured repeat
    results/<run-id>/failures/<cell>[__<scenario>].json     a cell (or scenario) that failed, with its log tail
    results/<run-id>/summary.csv                one row per cell x scenario

Every file is validated by the models below (unknown, missing or mistyped fields are rejected) and written
atomically, so a reader never sees half a file. The loader reads schema_version 2; files of version 1 (the first
reference results) are upgraded as they are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from core.host import atomic_write
from lab.config import RunConfig
from loadtests.load import LoadResult, RefereeResult
from servers.target import ServerSample

SCHEMA_VERSION = 2
READS = (1, 2)  # versions the loader reads; 1 is upgraded on the way in


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


class ServerFigures(ServerSample):
    """The server during one repeat: where it ran, how long it took to start, and its sample for the window."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    cpus: list[int]
    startup_seconds: float


class Repeat(Model):
    schema_version: int
    kind: Literal["repeat"]
    run_id: str
    key: str
    cell: CellInfo
    scenario: str
    offered_rps: float | None
    repeat: int
    load: LoadResult
    server: ServerFigures


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
    lab_client: ClientFigures
    referee: RefereeResult | None
    lab_vs_referee: float | None
    ceiling_rps: float


KINDS: dict[str, type[Model]] = {
    "manifest": Manifest,
    "repeat": Repeat,
    "failure": Failure,
    "calibration": Calibration,
}


# --- reading and writing -----------------------------------------------------------------------------------------


def write_record(path: Path, record: Model) -> None:
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
    if version not in READS:
        raise BundleError(f"{path}: schema_version {version!r}; this lab reads schema_version {SCHEMA_VERSION}")
    if data.get("kind") != kind:
        raise BundleError(f"{path}: kind {data.get('kind')!r}, expected {kind!r}")
    if kind not in KINDS:
        raise BundleError(f"{path}: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if version == 1:
        text = json.dumps(upgrade_v1(data))
    try:
        return KINDS[kind].model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise BundleError(f"{path}: {problems}") from None


V1_LOAD_FIELDS = set(LoadResult.model_fields)


def upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 file as schema 2: a repeat's load figures move under `load`; the run config names the
    load workers and how the run was wired; calibration keeps the lab client and wrk (the referee)."""
    data = {**data, "schema_version": 2}
    if data["kind"] == "repeat":
        load = {k: data.pop(k) for k in list(data) if k in V1_LOAD_FIELDS}
        data.pop("locust_exit_code", None)
        data.update(scenario=load["scenario"], offered_rps=load.get("offered_rps"), load=load)
    elif data["kind"] == "manifest":
        config = dict(data["config"])
        config["load_workers"] = config.pop("processes")
        config["allow_shared_cpus"] = bool(set(config["server_cpus"]) & set(config["load_cpus"]))
        config.update(target_agent=None, locust_master=None)
        data["config"] = config
    elif data["kind"] == "calibration":
        lean, wrk = data.pop("lean"), data.pop("wrk")
        lean.pop("load_generator", None)
        for key in ("stock", "ratios", "targets"):
            data.pop(key, None)
        data["lab_client"] = lean
        data["referee"] = wrk
        data["lab_vs_referee"] = round(lean["rps"] / wrk["rps"], 3) if wrk else None
    return data


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
