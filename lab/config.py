"""One run's configuration and the table of its options: each option is declared once, on its field below (type,
bounds, help, the preset's default, the environment variable compose passes), and that declaration makes the
command line's parser (`add_options`), every value from the command line, the environment (converted to the field's
type), the preset or the default (`Sources`, `from_args`), the checks the run and the preflight both make before
anything starts (`check_bound`, `RunConfig.check`), and the variables' documentation (lab/variables.py).

A run has these phases, all through the same backends:
  calibration   the load generator on the matrix's calibration cell, per scenario (lab/run/calibration.py);
  side by side  `pair_rounds` rounds in which the cells of each group (`together`: each app's stacks, or every cell;
                in an A/B run, each cell's two variants) run at once on the server CPUs, fresh each round, and are
                loaded together for `pair_seconds` per scenario (lab/measure/group.py): every comparison the run
                states, each cell's throughput against the others' measured in the same seconds;
  throughput    `repeats` rounds over every cell alone in a new random order each round (lab/run/plan.py): each
                cell's server starts, and each scenario gets a warm-up and one measured repeat: the cell's own RPS;
                wrk, the referee, runs after a point's first repeat and again while Locust ÷ wrk is off
                (lab/run/referee_rule.py);
  extra         while `budget_seconds` allows, more side-by-side rounds for the groups whose comparisons are still
                undecided, up to `max_repeats` rounds (lab/run/allowance.py);
  sweep         every cell alone at the same offered rates (open model) for `sweep_seconds` each: rates chosen from
                the throughput phase's own figures (lab/run/sweep.py), or the ones given with --rate;
  stops         `stops` times per cell, its server started fresh, loaded in the open model with short and long
                requests and idle connections, and sent SIGTERM at a set time (lab/lifecycle/stops.py); `restart`
                (the lifecycle command only) sends its restart signal instead and keeps the load on.
The manifest stores the configuration; a resumed run reads it back from there, and the matrix file it names.
"""

from __future__ import annotations

import argparse
import math
import resource
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BeforeValidator, Field, PlainSerializer

from core.errors import UsageError
from core.host import ANY_CPUS, CPU_VARIABLES, LOOPBACK, check_port, load_default, parse_cpus, server_default
from core.model import Record
from core.settings import FALSE, TRUE, Role, settings, variable
from lab import scale
from loadtests.load import (
    DEFAULT_STREAMS,
    MAX_CONNECTIONS,
    MAX_DURATION,
    MAX_RATE,
    MAX_SLICE,
    MAX_STREAMS,
    MAX_USERS,
    MIN_SLICE,
    Arrivals,
    Client,
    Load,
    PairMode,
)
from servers.matrix import AXES, Cell, Expected, HttpVersion, Matrix, MatrixError, Preset, Scenario, digest_of
from servers.own_app import NAME as OWN
from servers.own_app import OwnApp, with_own
from servers.variants import Variant

MAX_REPEATS = 100
MAX_BUDGET_MINUTES = 7 * 24 * 60.0
MIN_SWEPT = 10  # requests one swept window must be offered at the least: a rate below it measures nothing
# An A/B run's pair rounds by default: fresh servers each round, since each start of a server has a speed of its own
# (docs/method.md#ab-runs); with 5-s windows about a minute and a half per cell and scenario here, for about ±0.7%.
PAIR_ROUNDS = 10
Together = Literal["app", "all"]  # the cells a side-by-side round loads at once (RunConfig.groups)


def side_rounds(v: Any) -> int:
    """The side-by-side rounds when --pair-rounds is not given: an A/B run's PAIR_ROUNDS, else the preset's."""
    if len(v["variants"]) == 2:
        return PAIR_ROUNDS
    return v.preset.run.side_rounds if v.preset else 0


SETTLE_SHARE = 0.2  # slices: the first fifth of each slice is not counted (the other side's answers drain then)


@dataclass(frozen=True)
class Option:
    """How a RunConfig field is set and bounded (the field's name gives the flag: --repeats for repeats)."""

    help: str
    flag: str | None = None
    low: float | None = None
    high: float | None = None  # None: no upper bound
    unit: str = ""  # said after a float's bounds
    zero_or_at_least: float | None = None  # 0 turns the thing off; otherwise at least this
    off: str = ""  # what 0 means, for that message
    preset: str | None = None  # the preset's run setting (servers/matrix.toml) that gives the default
    default: Any = None  # or a function of the other options' values (a Sources: v["users"])
    env: str | None = None  # the environment variable used when the flag is not given, converted to the field's type
    example: str = ""  # a valid value of that variable, as .env.example shows it
    role: Role = "passed"  # who passes the variable to the containers (core/settings.py)
    scale: float = 1.0  # the field's value = the flag's value x scale (minutes -> seconds)
    repeat: bool = False  # the flag may be given several times
    each: str = ","  # what separates a repeatable option's values in its environment variable (spaces do too)
    negate: bool = False  # a flag that turns the field off (--no-calibrate)
    parse: Callable[[str, str, Sources], Any] | None = None  # (text, flag or variable, the other options) -> value
    check: Callable[[Any, str], None] | None = None  # a check of its own: (value, flag or variable) -> a UsageError


