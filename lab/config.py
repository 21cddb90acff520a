"""One run's configuration and the table of its options: each option is declared once, on its field below (type,
bounds, help, the preset's default, the environment variable compose passes), and that declaration makes the
command line's parser (`add_options`), the values from the command line, environment and preset (`from_args`) and
the checks the run and the preflight both make before anything starts (`RunConfig.check`).

A run has up to four phases, all through the same backends:
  calibration  the load generator on the matrix's calibration cell, per scenario (lab/calibration.py);
  throughput   `repeats` rounds over every cell in a new random order each round (lab/plan.py): each cell's
               server starts, and each scenario gets a warm-up and one measured repeat; wrk, the referee, runs
               after a point's first repeat and again while Locust ÷ wrk is off (lab/referee_rule.py);
  extra        while `budget_seconds` allows, more rounds for the cells whose comparisons are still undecided, up
               to `max_repeats` (lab/budget.py);
  pairs        in a run of two variants (A/B), `pair_rounds` rounds in which both variants of each cell run at once
               on the server CPUs, fresh each round, and are loaded side by side for `pair_seconds` per scenario
               (lab/pairs.py): the A/B verdict's throughput and CPU per request, measured in the same seconds;
  sweep        every cell at the same offered rates (open model) for `sweep_seconds` each: rates chosen from the
               throughput phase's own figures (lab/sweep.py), or the ones given with --rate;
  stops        `stops` times per cell, its server started fresh, loaded in the open model with short and long
               requests and idle connections, and sent SIGTERM at a set time (lab/lifecycle.py); `restart` (the
               lifecycle command only) sends its restart signal instead and keeps the load on.
The manifest stores the configuration; a resumed run reads it back from there, and the matrix file it names.
"""

from __future__ import annotations

import argparse
import math
import resource
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BeforeValidator, Field, PlainSerializer

from core.errors import UsageError
from core.host import LOOPBACK, check_port, plan_cpus
from core.model import Record
from core.settings import settings
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
SETTLE_SHARE = 0.2  # slices: the first fifth of each slice is not counted (the other side's answers drain then)


