"""The lab's matrix, loaded from matrix.toml into frozen, validated objects.

Everything that needs to know which servers, loops, apps or scenarios exist asks this module; nothing else lists
them. Bad input fails here, with the valid choices named, before any process starts. The matrix is loaded once, by
each program's entry point (`load`), and passed from there; a run records its file and digest in its manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import re
import tomllib
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, Field, ValidationError

from core.errors import UsageError
from core.model import Record
from core.settings import settings

MATRIX_FILE = Path(__file__).with_name("matrix.toml")
SCHEMA = 1
AXES = ("server", "loop", "http", "workers", "app")  # the matrix's axes; a run's variants are one more (Cell.variant)
HttpVersion = Literal["h1", "h2"]  # HTTP/1.1, or HTTP/2 in cleartext with prior knowledge (h2c)
VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")


class MatrixError(UsageError):
    """A cell, preset or scenario the matrix does not have, or a malformed matrix file."""


@dataclass(frozen=True)
class App:
    name: str
    target: str
    packages: tuple[str, ...]
    title: str  # how reports name it
    ready: str = "/plaintext"  # answers "Hello, World!" once the app serves (servers/launcher.py)
    loop_probe: str = "/debug/loop"  # answers which event loop runs it


@dataclass(frozen=True)
class Loop:
    name: str
    packages: tuple[str, ...]
    reports: str


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


Texts = Annotated[tuple[str, ...], BeforeValidator(_tuple)]  # a TOML array of strings, kept as a tuple


class Stopping(Record):
    """How a server stops and restarts (matrix.toml: [servers.NAME.stop])."""

    graceful_flag: Texts  # argv that sets its graceful timeout; {seconds} is filled in
    graceful_default: float  # that timeout when no flag is given; 0: no limit
    restart_signal: str  # sent to its main process, restarts its workers...
    restart_workers: int  # ...from this many workers up
    restart: str  # what it offers, in words
    reload: str

    def graceful_args(self, seconds: float | None) -> list[str]:
        """The flag for `seconds` of graceful timeout; none for the server's own default (None)."""
        if seconds is None:
            return []
        return [part.format(seconds=f"{seconds:g}") for part in self.graceful_flag]


GRACEFUL = ("lab", "default")  # a stop's graceful timeout: the lab's (the same for all) or the server's own


class StopSettings(Record):
    """[stop]: the graceful timeout the lab gives every server, and when it kills one that has not exited."""

    graceful_timeout: float = 5.0
    kill_after: float = 12.0


@dataclass(frozen=True)
class Server:
    name: str
    packages: tuple[str, ...]
    http: tuple[str, ...]
    command: tuple[str, ...]
    loop_args: Mapping[str, str]
    http_packages: Mapping[str, tuple[str, ...]]
    http_args: Mapping[str, tuple[str, ...]]  # what the command's "{http_args}" element becomes, per implementation
    stop: Stopping
    config: str | None = None


@dataclass(frozen=True)
class Rule:
    match: Mapping[str, Any]
    reason: str

    def matches(self, cell: Cell, scenario: str | None = None) -> bool:
        """A rule with a `scenario` key excludes only that scenario on the matching cells."""
        if "scenario" in self.match and self.match["scenario"] != scenario:
            return False
        return all(getattr(cell, axis) == value for axis, value in self.match.items() if axis != "scenario")


class Expected(Record):
    """An answer every later one must equal: status (the scenario's), content type, framing and body, byte for
    byte. Headers that vary (date, server) are not compared."""

    content_type: str
    framing: Literal["length", "chunked"]
    body_b64: str  # the body, base64: an answer need not be text

    @property
    def body(self) -> bytes:
        import base64

        return base64.b64decode(self.body_b64)

    @classmethod
    def of(cls, content_type: str, framing: Literal["length", "chunked"], body: bytes) -> Expected:
        import base64

        return cls(content_type=content_type, framing=framing, body_b64=base64.b64encode(body).decode())


class Scenario(Record):
    """What the load generator sends and the kind of answer that must come back; a load carries it whole, so the
    load side needs no matrix of its own."""

    name: str
    method: str
    path: str
    answer: str  # the kind of answer that must come back (loadtests/scenarios.py ANSWERS), or "given" (below)
    query: dict[str, int] = Field(default_factory=dict)
    params: dict[str, int] = Field(default_factory=dict)
    # A request of your own app's (servers/own_app.py): what is sent and what must come back.
    status: int = 200
    send: str = ""  # the request's body
    send_type: str = ""  # its content type
    expect: Expected | None = None  # None until the first correct answer is recorded (`same = true`)