AGENT_URL, MASTER_URL = "http://127.0.0.1:7900", "http://127.0.0.1:8089"  # where compose runs the two services


def check_url(value: str, said: str, example: str) -> None:
    """A service's address, checked before anything starts: http or https, and a host."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        good = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number, or out of range
        good = False
    if not good:
        raise UsageError(f"{said} {value!r}: give the service's URL, http://HOST:PORT, e.g. {example}")


def remote(v: Sources) -> bool:
    """The servers run on another host, under its agent: their CPUs are that host's, and this one's are the load's."""
    return bool(v["target_agent"]) and v["target_host"] != LOOPBACK


def server_cpus_of(text: str, said: str, v: Sources) -> list[int]:
    """The server's CPU set: CPUs of this machine, or of the target host's (its agent checks them there)."""
    return list(parse_cpus(text, said, ANY_CPUS if remote(v) else None))


def check_target_host(value: str, flag: str) -> None:
    """One IP address of one host: a name could resolve anywhere, a wildcard or multicast address is no host."""
    import ipaddress

    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise UsageError(f"{flag} {value!r}: give the target host's IP address, e.g. 198.18.0.1") from None
    if ip.is_unspecified or ip.is_multicast:
        raise UsageError(f"{flag} {value}: give the one address the servers listen on, not a wildcard or a group")


def swept_of(flagged: list[str] | None, preset: tuple[str, ...], scenarios: Sequence[str]) -> list[str]:
    """The scenarios the sweep runs (none: every one of the run's): the ones named, each one of the run's, else the
    preset's that the run has."""
    if flagged:
        if stray := [s for s in flagged if s not in scenarios]:
            raise UsageError(f"--sweep-scenario {stray[0]}: not a scenario of this run ({', '.join(scenarios)})")
        return list(flagged)
    return [s for s in scenarios if s in preset]


def cell_of(value: Any) -> Any:
    return Cell.parse(value) if isinstance(value, str) else value


# A cell in the config: a Cell in memory, its key in the manifest (as bundles from before it have it).
CellKey = Annotated[Cell, BeforeValidator(cell_of), PlainSerializer(lambda cell: cell.key, return_type=str)]


def variant_of(value: Any) -> Any:
    return Variant.parse(value) if isinstance(value, str) else value


VariantSpec = Annotated[Variant, BeforeValidator(variant_of)]  # NAME=REQ on the command line, a record in the manifest
AB_NAMES = ("A", "B")
Graceful = Literal["lab", "default"]  # servers/matrix.py: GRACEFUL


class MatrixRef(Record):
    """The matrix file a run was planned from, and its sha256: a resumed run uses that file, unchanged."""

    path: str
    digest: str