@dataclass(frozen=True)
class Option:
    """How a RunConfig field is set and bounded (the field's name gives the flag: --repeats for repeats)."""

    help: str
    flag: str | None = None
    low: float | None = None
    high: float | None = None
    unit: str = ""  # said after a float's bounds
    zero_or_at_least: float | None = None  # 0 turns the thing off; otherwise at least this
    off: str = ""  # what 0 means, for that message
    preset: str | None = None  # the preset's run setting (servers/matrix.toml) that gives the default
    default: Any = None  # or a function of the values resolved so far
    env: str | None = None  # the environment variable (compose passes it) used when the flag is not given
    scale: float = 1.0  # the field's value = the flag's value x scale (minutes -> seconds)
    repeat: bool = False  # the flag may be given several times
    each: str = ","  # what separates a repeatable option's values in its environment variable (spaces do too)
    negate: bool = False  # a flag that turns the field off (--no-calibrate)
    text: bool = False  # the flag takes text that from_args parses (CPU sets and counts, as compose passes them)
    check: Callable[[Any, str], None] | None = None  # a check of its own: (value, flag) -> None or a UsageError


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
        Option("a cell key; repeatable (instead of the preset's)", "--cell", repeat=True, env="CELLS"),
    ]
    scenarios: Annotated[
        list[str], Option("a scenario; repeatable (default: the preset's)", "--scenario", repeat=True, env="SCENARIOS")
    ]
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
        Option("an offered requests/s for the sweep instead of the rates chosen from the run's figures; repeatable",
               "--rate", repeat=True),
    ]  # fmt: skip
    swept: Annotated[
        list[str],
        Option(
            "a scenario the sweep runs; repeatable (default: the preset's, else every scenario of the run)",
            "--sweep-scenario",
            repeat=True,
            env="SWEEP_SCENARIOS",
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
               "(lab/lifecycle.py; 0: none)", low=0, high=MAX_REPEATS, preset="stops"),
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
        Option("minutes for the whole run, extra repeats included", "--budget-minutes", low=0,
               high=MAX_BUDGET_MINUTES, scale=60.0, preset="budget"),
    ]  # fmt: skip
    max_repeats: Annotated[
        int,
        Option("extra repeats stop here", low=1, high=MAX_REPEATS,
               default=lambda v: max(v["preset_max_repeats"], v["repeats"])),
    ]  # fmt: skip
    server_cpus: Annotated[list[int], Option("CPU set for the server (default 0)", env="SERVER_CPUS")]
    load_cpus: Annotated[
        list[int], Option("CPU set for the load generator (default: every CPU but the server's)", env="LOAD_CPUS")
    ]
    load_workers: Annotated[
        int, Option("Locust worker processes (default: one per load CPU)", env="LOCUST_WORKERS", low=1, text=True)
    ]
    port: Annotated[int, Option("server port (with --resume: the run's own)", check=check_port, default=8000)]
    calibrate: Annotated[
        bool, Option("skip measuring the load generator's ceiling", "--no-calibrate", negate=True, default=True)
    ]
    allow_shared_cpus: Annotated[
        bool,
        Option("let the server and the load generator share CPUs (recorded, and warned about in the report)",
               env="LAB_ALLOW_SHARED_CPUS", default=False),
    ]  # fmt: skip
    target_agent: Annotated[
        str | None, Option("run cells under this agent (python -m servers.agent), here or on a target host",
                           "--server-agent")
    ]  # fmt: skip
    locust_master: Annotated[str | None, Option("drive this long-lived Locust master (its web UI)", "--locust-master")]
    target_host: Annotated[
        str,
        Option("the servers' address when it is not loopback: the target host's IP (recorded; every other address "
               "is refused before any traffic)", "--target-host", env="LAB_TARGET_HOST", check=check_target_host,
               default=LOOPBACK),
    ] = LOOPBACK  # fmt: skip
    # --- the run's focus and its variants (bundles from before them have none) ---------------------------------
    servers: Annotated[
        list[str], Option("only the preset's cells of this server; repeatable", "--server", repeat=True, env="SERVERS")
    ] = Field(default_factory=list)
    loops: Annotated[
        list[str], Option("only the preset's cells of this event loop; repeatable", "--loop", repeat=True, env="LOOPS")
    ] = Field(default_factory=list)
    https: Annotated[
        list[str], Option("only the preset's cells of this HTTP implementation; repeatable", "--http", repeat=True)
    ] = Field(default_factory=list)
    apps: Annotated[
        list[str], Option("only the preset's cells of this app; repeatable", "--app", repeat=True, env="APPS")
    ] = Field(default_factory=list)
    variants: Annotated[
        list[VariantSpec],
        Option("NAME=REQUIREMENTS: every cell once more in that package environment (servers/variants.py); "
               "repeatable; NAME= alone is the image's own", "--variant", repeat=True, env="VARIANTS", each=";"),
    ] = Field(default_factory=list)  # fmt: skip
    ab: Annotated[
        str | None,
        Option("A/B: the image's environment (A) against these requirements (B), e.g. uvicorn==0.53.0, on the cells "
               "whose packages they change", "--ab", env="AB"),
    ] = None  # fmt: skip
    pair_rounds: Annotated[
        int,
        Option("A/B: rounds of both variants' servers running at once, each round fresh, loaded side by side (0: "
               f"none; default {PAIR_ROUNDS} in a run of two variants)", low=0, high=MAX_REPEATS, env="PAIR_ROUNDS",
               default=lambda v: PAIR_ROUNDS if len(v["variants"]) == 2 else 0),
    ] = 0  # fmt: skip
    pair_seconds: Annotated[
        float,
        Option("A/B: measured seconds per scenario in each pair round", low=0.5, high=MAX_DURATION, unit="seconds",
               default=5.0),
    ] = 5.0  # fmt: skip
    pair_mode: Annotated[
        PairMode,
        Option("A/B: load both servers of a pair at once (together), or in turn (slices of --slice-seconds)",
               default="together"),
    ] = "together"  # fmt: skip
    slice_seconds: Annotated[
        float,
        Option("A/B: seconds per slice (slices) or per counted bucket (together)", low=MIN_SLICE, high=MAX_SLICE,
               unit="seconds", default=0.1),
    ] = 0.1  # fmt: skip
    fail_if_slower: Annotated[
        float | None,
        Option("exit 3 when B is slower than A by more than this % with 95% confidence (in any cell and scenario)",
               "--fail-if-slower", low=0.01, high=99, unit="%", env="FAIL_IF_SLOWER"),
    ] = None  # fmt: skip
    own_app: Annotated[
        str | None,
        Option("your own ASGI app, MODULE:ATTRIBUTE, under the preset's servers and loops instead of the lab's three "
               "apps (servers/own_app.py)", "--own-app", env="APP"),
    ] = None  # fmt: skip
    own_code: Annotated[
        str | None,
        Option("the folder your app is imported from, with its requests.toml and requirements.txt (default .; in "
               "compose /lab/code, where CODE is mounted)", "--own-code", env="APP_CODE"),
    ] = None  # fmt: skip
    requests: Annotated[
        str | None,
        Option("your app's requests file (default: its folder's requests.toml)", "--requests", env="REQUESTS"),
    ] = None
    own: OwnApp | None = None  # your app as read from those three: the run's matrix has it as the app `own`
    matrix: MatrixRef | None = None  # None in bundles from before it was recorded: they ran on servers/matrix.toml

    # --- the checks -----------------------------------------------------------------------------------------------
    def check(self, matrix: Matrix) -> RunConfig:
        """Every bound and name, before anything starts: a UsageError (or MatrixError) naming the input and a fix."""
        for name, option in options().items():
            value = getattr(self, name)
            for item in value if isinstance(value, list) and option.low is not None else [value]:
                check_bound(option, item)
        if not self.cells:
            raise UsageError("no cells to run")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise UsageError(f"--variant names {names}: give each variant its own name")
        for cell in self.cells:
            matrix.valid(cell)
            if cell.variant and cell.variant not in names:
                raise UsageError(f"cell {cell.key}: no variant {cell.variant!r} in this run (--variant NAME=REQ)")
        if self.fail_if_slower is not None and len(self.variants) != 2:
            raise UsageError("--fail-if-slower compares two variants: give --ab REQ (AB=…) or --variant twice")
        if self.pair_rounds and len(self.variants) != 2:
            raise UsageError("--pair-rounds compares two variants: give --ab REQ (AB=…) or --variant twice")
        if self.pair_rounds and self.port >= 65535:
            raise UsageError(f"--port {self.port}: a run of pairs uses it and the next one; give at most 65534")
        if not self.scenarios:
            raise UsageError("no scenarios to run")
        for name in self.scenarios:
            matrix.scenario(name)
        if self.max_repeats < self.repeats:
            raise UsageError(f"--max-repeats {self.max_repeats} must be in {self.repeats}-{MAX_REPEATS} (>= --repeats)")
        if self.load_workers > 4 * len(self.load_cpus):
            raise UsageError(
                f"--load-workers {self.load_workers} for load CPUs {self.load_cpus}: give 1-{4 * len(self.load_cpus)}"
                " (one per load CPU uses them all)"
            )
        if len(set(self.rates)) != len(self.rates) or any(not (0 < r <= MAX_RATE) for r in self.rates):
            raise UsageError(f"--rate {self.rates}: give distinct offered rates in (0, {MAX_RATE:g}] requests/s")
        few = [r for r in self.rates if r * self.sweep_seconds < MIN_SWEPT]
        if self.sweep_seconds and few:
            offered = few[0] * self.sweep_seconds
            raise UsageError(
                f"--rate {few[0]:g}: a {self.sweep_seconds:g}-s window would be offered {offered:g} requests; give "
                f"rates of at least {MIN_SWEPT / self.sweep_seconds:g} requests/s, or a longer --sweep-seconds"
            )
        if self.rates and not self.sweep_seconds:
            raise UsageError("--rate needs a sweep: give --sweep-seconds (e.g. 3)")
        if not self.server_cpus or not self.load_cpus:
            raise UsageError("the server and the load generator each need at least one CPU")
        if set(self.server_cpus) & set(self.load_cpus) and not (self.allow_shared_cpus or self.two_hosts):
            raise UsageError(
                f"server CPUs {self.server_cpus} and load CPUs {self.load_cpus} overlap; give them disjoint sets so "
                "the client does not compete with the server (or --allow-shared-cpus, LAB_ALLOW_SHARED_CPUS=1)"
            )
        for name in self.scenarios:  # each load on a stand-in target: scenario parameters, client, users, rates
            scenario = matrix.scenario(name)
            if scenario.answer == "given" and scenario.expect is None:  # recorded from the app's first answer
                scenario = scenario.model_copy(update={"expect": Expected.of("", "length", b"")})
            for rate in [0.0, *self.rates]:
                self.load("http://127.0.0.1:1", scenario, rate, self.duration, self.warmup)
            if self.pair_rounds and scenario.method != "WS":
                closed = self.load("http://127.0.0.1:1", scenario, 0.0, self.pair_seconds, self.warmup)
                self.paired(closed, "http://127.0.0.1:2")
        if self.sweep_seconds and self.client != "lean":
            raise UsageError("the sweep runs the open model, which only the lean client has: --sweep-seconds 0")
        check_open_files(self.users, self.load_workers)
        return self

    @property
    def two_hosts(self) -> bool:
        """The servers on another host, under its agent: the two CPU sets are two machines' (the same numbers may
        name different CPUs)."""
        return self.target_agent is not None and self.target_host != LOOPBACK

    @property
    def ports(self) -> list[int]:
        """The servers' ports on 127.0.0.1: one, and the next one for the second server of a pair."""
        return [self.port, self.port + 1] if self.pair_rounds else [self.port]

    def paired(self, load: Load, second: str) -> Load:
        """A closed load made paired: `users` connections to the second server too, shared as the run asks."""
        settle = SETTLE_SHARE * self.slice_seconds if self.pair_mode == "slices" else 0.0
        return Load.model_validate(
            {**load.model_dump(), "group": [{"target": second}], "pair_mode": self.pair_mode,
             "slice_seconds": self.slice_seconds, "settle_seconds": settle}
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


def check_bound(option: Option, value: Any) -> None:
    """One value against its option's bounds, in the words the command line uses."""
    if option.check is not None:
        option.check(value, option.flag or "")
    if option.low is None or not isinstance(value, int | float) or isinstance(value, bool):
        return
    low, high = option.low, option.high if option.high is not None else math.inf
    shown = value / option.scale
    said = f"{shown:g}" if option.scale != 1 else str(value)
    flag = option.flag
    if not (math.isfinite(shown) and low <= shown <= high):
        if isinstance(value, int):
            raise UsageError(f"{flag} {said} must be in {low:g}-{high:g}")
        raise UsageError(f"{flag} {said} must be in [{low:g}, {high:g}]" + (f" {option.unit}" if option.unit else ""))
    if option.zero_or_at_least and 0 < shown < option.zero_or_at_least:
        raise UsageError(f"{flag} {said} must be 0 ({option.off}) or at least {option.zero_or_at_least:g}")


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


def options() -> dict[str, Option]:
    """The option table: every RunConfig field that the command line sets, with its flag filled in."""
    found = {}
    for name, info in RunConfig.model_fields.items():
        option = next((m for m in info.metadata if isinstance(m, Option)), None)
        if option is not None:
            flag = option.flag or "--" + name.replace("_", "-")
            found[name] = Option(**{**vars(option), "flag": flag})
    return found


def choices(name: str) -> tuple[str, ...] | None:
    """A Literal field's values, for the parser."""
    annotation = RunConfig.model_fields[name].annotation
    return get_args(annotation) if get_origin(annotation) is Literal else None


def add_options(parser: argparse.ArgumentParser, matrix: Matrix) -> None:
    """The run's options on a parser, from the table; every default stays None so that from_args can tell what was
    given."""
    said = {"preset": f"one of: {', '.join(matrix.presets)}", "scenarios": f"one of: {', '.join(matrix.scenarios)}"}
    for name, option in options().items():
        kind = RunConfig.model_fields[name].annotation
        help_text = option.help + (f" ({said[name]})" if name in said else "")
        help_text += f"; default: the preset's {option.preset}" if option.preset else ""
        help_text += f"; or {option.env}" if option.env else ""
        help_text = help_text.replace("%", "%%")  # argparse %-formats help
        metavar = option.flag.lstrip("-").split("-")[-1].upper()
        if kind is bool:
            parser.add_argument(option.flag, dest=name, action="store_true", default=None, help=help_text)
        elif option.repeat:
            item = float if name == "rates" else str
            parser.add_argument(
                option.flag, dest=name, action="append", type=item, default=None, metavar=metavar, help=help_text
            )
        else:
            number = str if option.text else int if kind is int else float if kind is float else str
            parser.add_argument(
                option.flag, dest=name, type=number, default=None, choices=choices(name), help=help_text,
                metavar=None if choices(name) else metavar,
            )  # fmt: skip


def from_args(args: argparse.Namespace, matrix: Matrix) -> RunConfig:
    """The run's configuration: each option from the command line, else its environment variable, else the preset,
    else its default; checked."""
    env = settings()

    def given(name: str) -> Any:
        """The option's value from its flag, else its environment variable (a list's items comma-separated)."""
        option, value = options()[name], getattr(args, name)
        if value is None and option.env and (text := env.variable(option.env)) is not None:
            value = [t.strip() for t in str(text).split(option.each) if t.strip()] if option.repeat else text
            value = [t for v in value for t in v.split()] if option.repeat and option.each == "," else value
        return value

    keys = given("cells")
    preset: Preset = matrix.preset(args.preset or ("default" if not keys else "quick"))
    own = None
    if target := given("own_app"):
        code = Path(given("own_code") or ("/lab/code" if env.in_container else "."))
        own = OwnApp.read(target, code, Path(r) if (r := given("requests")) else None)
        matrix = with_own(matrix, own)
    focus = {axis: given(name) or [] for axis, name in FOCUS.items()}
    cells = [matrix.cell_from_key(k) for k in keys] if keys else list(preset.cells)
    if own:  # the preset's servers and loops, each once, running your app; over HTTP/1.1 unless h2c is asked for
        cells = list(dict.fromkeys(c.model_copy(update={"app": OWN}) for c in cells))
        cells = [c for c in cells if c.http not in matrix.http2 or focus.get("http")]
    cells = focused(cells, focus, matrix, preset)
    named = args.target_host or env.variable("LAB_TARGET_HOST")  # another host's: its CPUs are the agent's to check
    cpus = plan_cpus(
        args.server_cpus or env.variable("SERVER_CPUS"),
        args.load_cpus or env.variable("LOAD_CPUS"),
        args.load_workers if args.load_workers is not None else env.variable("LOCUST_WORKERS"),
        remote=bool(args.target_agent) and named not in (None, LOOPBACK),
    )
    if not keys:  # a preset's cells: on a bigger machine, its multi-worker twins too (lab/scale.py)
        cells = scale.multi_worker(cells, cpus.server, matrix)
    ab, variants = given("ab"), [variant_of(v) for v in given("variants") or []]
    if ab and variants:
        raise UsageError("give --ab (AB) or --variant (VARIANTS), not both")
    if ab:
        variants = [Variant(name=AB_NAMES[0], requirements=[]), Variant.parse(f"{AB_NAMES[1]}={ab}")]
    if variants:
        cells = touched(cells, variants, matrix) if not keys and not any(focus.values()) else cells
        # A key that names its variant (KEY@B) runs in that one only; the others run in every variant.
        cells = [
            x
            for c in cells
            for x in ([c] if c.variant else [c.model_copy(update={"variant": v.name}) for v in variants])
        ]
    slower = given("fail_if_slower")
    try:
        slower = float(slower) if slower is not None else None
    except ValueError:
        raise UsageError(f"--fail-if-slower / FAIL_IF_SLOWER {slower!r}: give a percentage, e.g. 2") from None
    scenarios = list(given("scenarios") or (own.scenarios if own else preset.scenarios))
    values: dict[str, Any] = {
        "preset": None if keys else preset.name,
        "cells": cells,
        "scenarios": scenarios,
        "own": own,
        **{name: list(focus[axis]) for axis, name in FOCUS.items()},
        "variants": variants,
        "ab": ab,
        "fail_if_slower": slower,
        "rates": list(args.rates or []),
        "swept": swept_of(given("swept"), preset.run.swept, scenarios),
        "server_cpus": list(cpus.server),
        "load_cpus": list(cpus.load),
        "load_workers": cpus.workers,
        "preset_max_repeats": preset.run.max_repeats,
    }
    for name, option in options().items():
        if name in values:
            continue
        given = getattr(args, name)
        if given is not None:
            value = given * option.scale if isinstance(given, float) else given
            values[name] = not given if option.negate else value
        elif option.env and (text := env.variable(option.env)) is not None:
            kind = RunConfig.model_fields[name].annotation
            if kind is int and not str(text).isdigit():
                raise UsageError(f"{option.env}={text!r}: give a whole number, e.g. 10")
            values[name] = text
        elif option.preset:
            value = getattr(preset.run, option.preset)
            values[name] = float(value) * option.scale if RunConfig.model_fields[name].annotation is float else value
        else:
            values[name] = option.default(values) if callable(option.default) else option.default
    del values["preset_max_repeats"]
    source = matrix.source
    ref = MatrixRef(path=str(source), digest=matrix.digest) if source else None
    return RunConfig(**values, matrix=ref).check(matrix)


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

    def packages(c: Cell) -> set[str]:
        s = matrix.servers[c.server]
        names = [*s.packages, *s.http_packages[c.http], *matrix.loops[c.loop].packages, *matrix.apps[c.app].packages]
        return {canonicalize_name(n) for n in names}

    kept = [c for c in cells if packages(c) & projects]
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