class Cell(Record):
    """One combination of the axes: what a server process runs. Bundles record it as this record; files, logs and the
    command line name it by its key. `variant` names the package environment it runs in (servers/variants.py): empty
    for the image's own, else one of the run's variants, as in granian-uvloop-hyper-w1-raw@B."""

    server: str
    loop: str
    http: str
    workers: int
    app: str
    variant: str = ""

    @property
    def key(self) -> str:
        """A name for files and logs: granian-uvloop-hyper-w1-raw (@VARIANT when it runs in one)."""
        base = f"{self.server}-{self.loop}-{self.http}-w{self.workers}-{self.app}"
        return f"{base}@{self.variant}" if self.variant else base

    @property
    def base(self) -> Cell:
        """The same cell in the image's own environment."""
        return self.model_copy(update={"variant": ""})

    @classmethod
    def parse(cls, key: str) -> Cell:
        """The cell a key names, by its syntax alone (Matrix.cell_from_key also checks it against the matrix)."""
        key, _, variant = key.partition("@")
        parts = key.split("-")
        if len(parts) != 5 or not parts[3].startswith("w") or not parts[3][1:].isdigit():
            raise MatrixError(
                f"cell key {key!r} is not SERVER-LOOP-HTTP-wN-APP[@VARIANT], e.g. granian-uvloop-hyper-w1-raw"
            )
        if "@" in variant or (variant and not VARIANT_NAME.fullmatch(variant)):
            raise MatrixError(f"variant name {variant!r} in a cell key: give letters, digits, '.', '_' or '-'")
        return cls(
            server=parts[0], loop=parts[1], http=parts[2], workers=int(parts[3][1:]), app=parts[4], variant=variant
        )


class RunSettings(Record):
    """How a preset is run; the runner's command line overrides each (lab/config.py says what each means)."""

    repeats: int = 3
    duration: float = 5.0
    warmup: float = 2.0
    users: int = 64
    referee: float = 2.0
    sweep: float = 0.0
    budget: float = 0.0
    max_repeats: int = 6
    stops: int = 0
    swept: Texts = ()  # the scenarios the sweep runs, of the run's (none named: every one)
    side_rounds: int = 0  # rounds side by side (lab/config.py: pair_rounds)
    side_seconds: float = 5.0  # measured seconds per scenario in each of them
    together: Literal["app", "all"] = "app"  # the cells each loads at once


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    cells: tuple[Cell, ...]
    scenarios: tuple[str, ...]
    run: RunSettings = field(default_factory=RunSettings)
    skips: tuple[Rule, ...] = ()  # `exclude` entries with a scenario: that scenario is left out on matching cells

    def skips_scenario(self, cell: Cell, scenario: str) -> bool:
        return any(rule.matches(cell.base, scenario) for rule in self.skips)