class RunConfig(Record):
    preset: Annotated[str | None, Option("a preset of the matrix (default: default, unless --cell)")]
    cells: Annotated[
        list[CellKey],
        Option("a cell key to run instead of the preset's", "--cell", repeat=True, env="CELLS",
               example="granian-uvloop-hyper-w1-fastapi"),
    ]  # fmt: skip
    scenarios: Annotated[
        list[str],
        Option("a scenario (default: the preset's)", "--scenario", repeat=True, env="SCENARIOS", example="json"),
    ]  # fmt: skip
    repeats: Annotated[int, Option("measured repeats per cell x scenario", low=1, high=MAX_REPEATS, preset="repeats")]
    duration: Annotated[
        float, Option("measured seconds per repeat", low=0.5, high=MAX_DURATION, unit="seconds", preset="duration")
    ]
    warmup: Annotated[
        float,
        Option("unrecorded seconds before each repeat", low=0, high=MAX_DURATION, unit="seconds", preset="warmup"),
    ]
    users: Annotated[int, Option("concurrent connections", low=1, high=MAX_USERS, preset="users")]
    client: Annotated[Client, Option("Locust's user class: the lab's client or FastHttpUser", default="lean")]
    referee_seconds: Annotated[
        float,
        Option("wrk's run per cell x scenario", "--referee-seconds", low=0, high=MAX_DURATION, unit="seconds",
               zero_or_at_least=1, off="no referee", preset="referee"),
    ]  # fmt: skip
    rates: Annotated[
        list[float],
        Option("an offered requests/s for the sweep instead of the rates chosen from the run's figures", "--rate",
               repeat=True, default=lambda v: []),
    ]  # fmt: skip
    swept: Annotated[
        list[str],
        Option(
            "a scenario whose latency at equal offered load the sweep measures (default: the preset's, else every "
            "scenario of the run)",
            "--sweep-scenario",
            repeat=True,
            env="SWEEP_SCENARIOS",
            example="plaintext,json",
        ),
    ] = Field(default_factory=list)  # fmt: skip  (runs recorded before it swept every scenario)
    sweep_seconds: Annotated[
        float,
        Option("measured seconds per offered rate in the sweep", low=0, high=MAX_DURATION, unit="seconds",
               zero_or_at_least=0.5, off="no sweep", preset="sweep"),
    ]  # fmt: skip
    arrivals: Annotated[Arrivals, Option("the open model's arrivals", default="poisson")]
    streams: Annotated[
        int,
        Option(
            "h2c cells: requests in flight per connection (h2load's -m)",
            low=1,
            high=MAX_STREAMS,
            default=DEFAULT_STREAMS,
        ),
    ] = DEFAULT_STREAMS  # fmt: skip  (runs recorded before HTTP/2 have none)
    stops: Annotated[
        int,
        Option("stops under load per cell, after the other phases: SIGTERM while requests are in flight "
               "(lab/lifecycle/stops.py; 0: none; python -m lab lifecycle: default 5)", low=0, high=MAX_REPEATS,
               preset="stops"),
    ] = 0  # fmt: skip
    restart: Annotated[
        bool,
        Option("python -m lab lifecycle: restart each cell's server under load (its matrix restart_signal, with at "
               "least its restart_workers workers) instead of stopping it, --stops times", default=False),
    ] = False  # fmt: skip
    graceful: Annotated[
        Graceful,
        Option("the stops' graceful timeout: the lab's, the same for every server (matrix.toml [stop]), or each "
               "server's own default", default="lab"),
    ] = "lab"  # fmt: skip
    max_connections: Annotated[
        int,
        Option("open model: connections at most (default 4 x --users)", low=1, high=MAX_CONNECTIONS,
               default=lambda v: 4 * v["users"]),
    ]  # fmt: skip
    budget_seconds: Annotated[
        float,
        Option("minutes for the whole run, extra repeats included (0: no budget, no extra rounds)", "--budget-minutes",
               low=0, high=MAX_BUDGET_MINUTES, scale=60.0, preset="budget"),
    ]  # fmt: skip
    max_repeats: Annotated[
        int,
        Option("side-by-side rounds at the most, extra rounds included", low=1, high=MAX_REPEATS,
               default=lambda v: max(v.preset.run.max_repeats if v.preset else 0, v["pair_rounds"], 1)),
    ]  # fmt: skip
    server_cpus: Annotated[
        list[int],
        Option("CPU set for the server, as 0, 0-1 or 0,2 (default: CPU 0; on more than 2 CPUs, the first half)",
               env=CPU_VARIABLES["server"], example="0", parse=server_cpus_of,
               default=lambda v: list(server_default())),
    ]  # fmt: skip
    load_cpus: Annotated[
        list[int],
        Option("CPU set for the load generator; it must not share CPUs with the server unless allowed (default: "
               "every CPU but the server's)", env=CPU_VARIABLES["load"], example="1-3",
               parse=lambda text, said, v: list(parse_cpus(text, said)),  # this machine's, always
               default=lambda v: list(load_default(v["server_cpus"], remote(v)))),
    ]  # fmt: skip
    load_workers: Annotated[
        int,
        Option("Locust worker processes; one per load CPU uses them all, more gains nothing (default: one per load "
               "CPU)", env=CPU_VARIABLES["workers"], example="3", low=1, default=lambda v: len(v["load_cpus"])),
    ]  # fmt: skip
    port: Annotated[int, Option("server port (with --resume: the run's own)", check=check_port, default=8000)]
    calibrate: Annotated[
        bool, Option("skip measuring the load generator's ceiling", "--no-calibrate", negate=True, default=True)
    ]
    allow_shared_cpus: Annotated[
        bool,
        Option("let the server and the load generator share CPUs (recorded, and every figure then says `shared`)",
               env="LAB_ALLOW_SHARED_CPUS", example="1", default=False),
    ]  # fmt: skip
    target_agent: Annotated[
        str | None, Option("run cells under this agent (python -m servers.agent), here or on a target host: its URL",
                           "--server-agent", check=lambda url, said: check_url(url, said, AGENT_URL))
    ]  # fmt: skip
    locust_master: Annotated[
        str | None, Option("drive this long-lived Locust master: its web UI's URL", "--locust-master",
                           check=lambda url, said: check_url(url, said, MASTER_URL))
    ]  # fmt: skip
    target_host: Annotated[
        str,
        Option("the servers' address when it is not loopback: the target host's IP (recorded; every other address "
               "is refused before any traffic)", "--target-host", env="LAB_TARGET_HOST", role="two-hosts",
               example="198.18.0.1", check=check_target_host, default=LOOPBACK),
    ] = LOOPBACK  # fmt: skip
    # --- the run's focus and its variants (bundles from before them have none) ---------------------------------
    servers: Annotated[
        list[str],
        Option("only the preset's cells of this server", "--server", repeat=True, env="SERVERS",
               example="granian,uvicorn"),
    ] = Field(default_factory=list)  # fmt: skip
    loops: Annotated[
        list[str],
        Option("only the preset's cells of this event loop", "--loop", repeat=True, env="LOOPS", example="uvloop"),
    ] = Field(default_factory=list)  # fmt: skip
    https: Annotated[
        list[str], Option("only the preset's cells of this HTTP implementation", "--http", repeat=True)
    ] = Field(default_factory=list)
    apps: Annotated[
        list[str], Option("only the preset's cells of this app", "--app", repeat=True, env="APPS", example="fastapi")
    ] = Field(default_factory=list)
    variants: Annotated[
        list[VariantSpec],
        Option("NAME=REQUIREMENTS: every cell once more in that package environment (servers/variants.py), instead "
               "of --ab; NAME= alone is the image's own", "--variant", repeat=True, env="VARIANTS", each=";",
               example="A=uvicorn==0.53.0;B=/lab/code/uvicorn"),
    ] = Field(default_factory=list)  # fmt: skip
    ab: Annotated[
        str | None,
        Option("A/B: the image's environment (A) against these requirements (B), e.g. uvicorn==0.53.0, on the cells "
               "whose packages they change (a version, a wheel, or a checkout under /lab/code in compose)", "--ab",
               env="AB", example="uvicorn==0.53.0"),
    ] = None  # fmt: skip
    pair_rounds: Annotated[
        int,
        Option("rounds side by side: each group's cells (an A/B run: each cell's two variants) started afresh and "
               f"loaded together on the server CPUs (0: none; default: the preset's, {PAIR_ROUNDS} in an A/B run)",
               low=0, high=MAX_REPEATS, env="PAIR_ROUNDS", example="16", default=side_rounds),
    ] = 0  # fmt: skip
    pair_seconds: Annotated[
        float,
        Option("measured seconds per scenario in each side-by-side round", low=0.5, high=MAX_DURATION,
               unit="seconds", default=lambda v: v.preset.run.side_seconds if v.preset else 5.0),
    ] = 5.0  # fmt: skip
    pair_mode: Annotated[
        PairMode,
        Option("side by side: load every server of a group at once (together), or in turn (slices of "
               "--slice-seconds)", default="together"),
    ] = "together"  # fmt: skip
    slice_seconds: Annotated[
        float,
        Option("side by side: seconds per slice (slices) or per counted bucket (together)", low=MIN_SLICE,
               high=MAX_SLICE, unit="seconds", default=0.1),
    ] = 0.1  # fmt: skip
    together: Annotated[
        Together,
        Option("side by side: the cells loaded at once, each app's stacks (app) or every cell (all); with N "
               "workers, the cells with as many", default=lambda v: v.preset.run.together if v.preset else "app"),
    ] = "app"  # fmt: skip
    fail_if_slower: Annotated[
        float | None,
        Option("exit 3 when B is slower than A by more than this % with 95% confidence (in any cell and scenario)",
               "--fail-if-slower", low=0.01, high=99, unit="%", env="FAIL_IF_SLOWER", example="2"),
    ] = None  # fmt: skip
    own_app: Annotated[
        str | None,
        Option("your own ASGI app, MODULE:ATTRIBUTE, under the preset's servers and loops instead of the lab's three "
               "apps (servers/own_app.py)", "--own-app", env="APP", example="shop:app"),
    ] = None  # fmt: skip
    own_code: Annotated[
        str | None,
        Option("the folder your app is imported from, with its requests.toml and requirements.txt (default .; in "
               "compose /lab/code, where CODE is mounted)", "--own-code", env="APP_CODE", example="/lab/code"),
    ] = None  # fmt: skip
    requests: Annotated[
        str | None,
        Option("your app's requests file (default: its folder's requests.toml)", "--requests", env="REQUESTS",
               example="/lab/code/requests.toml"),
    ] = None  # fmt: skip
    own: OwnApp | None = None  # your app as read from those three: the run's matrix has it as the app `own`
    matrix: MatrixRef | None = None  # None in bundles from before it was recorded: they ran on servers/matrix.toml

    # --- the checks -----------------------------------------------------------------------------------------------
    def check(self, matrix: Matrix) -> RunConfig:
        """Every bound and name, before anything starts: a UsageError (or MatrixError) naming the input and a fix."""
        for name, option in options().items():
            check_value(option, getattr(self, name))
        check_names(self, matrix)
        check_amounts(self, matrix)
        return self

    @property
    def two_hosts(self) -> bool:
        """The servers on another host, under its agent: the two CPU sets are two machines' (the same numbers may
        name different CPUs)."""
        return self.target_agent is not None and self.target_host != LOOPBACK

    def groups(self) -> dict[str, list[Cell]]:
        """The cells loaded at once in the side-by-side rounds, by the group's name: in an A/B run each cell's two
        variants (A first); else each app's stacks (`together` app) or every cell (all), apart by their workers
        (N workers share the server CPUs as one does not); a group of one compares nothing and is left out."""
        found: dict[str, list[Cell]] = {}
        if (pair := self.ab_pair) is not None:
            for cell in self.cells:
                if cell.variant in pair:
                    found.setdefault(cell.base.key, []).append(cell)
            return {k: sorted(v, key=lambda c: pair.index(c.variant)) for k, v in found.items() if len(v) == 2}
        for cell in self.cells:
            name = cell.app if self.together == "app" else "all"
            found.setdefault(f"{name}-w{cell.workers}", []).append(cell)
        return {k: v for k, v in found.items() if len(v) > 1}

    @property
    def ports(self) -> list[int]:
        """The servers' ports: the run's, and the next ones for every further server of the largest group that the
        side-by-side rounds start at once."""
        most = max((len(g) for g in self.groups().values()), default=1) if self.pair_rounds else 1
        return [self.port + i for i in range(most)]

    def grouped(self, load: Load, others: Sequence[tuple[str, HttpVersion]]) -> Load:
        """A closed load made a group load: `users` connections to every further server too (its URL, and the
        protocol spoken to it), shared between them as the run asks."""
        settle = SETTLE_SHARE * self.slice_seconds if self.pair_mode == "slices" else 0.0
        group = [{"target": url, "http": http} for url, http in others]
        streams = self.streams if "h2" in {load.http, *(http for _, http in others)} else 1  # on its h2c sides
        # Only the lean client loads a group: with --client stock the repeats alone use Locust's HttpUser, the
        # side-by-side rounds still the lean client (one client for every side, which is what a ratio needs).
        return Load.model_validate(
            {**load.model_dump(), "client": "lean", "group": group, "pair_mode": self.pair_mode,
             "slice_seconds": self.slice_seconds, "settle_seconds": settle, "streams": streams}
        )  # fmt: skip

    @property
    def ab_pair(self) -> tuple[str, str] | None:
        """The run's A and B variant names, when it compares two."""
        return (self.variants[0].name, self.variants[1].name) if len(self.variants) == 2 else None

    def load(
        self, target: str, scenario: Scenario, rate: float, duration: float, warmup: float, http: HttpVersion = "h1"
    ) -> Load:
        """One of this run's loads, checked where it is made: over HTTP/2 (an h2c cell) with the run's streams."""
        return Load(
            target=target, scenario=scenario, users=self.users, duration=duration, rate=rate,
            client=self.client, warmup=warmup, arrivals=self.arrivals, max_connections=self.max_connections,
            http=http, streams=self.streams if http == "h2" else 1,
            named_host="" if self.target_host == LOOPBACK else self.target_host,
        )  # fmt: skip

    @property
    def sweep_scenarios(self) -> list[str]:
        """The run's scenarios the sweep runs, in the run's order."""
        return [s for s in self.scenarios if not self.swept or s in self.swept]

    def scenarios_of(self, cell: Cell, matrix: Matrix) -> list[str]:
        """The run's scenarios this cell can run (and its preset does not leave out), in the run's order."""
        preset = matrix.presets.get(self.preset or "")
        return [
            s for s in self.scenarios if matrix.supports(cell, s) and not (preset and preset.skips_scenario(cell, s))
        ]

    def skipped(self, matrix: Matrix) -> list[tuple[Cell, str, str]]:
        """(cell, scenario, reason) for each scenario a chosen cell cannot run."""
        return [(c, s, reason) for c in self.cells for s in self.scenarios if (reason := matrix.invalid_reason(c, s))]

    @property
    def keys(self) -> list[str]:
        return [c.key for c in self.cells]

    def matrix_of(self, current: Matrix) -> Matrix:
        """The matrix this run was planned from, with your app when it ran one: `current` when it is that file
        unchanged (or the run predates the record), else a refusal naming both."""
        if self.matrix is None or self.matrix.digest == current.digest:
            return with_own(current, self.own)
        path = Path(self.matrix.path)
        if not path.is_file() or digest_of(path) != self.matrix.digest:
            raise MatrixError(
                f"this run was planned from the matrix file {path} with sha256 {self.matrix.digest[:12]}…, which is "
                f"{'gone' if not path.is_file() else 'changed'}; restore it (LAB_MATRIX={path}) or start a new run"
            )
        from servers.matrix import load

        return with_own(load(path), self.own)


def check_names(c: RunConfig, matrix: Matrix) -> None:
    """The run's cells, variants and scenarios: each one the matrix has, and the variants each named once."""
    if not c.cells:
        raise UsageError("no cells to run")
    names = [v.name for v in c.variants]
    if len(set(names)) != len(names):
        raise UsageError(f"--variant names {names}: give each variant its own name")
    for cell in c.cells:
        matrix.valid(cell)
        if cell.variant and cell.variant not in names:
            raise UsageError(f"cell {cell.key}: no variant {cell.variant!r} in this run (--variant NAME=REQ)")
    if c.fail_if_slower is not None and len(c.variants) != 2:
        raise UsageError("--fail-if-slower compares two variants: give --ab REQ (AB=…) or --variant twice")
    if c.port + len(c.ports) - 1 > 65535:
        raise UsageError(f"--port {c.port}: the run's side-by-side rounds use it and the next {len(c.ports) - 1}; "
                         f"give at most {65536 - len(c.ports)}")  # fmt: skip
    if not c.scenarios:
        raise UsageError("no scenarios to run")
    for name in c.scenarios:
        matrix.scenario(name)


def check_amounts(c: RunConfig, matrix: Matrix) -> None:
    """What the bounds alone cannot check: options against each other, the CPU sets, and each load the run will
    make, built on a stand-in target."""
    if c.max_repeats < c.pair_rounds:
        raise UsageError(f"--max-repeats {c.max_repeats} must be in {c.pair_rounds}-{MAX_REPEATS} (>= --pair-rounds)")
    if c.max_connections < c.users:
        raise UsageError(f"--max-connections {c.max_connections} must be in {c.users}-{MAX_CONNECTIONS} (>= --users)")
    if c.load_workers > 4 * len(c.load_cpus):
        raise UsageError(
            f"--load-workers {c.load_workers} for load CPUs {c.load_cpus}: give 1-{4 * len(c.load_cpus)}"
            " (one per load CPU uses them all)"
        )
    if len(set(c.rates)) != len(c.rates) or any(not (0 < r <= MAX_RATE) for r in c.rates):
        raise UsageError(f"--rate {c.rates}: give distinct offered rates in (0, {MAX_RATE:g}] requests/s")
    few = [r for r in c.rates if r * c.sweep_seconds < MIN_SWEPT]
    if c.sweep_seconds and few:
        offered = few[0] * c.sweep_seconds
        raise UsageError(
            f"--rate {few[0]:g}: a {c.sweep_seconds:g}-s window would be offered {offered:g} requests; give "
            f"rates of at least {MIN_SWEPT / c.sweep_seconds:g} requests/s, or a longer --sweep-seconds"
        )
    if c.rates and not c.sweep_seconds:
        raise UsageError("--rate needs a sweep: give --sweep-seconds (e.g. 3)")
    if not c.server_cpus or not c.load_cpus:
        raise UsageError("the server and the load generator each need at least one CPU")
    if set(c.server_cpus) & set(c.load_cpus) and not (c.allow_shared_cpus or c.two_hosts):
        raise UsageError(
            f"server CPUs {c.server_cpus} and load CPUs {c.load_cpus} overlap; give them disjoint sets so "
            "the client does not compete with the server (or --allow-shared-cpus, LAB_ALLOW_SHARED_CPUS=1)"
        )
    for name in c.scenarios:  # each load on a stand-in target: scenario parameters, client, users, rates
        scenario = matrix.scenario(name)
        if scenario.answer == "given" and scenario.expect is None:  # recorded from the app's first answer
            scenario = scenario.model_copy(update={"expect": Expected.of("", "length", b"")})
        for rate in [0.0, *c.rates]:
            c.load("http://127.0.0.1:1", scenario, rate, c.duration, c.warmup)
        if c.pair_rounds and scenario.method != "WS":
            closed = c.load("http://127.0.0.1:1", scenario, 0.0, c.pair_seconds, c.warmup)
            c.grouped(closed, [("http://127.0.0.1:2", "h1")])
    if c.sweep_seconds and c.client != "lean":
        raise UsageError("the sweep runs the open model, which only the lean client has: --sweep-seconds 0")
    check_open_files(c.users * len(c.ports), c.load_workers)  # a side-by-side round loads a whole group