@dataclass(frozen=True)
class Matrix:
    apps: Mapping[str, App]
    loops: Mapping[str, Loop]
    servers: Mapping[str, Server]
    workers: tuple[int, ...]
    rules: tuple[Rule, ...]
    scenarios: Mapping[str, Scenario]
    presets: Mapping[str, Preset]
    calibration: tuple[Cell, str] | None = None  # the cell and scenario the load generator calibrates on
    stop: StopSettings = field(default_factory=StopSettings)
    source: Path | None = None  # the file it was read from
    digest: str = ""  # sha256 of that file: what a resumed run checks it still has
    http2: frozenset[str] = frozenset()  # HTTP implementations that speak h2c (prior knowledge); the rest HTTP/1.1

    def graceful_seconds(self, graceful: str) -> float | None:
        """The graceful timeout a server is started with: the lab's, or None for its own default."""
        if graceful not in GRACEFUL:
            raise MatrixError(f"unknown graceful timeout {graceful!r}; valid: {', '.join(GRACEFUL)}")
        return self.stop.graceful_timeout if graceful == "lab" else None

    def choices(self, axis: str, server: str | None = None) -> tuple[Any, ...]:
        if axis == "http":
            if server is not None:
                return self.servers[server].http
            return tuple(dict.fromkeys(h for s in self.servers.values() for h in s.http))
        return {
            "server": tuple(self.servers),
            "loop": tuple(self.loops),
            "workers": self.workers,
            "app": tuple(self.apps),
        }[axis]

    def all_cells(self) -> tuple[Cell, ...]:
        """Every combination of the axes, valid or not."""
        return tuple(
            Cell(server=server, loop=loop, http=http, workers=workers, app=app)
            for server in self.servers
            for loop, http, workers, app in itertools.product(
                self.loops, self.servers[server].http, self.workers, self.apps
            )
        )

    def protocol(self, cell: Cell) -> HttpVersion:
        """The HTTP version the cell's server speaks to the client: h2 (cleartext, prior knowledge) or h1."""
        return "h2" if cell.http in self.http2 else "h1"

    def packages(self, cell: Cell | None = None) -> list[str]:
        """The packages a cell runs on (its server's, its HTTP implementation's, its loop's, its app's), each once;
        with no cell, every package the matrix names, in that order by server, loop and app."""
        if cell is not None:
            server = self.servers[cell.server]
            parts = [server.packages, server.http_packages[cell.http], self.loops[cell.loop].packages]
            parts.append(self.apps[cell.app].packages)
        else:
            parts = [p for s in self.servers.values() for p in (s.packages, *s.http_packages.values())]
            parts += [x.packages for x in (*self.loops.values(), *self.apps.values())]
        return list(dict.fromkeys(name for part in parts for name in part))

    def valid_cells(self) -> tuple[Cell, ...]:
        return tuple(c for c in self.all_cells() if self.invalid_reason(c) is None)

    def invalid_reason(self, cell: Cell, scenario: str | None = None) -> str | None:
        """Why the cell (or the scenario on that cell) cannot run, or None if it can."""
        for rule in self.rules:
            if rule.matches(cell, scenario):
                return rule.reason
        return None

    def supports(self, cell: Cell, scenario: str) -> bool:
        return self.invalid_reason(cell, scenario) is None

    def cell(self, server: str, loop: str, http: str | None = None, workers: int = 1, app: str = "raw") -> Cell:
        """The cell with these values, or a MatrixError naming the valid choices."""
        self._check_choice("server", server)
        self._check_choice("loop", loop)
        self._check_choice("app", app)
        self._check_choice("workers", workers)
        http = http or self.servers[server].http[0]
        self._check_choice("http", http, self.choices("http", server), f" for {server}")
        cell = Cell(server=server, loop=loop, http=http, workers=workers, app=app)
        reason = self.invalid_reason(cell)
        if reason:
            raise MatrixError(f"invalid cell {cell.key}: {reason}")
        return cell

    def cell_from_key(self, key: str) -> Cell:
        return self.valid(Cell.parse(key))

    def valid(self, cell: Cell) -> Cell:
        """The cell itself, when this matrix has it; else a MatrixError naming the valid choices (its variant is the
        run's to check: lab/config.py)."""
        found = self.cell(cell.server, cell.loop, cell.http, cell.workers, cell.app)
        return found.model_copy(update={"variant": cell.variant})

    def preset(self, name: str) -> Preset:
        self._check_choice("preset", name, tuple(self.presets))
        return self.presets[name]

    def scenario(self, name: str) -> Scenario:
        self._check_choice("scenario", name, tuple(self.scenarios))
        return self.scenarios[name]

    def _check_choice(self, axis: str, value: Any, valid: Iterable[Any] | None = None, where: str = "") -> None:
        valid = tuple(self.choices(axis) if valid is None else valid)
        if value not in valid:
            raise MatrixError(f"unknown {axis} {value!r}{where}; valid: {', '.join(map(str, valid))}")


# --- the file as written: a strict, closed schema; what it cannot say (names that must agree) is checked after -----


class AppEntry(Record):
    target: str  # MODULE:ATTRIBUTE
    packages: list[str]
    title: str | None = None  # default: its name


class LoopEntry(Record):
    packages: list[str]
    reports: str


class ServerEntry(Record):
    packages: list[str]
    http: list[str]
    command: list[str]
    http_packages: dict[str, list[str]]
    stop: Stopping
    loop_args: dict[str, str] = Field(default_factory=dict)
    http_args: dict[str, list[str]] = Field(default_factory=dict)
    config: str | None = None