def check_bound(option: Option, value: Any, said: str = "") -> None:
    """One value against its option's bounds and check, in the words of where it came from: its flag (--repeats 0),
    or its environment variable (PAIR_ROUNDS=200)."""
    said = said or option.flag or ""
    if option.check is not None and value is not None:
        option.check(value, said)
    if option.low is None or not isinstance(value, int | float) or isinstance(value, bool):
        return
    low, high = option.low, option.high if option.high is not None else math.inf
    shown = value / option.scale
    text = f"{shown:g}" if option.scale != 1 else str(value)
    subject = f"{said} {text}" if said.startswith("-") else f"{said}={text}"
    if not (math.isfinite(shown) and low <= shown <= high):
        if option.high is None:
            raise UsageError(f"{subject} must be at least {low:g}")
        if isinstance(value, int):
            raise UsageError(f"{subject} must be in {low:g}-{high:g}")
        raise UsageError(f"{subject} must be in [{low:g}, {high:g}]" + (f" {option.unit}" if option.unit else ""))
    if option.zero_or_at_least and 0 < shown < option.zero_or_at_least:
        raise UsageError(f"{subject} must be 0 ({option.off}) or at least {option.zero_or_at_least:g}")


def check_value(option: Option, value: Any, said: str = "") -> None:
    """A value of the option, each item of a bounded list on its own."""
    for item in value if isinstance(value, list) and option.low is not None else [value]:
        check_bound(option, item, said)


def check_open_files(users: int, workers: int) -> None:
    """Every connection is a file on both sides: refuse what the process limit cannot hold."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    need = users // workers + 100
    if soft != resource.RLIM_INFINITY and need > soft:
        most = max((soft - 100) * workers, 1)
        raise UsageError(
            f"--users {users}: each of {workers} Locust worker(s) would open about {need} files, over this "
            f"machine's limit of {soft} (ulimit -n); give --users {most} or fewer, or raise the limit"
        )


@cache
def options() -> dict[str, Option]:
    """The option table: every RunConfig field that the command line sets, with its flag filled in."""
    found = {}
    for name, info in RunConfig.model_fields.items():
        option = next((m for m in info.metadata if isinstance(m, Option)), None)
        if option is not None:
            flag = option.flag or "--" + name.replace("_", "-")
            found[name] = Option(**{**vars(option), "flag": flag})
    return found


def field_type(name: str) -> Any:
    """A field's type without its None: float for `float | None`."""
    kind = RunConfig.model_fields[name].annotation
    if get_origin(kind) in (Union, types.UnionType):
        return next(a for a in get_args(kind) if a is not type(None))
    return kind


def kind_of(name: str) -> Any:
    """A field's type, or its items' for a list: what one flag or one item of a variable's list gives."""
    kind = field_type(name)
    return get_args(kind)[0] if get_origin(kind) is list else kind