class Match(Record):
    """The axes' values (and a scenario) that a rule, or a preset's `exclude` entry, matches."""

    server: str | None = None
    loop: str | None = None
    http: str | None = None
    workers: int | None = None
    app: str | None = None
    scenario: str | None = None

    def rule(self, reason: str) -> Rule:
        return Rule(self.model_dump(exclude_none=True, include={*AXES, "scenario"}), reason)


class RuleEntry(Match):
    reason: str


class ScenarioEntry(Record):
    method: str
    path: str
    answer: str
    query: dict[str, int] = Field(default_factory=dict)
    params: dict[str, int] = Field(default_factory=dict)


class PresetEntry(Record):
    description: str
    scenarios: list[str]
    server: list[str] | None = None  # an axis left out: every value
    loop: list[str] | None = None
    http: list[str] | None = None
    workers: list[int] | None = None
    app: list[str] | None = None
    exclude: list[Match] = Field(default_factory=list)
    run: RunSettings = RunSettings()


class CalibrationEntry(Record):
    cell: str
    scenario: str


class MatrixFile(Record):
    schema_: Literal[1] = Field(alias="schema")
    workers: list[int]
    http2: list[str] = Field(default_factory=list)
    apps: dict[str, AppEntry]
    loops: dict[str, LoopEntry]
    servers: dict[str, ServerEntry]
    rules: list[RuleEntry]
    scenarios: dict[str, ScenarioEntry]
    presets: dict[str, PresetEntry]
    calibration: CalibrationEntry
    stop: StopSettings


def parse(data: Mapping[str, Any], source: Path | None = None, digest: str = "") -> Matrix:
    """Build and validate a Matrix from the TOML document's data: a MatrixError names the file, the place in it and
    the fix."""
    where = f"the matrix file {source or MATRIX_FILE.name}"
    if data.get("schema") != SCHEMA:
        raise MatrixError(f"{where}: schema {data.get('schema')!r}, this lab reads schema {SCHEMA}")
    try:
        return _build(MatrixFile.model_validate(data), source, digest)
    except ValidationError as exc:
        raise MatrixError(f"{where}: {schema_error(exc, data)}") from None
    except MatrixError as exc:
        raise MatrixError(f"{where}: {exc}") from None


def _build(file: MatrixFile, source: Path | None, digest: str) -> Matrix:
    """The matrix from the file's checked parts, each name that must agree with another checked."""
    apps = {name: App(name, t.target, tuple(t.packages), t.title or name) for name, t in file.apps.items()}
    loops = {name: Loop(name, tuple(t.packages), t.reports) for name, t in file.loops.items()}
    servers = {name: _server(name, t, loops) for name, t in file.servers.items()}
    http2 = frozenset(file.http2)
    if unknown := http2 - {h for s in servers.values() for h in s.http}:
        raise MatrixError(f"http2 names {sorted(unknown)}, which no server's http has")
    scenarios = {
        name: Scenario(name=name, method=t.method, path=t.path, answer=t.answer, query=t.query, params=t.params)
        for name, t in file.scenarios.items()
    }
    rules = tuple(t.rule(t.reason) for t in file.rules)
    matrix = Matrix(apps, loops, servers, tuple(file.workers), rules, scenarios, {}, http2=http2)
    for rule in rules:
        _check_match(matrix, rule.match)
    presets = {name: _preset(name, t, matrix) for name, t in file.presets.items()}
    calibration = (matrix.cell_from_key(file.calibration.cell), matrix.scenario(file.calibration.scenario).name)
    return dataclasses.replace(
        matrix, presets=presets, calibration=calibration, stop=file.stop, source=source, digest=digest
    )


def _server(name: str, t: ServerEntry, loops: Mapping[str, Loop]) -> Server:
    if set(t.http_packages) != set(t.http):
        raise MatrixError(f"server {name!r}: http_packages must name each of {t.http}")
    if not set(t.http_args) <= set(t.http):
        raise MatrixError(f"server {name!r}: http_args names an http not in {t.http}")
    if stray := sorted(set(t.loop_args) - set(loops)):
        raise MatrixError(f"server {name!r}: loop_args names {stray}, which are not loops ({', '.join(loops)})")
    return Server(
        name=name,
        packages=tuple(t.packages),
        http=tuple(t.http),
        command=tuple(t.command),
        loop_args={loop: t.loop_args.get(loop, loop) for loop in loops},
        http_packages={h: tuple(p) for h, p in t.http_packages.items()},
        http_args={h: tuple(t.http_args.get(h, ())) for h in t.http},
        stop=t.stop,
        config=t.config,
    )