def choices(name: str) -> tuple[str, ...] | None:
    """A Literal field's values, for the parser."""
    kind = kind_of(name)
    return get_args(kind) if get_origin(kind) is Literal else None


def add_options(parser: argparse.ArgumentParser, matrix: Matrix) -> None:
    """The run's options on a parser, from the table; every default stays None so that from_args can tell what was
    given."""
    said = {"preset": f"one of: {', '.join(matrix.presets)}", "scenarios": f"one of: {', '.join(matrix.scenarios)}"}
    for name, option in options().items():
        kind = kind_of(name)
        help_text = option.help + (f" ({said[name]})" if name in said else "")
        help_text += "; repeatable" if option.repeat else ""
        help_text += f"; default: the preset's {option.preset}" if option.preset else ""
        help_text += f"; or {option.env}" + (f" ({separated(option)})" if option.repeat else "") if option.env else ""
        help_text = help_text.replace("%", "%%")  # argparse %-formats help
        metavar = None if choices(name) else option.flag.lstrip("-").split("-")[-1].upper()
        typed = str if option.parse else int if kind is int else float if kind is float else str
        if kind is bool:
            parser.add_argument(option.flag, dest=name, action="store_true", default=None, help=help_text)
        else:
            parser.add_argument(
                option.flag, dest=name, action="append" if option.repeat else "store", type=typed, default=None,
                choices=choices(name), metavar=metavar, help=help_text,
            )  # fmt: skip


def separated(option: Option) -> str:
    """How a repeatable option's values are written in its variable."""
    return "comma-separated" if option.each == "," else f"{option.each!r}-separated"


class Sources:
    """A run's option values as they are asked for: each from its flag, else its environment variable (converted to
    the field's type), else the preset, else its default, which may be a function of other options' values (4 x
    --users). Each is resolved once, when first asked for, so the table's order does not matter."""

    def __init__(self, args: argparse.Namespace, preset: Preset | None = None) -> None:
        self.args, self.preset = args, preset
        self.values: dict[str, Any] = {}  # resolved so far (and the values from_args makes from the matrix)

    def given(self, name: str) -> Any:
        """The value the command line or the environment gives, checked in their words; None when neither does."""
        option = options()[name]
        value, said = getattr(self.args, name, None), option.flag or ""
        if value is not None:
            value = not value if option.negate else value
            value = value * option.scale if isinstance(value, float) else value
        elif option.env and (text := variable(option.env)) is not None:
            value, said = (text if option.parse else converted(name, option, text)), option.env
        if isinstance(value, str) and option.parse:
            value = option.parse(value, said, self)
        if value is not None:
            check_value(option, value, said)
        return value

    def __getitem__(self, name: str) -> Any:
        if name not in self.values:
            value = self.given(name)
            self.values[name] = self.fallback(name) if value is None else value
        return self.values[name]

    def fallback(self, name: str) -> Any:
        """The option's value when neither its flag nor its variable gives one: the preset's, else its default."""
        option = options()[name]
        if option.preset and self.preset is not None:
            value = getattr(self.preset.run, option.preset)
            return float(value) * option.scale if kind_of(name) is float else value
        return option.default(self) if callable(option.default) else option.default


def converted(name: str, option: Option, text: str) -> Any:
    """An environment variable's text as its option's type (a list's items split at its separator, spaces too);
    None for an empty list. A value that is not of the type is refused naming the variable and a valid value."""
    if get_origin(field_type(name)) is list:
        parts = [t.strip() for t in text.split(option.each)]
        parts = [w for t in parts for w in (t.split() if option.each == "," else [t])]
        return [scalar(kind_of(name), t, option) for t in parts if t] or None
    return scalar(kind_of(name), text, option)


def scalar(kind: Any, text: str, option: Option) -> Any:
    """One value of a variable as `kind`: a number, 1 or 0, one of a Literal's values, or the text itself."""
    said, example = f"{option.env}={text!r}", f", e.g. {option.env}={option.example}" if option.example else ""
    if kind is bool:
        if text.lower() not in TRUE + FALSE:
            raise UsageError(f"{said}: give 1 (yes) or 0 (no)")
        return text.lower() in TRUE
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise UsageError(f"{said}: give {what}{example}") from None
    if get_origin(kind) is Literal and text not in get_args(kind):
        raise UsageError(f"{said}: give one of {', '.join(get_args(kind))}")
    return text


def from_args(args: argparse.Namespace, matrix: Matrix) -> RunConfig:
    """The run's configuration: every option from the table (Sources); the ones that need the matrix (the cells, the
    focus, the variants, your app, the scenarios) made here from their given values; checked."""
    v = Sources(args)
    keys = v.given("cells")
    preset = v.preset = matrix.preset(args.preset or ("default" if not keys else "quick"))
    own = None
    if target := v["own_app"]:
        code = Path(v["own_code"] or ("/lab/code" if settings().in_container else "."))
        own = OwnApp.read(target, code, Path(r) if (r := v["requests"]) else None)
        matrix = with_own(matrix, own)
    focus = {axis: v.given(name) or [] for axis, name in FOCUS.items()}
    cells = [matrix.cell_from_key(k) for k in keys] if keys else list(preset.cells)
    if own:  # the preset's servers and loops, each once, running your app; over HTTP/1.1 unless h2c is asked for
        cells = list(dict.fromkeys(c.model_copy(update={"app": OWN}) for c in cells))
        cells = [c for c in cells if c.http not in matrix.http2 or focus.get("http")]
    cells = focused(cells, focus, matrix, preset)
    if not keys:  # a preset's cells: on a bigger machine, its multi-worker twins too (lab/scale.py)
        cells = scale.multi_worker(cells, v["server_cpus"], matrix)
    ab, variants = v.given("ab"), [variant_of(x) for x in v.given("variants") or []]
    if ab and variants:
        raise UsageError("give --ab (AB) or --variant (VARIANTS), not both")
    if ab:
        variants = [Variant(name=AB_NAMES[0], requirements=[]), Variant.parse(f"{AB_NAMES[1]}={ab}")]
    if variants:
        cells = touched(cells, variants, matrix) if not keys and not any(focus.values()) else cells
        # A key that names its variant (KEY@B) runs in that one only; the others run in every variant.
        cells = [x for c in cells for x in ([c] if c.variant else [c.model_copy(update={"variant": n.name})
                                                                   for n in variants])]  # fmt: skip
    scenarios = list(v.given("scenarios") or (own.scenarios if own else preset.scenarios))
    v.values.update(
        preset=None if keys else preset.name, cells=cells, scenarios=scenarios, variants=variants, ab=ab,
        swept=swept_of(v.given("swept"), preset.run.swept, scenarios),
        **{name: list(focus[axis]) for axis, name in FOCUS.items()},
    )  # fmt: skip
    ref = MatrixRef(path=str(matrix.source), digest=matrix.digest) if matrix.source else None
    return RunConfig(**{name: v[name] for name in options()}, own=own, matrix=ref).check(matrix)


FOCUS = {"server": "servers", "loop": "loops", "http": "https", "app": "apps"}  # axis -> the option naming its values


def focused(cells: list[Cell], focus: dict[str, list[str]], matrix: Matrix, preset: Preset) -> list[Cell]:
    """The cells whose value on each focused axis is one of those asked for; a bad name, or a focus that leaves no
    cell, refused in one line with the valid choices."""
    for axis, wanted in focus.items():
        for value in wanted:
            matrix._check_choice(axis, value)
    kept = [c for c in cells if all(not w or getattr(c, axis) in w for axis, w in focus.items())]
    if not kept:
        offered = "; ".join(
            f"{FOCUS[axis]} {', '.join(dict.fromkeys(str(getattr(c, axis)) for c in cells))}"
            for axis in AXES
            if axis != "workers"
        )
        raise UsageError(f"no cell of preset {preset.name!r} has {focus_text(focus)}; it has {offered}")
    return kept


def focus_text(focus: dict[str, list[str]]) -> str:
    return " and ".join(f"{axis} {' or '.join(w)}" for axis, w in focus.items() if w)


def touched(cells: list[Cell], variants: list[Variant], matrix: Matrix) -> list[Cell]:
    """The cells that run a package the variants change (all the cells when a requirement names none, as a bare URL
    does); none of them: refused, naming the packages."""
    projects = set().union(*(v.projects() for v in variants))
    if not projects or any(v.requirements and not v.projects() for v in variants):
        return cells
    from packaging.utils import canonicalize_name

    kept = [c for c in cells if {canonicalize_name(n) for n in matrix.packages(c)} & projects]
    if not kept:
        raise UsageError(
            f"no cell of this run uses {', '.join(sorted(projects))}; name the cells to compare (--cell, CELLS=…)"
        )
    return kept


def parse(argv: list[str], matrix: Matrix) -> RunConfig:
    """A configuration from run options written as on the command line (`["--cell", KEY, "--users", "32"]`): how a
    script or a test makes one, through the same table, defaults and checks as `python -m lab run`."""
    parser = argparse.ArgumentParser(prog="lab.config.parse", exit_on_error=False)
    add_options(parser, matrix)
    try:
        return from_args(parser.parse_args(argv), matrix)
    except argparse.ArgumentError as exc:
        raise UsageError(str(exc)) from None