def _check_match(matrix: Matrix, match: Mapping[str, Any], where: str = "") -> None:
    for axis, value in match.items():
        matrix.scenario(value) if axis == "scenario" else matrix._check_choice(axis, value, where=where)


def _preset(name: str, t: PresetEntry, matrix: Matrix) -> Preset:
    said = f" in preset {name!r}"
    chosen = {axis: getattr(t, axis) for axis in AXES if getattr(t, axis) is not None}
    for axis, values in chosen.items():
        for value in values:
            matrix._check_choice(axis, value, where=said)
    for scenario in [*t.scenarios, *t.run.swept]:
        matrix.scenario(scenario)
    excludes = [e.rule("excluded by preset") for e in t.exclude]
    for rule in excludes:
        _check_match(matrix, rule.match, said)
    cells = tuple(
        c
        for c in matrix.valid_cells()
        if all(getattr(c, axis) in values for axis, values in chosen.items())
        and not any(e.matches(c) for e in excludes)
    )
    if not cells:
        raise MatrixError(f"preset {name!r} selects no valid cell")
    skips = tuple(e for e in excludes if "scenario" in e.match)
    return Preset(name, t.description, cells, tuple(t.scenarios), t.run, skips)


TYPES = {
    "model_type": "should be a table",
    "dict_type": "should be a table",
    "list_type": "should be a list",
    "tuple_type": "should be a list",
}  # pydantic's words for these name its classes, not TOML's


def schema_error(exc: ValidationError, data: Mapping[str, Any]) -> str:
    """The first of a validation's errors in one line: where in the file, what is wrong there, and the fix."""
    errors = exc.errors()
    error, more = errors[0], f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    *path, name = error["loc"]
    place = _place(path, data)
    at = f"{place}: " if place else ""
    if error["type"] == "extra_forbidden":
        return f"{at}unknown field {name!r}{more}; the fields there are {', '.join(_fields_at(path))}"
    if error["type"] == "missing":
        return f"{at}{name} is missing{more}; add it (servers/matrix.toml has each field)"
    problem = TYPES.get(error["type"]) or error["msg"].removeprefix("Input ")
    if isinstance(name, int):  # an item of a list: its place and number
        at = f"{_place(error['loc'], data)}: "
    else:
        at += f"{name} = "
    return f"{at}{error['input']!r} {problem}{more} (compare with servers/matrix.toml)"


def _place(path: Sequence[int | str], data: Any) -> str:
    """A place in the file as its reader names it: presets.quick.run, or rules #1 (server = 'uvicorn', ...)."""
    said: list[str] = []
    for part in path:
        data = data[part] if isinstance(data, Mapping | list) else None
        if isinstance(part, int):
            items = data.items() if isinstance(data, Mapping) else ()
            shown = ", ".join(f"{k} = {v!r}" for k, v in items if k != "reason")
            said[-1] += f" #{part + 1}" + (f" ({shown})" if shown else "")
        else:
            said.append(str(part))
    return ".".join(said)


def _fields_at(path: Sequence[int | str]) -> list[str]:
    """The fields the schema allows at a place in the file (where a model is expected there)."""
    kind: Any = MatrixFile
    for part in path:
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            kind = kind.model_fields[str(part)].annotation
        else:
            args = [a for a in get_args(kind) if a is not type(None)]
            kind = args[-1] if args else Any  # dict[str, X] and list[X]: X; X | None: X
        while get_origin(kind) is Union or isinstance(kind, types.UnionType):
            kind = next(a for a in get_args(kind) if a is not type(None))
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return [f.alias or name for name, f in kind.model_fields.items()]
    return []


def load(path: Path | None = None) -> Matrix:
    """The matrix from `path`, else from $LAB_MATRIX (a user's own matrix file), else servers/matrix.toml. Called by
    entry points only; everything else is handed the Matrix."""
    return _load(Path(path or settings().matrix_file or MATRIX_FILE).resolve())


def digest_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@cache
def _load(path: Path) -> Matrix:
    try:
        data = path.read_bytes()
        return parse(tomllib.loads(data.decode()), path, hashlib.sha256(data).hexdigest())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MatrixError(f"cannot read the matrix file {path}: {exc}") from None
