"""Compare two result bundles, e.g. the same preset on two machines or on two days: python -m lab compare A B

What a reader needs to know when reproducing, from the two runs' analyses (lab/analysis/analyze.py): first whether
they agree — for every ratio measured side by side in both, whether B's lies inside A's interval and how far apart
they are; for every conclusion A states, whether B says the same (held), the opposite (flipped), or that the
difference is inside B's noise; the limit verdicts; each server's stops — then per app and scenario which orders of
the stacks held and which depend on the machine; how well the two rank the cells (Kendall's tau); and for every cell
in both, the RPS B/A as measured and divided by how fast the two runs' server CPUs ran (the speedometer's samples over
every throughput window when both runs have them, else the speed index), so that a faster machine is not mistaken for
a faster server. Writes compare.md, compare.csv and a chart per scenario.
"""

from __future__ import annotations

import csv
import io
import math
import textwrap
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from scipy import stats as scipy_stats

from core.errors import say
from core.host import atomic_write
from lab.analysis.analyze import Analysis, analyze
from lab.analysis.comparisons import between
from lab.analysis.labels import app_title
from lab.analysis.stats import Paired
from lab.analysis.stops import ServerStops, outcomes
from lab.bundle import load_bundle
from lab.report import findings
from lab.report.charts import DPI, KILO_TICKS, SVG_METADATA, Style
from lab.report.pages import key_packages
from servers.matrix import Cell, Matrix, load

FIELDS = ["scenario", "key", "offered_rps", "rps_a", "rps_b", "rps_ratio", "rps_ratio_normalized", "p99_us_a",
          "p99_us_b", "p99_ratio", "server_cpus_us_a", "server_cpus_us_b", "limit_a", "limit_b", "label"]  # fmt: skip


def _ratio(b: float | None, a: float | None) -> float | None:
    return round(b / a, 3) if a and b is not None else None


def fingerprint_line(a: Analysis) -> str:
    """The run's machine, CPU sets and speed (in its throughput windows, when the speedometer sampled them)."""
    m = a.manifest.machine
    speed = a.manifest.speed
    windows = ""
    if a.window_speed:
        during = a.window_speed
        windows = f", server CPU speed in its windows {during[0]:,.0f} inserts/CPU-s ({during[1]:,} samples)"
    return (
        f"{a.run_id}: {m.cpu_model}, {m.logical_cpus} CPUs, {m.memory_bytes / 2**30:.0f} GiB, {m.os}, "
        f"kernel {m.kernel}, Python {m.python}, server CPUs {a.manifest.config.server_cpus}, "
        f"load CPUs {a.manifest.config.load_cpus}, machine {m.machine_id}"
        + (
            f", speed index {speed.server_ops:,.0f} ops/s (median of {len(speed.server_samples)}: "
            f"{min(speed.server_samples):,.0f}–{max(speed.server_samples):,.0f})"
            if speed
            else ""
        )
        + windows
    )


def speed_ratio(a: Analysis, b: Analysis) -> tuple[float, str] | None:
    """How much faster B's server CPUs ran than A's, and by which measure: during the throughput windows (the
    speedometer) when both runs have it, else the speed index."""
    if a.window_speed and b.window_speed:
        return b.window_speed[0] / a.window_speed[0], "server CPU speed in the throughput windows"
    sa, sb = a.manifest.speed, b.manifest.speed
    if sa and sb and sa.server_ops:
        return sb.server_ops / sa.server_ops, "speed index"
    return None


@dataclass(frozen=True)
class Row:
    """A point in both runs (as measured: the medians of the repeats)."""

    scenario: str
    key: str
    offered_rps: float | None
    rps_a: float
    rps_b: float
    rps_ratio: float | None
    rps_ratio_normalized: float | None
    p99_us_a: int | None
    p99_us_b: int | None
    p99_ratio: float | None
    server_cpus_us_a: float | None
    server_cpus_us_b: float | None
    limit_a: str
    limit_b: str
    label: str
    cell: Cell


@dataclass(frozen=True)
class Conclusion:
    scenario: str
    changes: tuple[str, ...]
    cells: tuple[str, str]
    said_a: str
    said_b: str
    status: str  # held, flipped, became indistinguishable, became significant, indistinguishable in both


@dataclass(frozen=True)
class Ratios:
    """One ratio measured side by side in both runs: A's with its interval, B's, and how far B's is from A's."""

    scenario: str
    cells: tuple[str, str]  # the labels, in A's order: the ratio is the second ÷ the first
    a: Paired
    b: Paired

    @property
    def inside(self) -> bool:
        """B's ratio lies inside A's 95% interval."""
        return self.a.covers(self.b.ratio)

    @property
    def apart_pct(self) -> float:
        """B's ratio against A's, in %."""
        return 100 * (self.b.ratio / self.a.ratio - 1)

    @property
    def agree(self) -> bool:
        """The two ratios differ by less than their combined 95% interval (each run's half-width in log, added in
        quadrature): what two runs of a calibrated instrument do about 95% of the time."""
        if not (self.a.measurable and self.b.measurable):
            return False
        ha, hb = math.log(self.a.high / self.a.low) / 2, math.log(self.b.high / self.b.low) / 2
        return abs(math.log(self.b.ratio / self.a.ratio)) <= math.hypot(ha, hb)


@dataclass(frozen=True)
class Order:
    """One app and scenario: which pairs of stacks kept their order, and which swapped between the runs."""

    scenario: str
    app: str
    title: str  # the app's, as reports name it
    held: int  # pairs told apart the same way in both runs
    pairs: int
    flipped: tuple[tuple[str, str, float, float], ...]  # (x, y, y ÷ x in A, in B): told apart in both, the other way

    def sentence(self) -> str:
        head = f"{self.title}, {self.scenario}: "
        if not self.flipped:
            return head + f"the same order in both runs ({self.held} of {self.pairs} pairs told apart in both)."
        said = "; ".join(f"{y} ÷ {x}: A {ra:.2f}×, B {rb:.2f}×" for x, y, ra, rb in self.flipped)
        return head + f"the order depends on the machine — {said} ({self.held} of {self.pairs} pairs held)."


@dataclass(frozen=True)
class Agreement:
    """What says whether two runs of one preset agree, before any single figure: the side-by-side ratios, the
    conclusions, the limit verdicts, each run's median interval, and what each server's stops under load did."""

    ratios: tuple[Ratios, ...]
    conclusions: tuple[int, int, int]  # significant in both and the same way, flipped, stated in both
    limits: tuple[int, int]  # throughput points with the same limit verdict, points in both
    moved: tuple[str, ...]  # the points whose verdict moved: "label scenario: A x, B y"
    half_width: tuple[float | None, float | None]  # each run's median 95% half-width of its ratios, %
    stops: tuple[tuple[str, ServerStops | None, ServerStops | None], ...]  # per server with stops in either run

    def lines(self) -> list[str]:
        held, flipped, stated = self.conclusions
        a, b = (f"±{w:.1f}%" if w is not None else "n/a" for w in self.half_width)
        n = len(self.ratios)
        agree, inside = sum(r.agree for r in self.ratios), sum(r.inside for r in self.ratios)
        apart = sorted(abs(r.apart_pct) for r in self.ratios)
        out = [
            f"- Ratios measured side by side in both runs: {n}; B's within the combined 95% interval of the two on "
            f"{agree} ({100 * agree / n:.0f}%), inside A's own interval on {inside}; B ÷ A of a ratio: median "
            f"{apart[len(apart) // 2]:.1f}% apart, the most {apart[-1]:.1f}%." if n else
            "- Ratios measured side by side in both runs: none.",
            f"- Conclusions: {held} of {stated} stated in both significant and the same way in both, {flipped} "
            "flipped.",
            f"- Limit verdict: the same on {self.limits[0]} of {self.limits[1]} throughput points"
            + (f" ({'; '.join(self.moved)})." if self.moved else "."),
            f"- Median 95% CI half-width of the ratios: A {a}, B {b}.",
        ]  # fmt: skip
        out += [stop_line(server, x, y) for server, x, y in self.stops]
        return out


def stop_line(server: str, x: ServerStops | None, y: ServerStops | None) -> str:
    if x is None or y is None:
        return f"- Stopping under load, {server}: stopped in {'A' if x else 'B'} only."
    kx, ky = x.kinds(), y.kinds()
    lost = f"lost per stop A {min(x.lost)}-{max(x.lost)}, B {min(y.lost)}-{max(y.lost)}"
    if kx == ky:
        said = f"the same outcome ({x.stops} and {y.stops} stops): {x.outcome()}; {lost}"
    else:
        said = "a different outcome: " + "; ".join(
            f"{fact} A {x.extent(fact)}, B {y.extent(fact)}" for fact in kx if kx[fact] != ky[fact]
        )
        said += f"; {lost}"
    return f"- Stopping under load, {server}: {said}."


def ratios_in_both(a: Analysis, b: Analysis) -> list[Ratios]:
    """Every comparison stated in both runs, B's turned to A's order."""
    in_b = {(s.paired.scenario, frozenset((s.paired.a, s.paired.b))): s.paired for s in b.comparisons}
    out = []
    for s in a.comparisons:
        pa = s.paired
        pb = in_b.get((pa.scenario, frozenset((pa.a, pa.b))))
        if pb is not None:
            out.append(Ratios(pa.scenario, (s.a, s.b), pa, pb if pb.a == pa.a else pb.turned()))
    return out


def agreement(a: Analysis, b: Analysis, rows: list[Row], said: list[Conclusion]) -> Agreement:
    closed = [r for r in rows if not r.offered_rps]
    moved = tuple(f"{r.label} {r.scenario}: A {r.limit_a}, B {r.limit_b}" for r in closed if r.limit_a != r.limit_b)
    in_a, in_b = outcomes(a.stops), outcomes(b.stops)
    return Agreement(
        tuple(ratios_in_both(a, b)),
        (sum(c.status == "held" for c in said), sum(c.status == "flipped" for c in said), len(said)),
        (len(closed) - len(moved), len(closed)),
        moved,
        (a.half_width_pct, b.half_width_pct),
        tuple((s, in_a.get(s), in_b.get(s)) for s in sorted(in_a.keys() | in_b.keys())),
    )


@dataclass(frozen=True)
class Compared:
    a: str  # fingerprint lines
    b: str
    speed_ratio: float | None
    speed_measure: str | None
    rows: tuple[Row, ...]
    conclusions: tuple[Conclusion, ...]
    orders: tuple[Order, ...]
    ranks: dict[str, tuple[float | None, int]]  # scenario -> (Kendall's tau, cells)
    warnings: tuple[str, ...]
    matrix: Matrix
    agreement: Agreement


def conclusions(a: Analysis, b: Analysis) -> list[Conclusion]:
    """Each comparison stated in A, and what became of it in B."""
    in_b = {(s.paired.scenario, frozenset((s.paired.a, s.paired.b))): s for s in b.comparisons}
    out = []
    for sa in a.comparisons:
        pa = sa.paired
        sb = in_b.get((pa.scenario, frozenset((pa.a, pa.b))))
        if sb is None:
            continue
        fa, fb = sa.verdict, sb.verdict
        if fa and fb:
            status = "held" if fa == fb else "flipped"
        elif fa:
            status = "became indistinguishable"
        elif fb:
            status = "became significant"
        else:
            status = "indistinguishable in both"
        said = findings.verdict_text
        out.append(Conclusion(pa.scenario, sa.changes, (pa.a, pa.b), said(sa), said(sb), status))
    return out


def orders(a: Analysis, b: Analysis) -> list[Order]:
    """Per app and scenario in both: a pair flipped when both runs told it apart, the other way round."""
    out = []
    for ra in a.rankings:
        rb = b.ranking(ra.scenario, ra.app)
        if rb is None:
            continue
        stacks = {s.key: s.stack for s in ra.stacks if any(t.key == s.key for t in rb.stacks)}
        held, flipped, pairs = 0, [], 0
        for x, y in combinations(stacks, 2):
            pairs += 1
            pa, pb = between(a.comparisons, ra.scenario, x, y), between(b.comparisons, ra.scenario, x, y)
            if pa is None or pb is None or not (pa.significant and pb.significant):
                continue
            if (pa.ratio > 1) == (pb.ratio > 1):
                held += 1
            else:
                flipped.append((stacks[x], stacks[y], pa.ratio, pb.ratio))
        out.append(Order(ra.scenario, ra.app, app_title(ra.app, a.matrix), held, pairs, tuple(flipped)))
    return out


def rank_agreement(rows: list[Row], scenario: str) -> tuple[float | None, int]:
    """Kendall's tau between the two runs' medians of the cells both have (1 = the same order)."""
    mine = [r for r in rows if r.scenario == scenario and not r.offered_rps]
    if len(mine) < 2:
        return None, len(mine)
    tau = scipy_stats.kendalltau([r.rps_a for r in mine], [r.rps_b for r in mine]).statistic
    return (round(float(tau), 3) if not math.isnan(tau) else None), len(mine)


def compare(a: Analysis, b: Analysis) -> Compared:
    measured = speed_ratio(a, b)
    speed = measured[0] if measured else None
    by_b = {(p.key, p.scenario, p.offered): p for p in b.points if p.ok}
    rows = []
    for p in a.points:
        q = by_b.get((p.key, p.scenario, p.offered))
        if q is None or not p.ok:
            continue
        ratio = _ratio(q.median, p.median)
        rows.append(
            Row(
                p.scenario, p.key, p.offered or None, p.median, q.median, ratio,
                round(ratio / speed, 3) if ratio is not None and speed else None, p.p99_us, q.p99_us,
                _ratio(q.p99_us, p.p99_us), p.server_cpus_us, q.server_cpus_us, p.shown_limit, q.shown_limit, p.label,
                p.cell,
            )
        )  # fmt: skip
    warnings = []
    keys_a = {(p.key, p.scenario, p.offered) for p in a.points if p.ok}
    for label, only in (("A", keys_a - by_b.keys()), ("B", by_b.keys() - keys_a)):
        named = [f"{key} {scenario}" for key, scenario, _ in sorted(k for k in only if not k[2])]
        if len(named) > 3:  # e.g. the cells with 2 workers a run on two server CPUs adds: one line, not dozens
            warnings.append(f"only in {label}: {len(named)} points ({', '.join(named[:3])}, …)")
        else:
            warnings += [f"only in {label}: {n}" for n in named]
    for scenario in sorted({s for _, s, offered in keys_a | by_b.keys() if offered}):
        rates_a = sorted({o for _, s, o in keys_a if s == scenario and o})
        rates_b = sorted({o for _, s, o in by_b if s == scenario and o})
        if rates_a != rates_b:  # each run chooses its sweep's rates from its own figures
            shared = sorted(set(rates_a) & set(rates_b))
            warnings.append(
                f"sweep rates differ in {scenario}: A {', '.join(f'{r:g}' for r in rates_a) or 'none'}; B "
                f"{', '.join(f'{r:g}' for r in rates_b) or 'none'}; cells compared at "
                + (", ".join(f"{r:g}" for r in shared) if shared else "no common rate")
            )
    va, vb = a.manifest.versions, b.manifest.versions
    for package in (*key_packages(a.matrix), "python"):
        left = a.manifest.machine.python if package == "python" else va.get(package)
        right = b.manifest.machine.python if package == "python" else vb.get(package)
        if left != right:
            warnings.append(f"version differs: {package} {left} (A) vs {right} (B)")
    scenarios = [s for s in a.matrix.scenarios if any(r.scenario == s and not r.offered_rps for r in rows)]
    said = conclusions(a, b)
    return Compared(
        fingerprint_line(a), fingerprint_line(b), round(speed, 3) if speed else None,
        measured[1] if measured else None, tuple(rows), tuple(said), tuple(orders(a, b)),
        {s: rank_agreement(rows, s) for s in scenarios}, tuple(warnings), a.matrix, agreement(a, b, rows, said),
    )  # fmt: skip


def write(result: Compared, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(asdict(r) for r in result.rows)
    atomic_write(out / "compare.csv", table.getvalue())
    files = [out / "compare.csv"]
    said = result.conclusions
    counts = {s: sum(c.status == s for c in said) for s in dict.fromkeys(c.status for c in said)}
    md = ["# Comparison", "", f"- A: {result.a}", f"- B: {result.b}"]
    if result.speed_ratio:
        md.append(f"- speed B/A ({result.speed_measure}): {result.speed_ratio}")
    md += ["", "## The bottom line in both runs", ""]
    md += [f"- {o.sentence()}" for o in result.orders] or ["No app and scenario in both."]
    md += ["", "## Do the two runs agree?", "", *result.agreement.lines()]
    md += ["", "## Conclusions", ""]
    md += [
        f"Of {len(said)} comparisons: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + "." if said else "None."
    ]
    md += ["", "| scenario | what changes | A says | B says | |", "|---|---|---|---|---|"]
    md += [f"| {c.scenario} | {' + '.join(c.changes)} | {c.said_a} | {c.said_b} | {c.status} |" for c in said]
    md += ["", "## Rank agreement of the cells (Kendall's tau; 1 = the same order)", ""]
    for scenario, (tau, n) in result.ranks.items():
        md.append(f"- {scenario}: tau {tau if tau is not None else 'n/a'} over {n} cells")
    md += ["", "## Warnings", ""] + ([f"- {w}" for w in result.warnings] or ["None."])
    header = "| scenario | cell | RPS A | RPS B | B/A | B/A ÷ speed | p99 µs A | p99 µs B | limit A | limit B |"
    md += ["", "## Cells in both (medians as measured)", "", header, "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in result.rows:
        offered = f" @{r.offered_rps:g}" if r.offered_rps else ""
        md.append(
            f"| {r.scenario}{offered} | {r.label} | {r.rps_a:,.0f} | {r.rps_b:,.0f} | {r.rps_ratio} "
            f"| {r.rps_ratio_normalized} | {r.p99_us_a} | {r.p99_us_b} | {r.limit_a} | {r.limit_b} |"
        )
    atomic_write(out / "compare.md", "\n".join(md) + "\n")
    files.append(out / "compare.md")
    for scenario in result.ranks:
        files += draw(result, scenario, out)
    return files


def draw(result: Compared, scenario: str, out: Path) -> list[Path]:
    """Per cell: RPS in A (filled) and B (open) in the stack's colour, and B/A on a log axis centred on 1."""
    rows = [r for r in result.rows if r.scenario == scenario and not r.offered_rps]
    style = Style.of(result.matrix)
    apps = list(result.matrix.apps)
    rows.sort(key=lambda r: (apps.index(r.cell.app) if r.cell.app in apps else 99, -r.rps_a))
    fig, (ax, ratio) = plt.subplots(1, 2, figsize=(13, max(4.0, 0.27 * len(rows) + 2.2)), sharey=True,
                                    gridspec_kw={"width_ratios": [3, 2]})  # fmt: skip
    ys = list(range(len(rows)))
    for y, r in zip(ys, rows, strict=True):
        c = style.colour(r.cell)
        ax.plot([r.rps_a, r.rps_b], [y, y], color=c, linewidth=1, alpha=0.6)
        ax.plot(r.rps_a, y, "o", color=c, markersize=6)
        ax.plot(r.rps_b, y, "o", markerfacecolor="white", markeredgecolor=c, markersize=6, markeredgewidth=1.5)
        if r.rps_ratio:
            ratio.barh(y, math.log(r.rps_ratio), left=0, color="#c8c8c8", height=0.6)
        if r.rps_ratio_normalized:
            ratio.plot(math.log(r.rps_ratio_normalized), y, "D", color=c, markersize=5)
    ax.set_yticks(ys, [r.label for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(left=0)
    ax.xaxis.set_major_formatter(KILO_TICKS)
    ax.set_xlabel("requests/s (median as measured)", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    logs = [abs(math.log(v)) for r in rows for v in (r.rps_ratio, r.rps_ratio_normalized) if v]
    span = max([*logs, math.log(1.1)]) * 1.15
    ratio.set_xlim(-span, span)  # centred on 1: as far each way
    ticks = [t for t in (0.5, 0.67, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0) if abs(math.log(t)) <= span]
    ratio.set_xticks([math.log(t) for t in ticks], [f"{t:g}" for t in ticks], fontsize=7.5)
    ratio.axvline(0, color="black", linewidth=0.8)
    ratio.set_xlabel("B / A (log scale, 1 = the same)", fontsize=8)
    ratio.grid(axis="x", alpha=0.3)
    handles = [
        Line2D([], [], marker="o", linestyle="", color="#555555", label="A"),
        Line2D([], [], marker="o", linestyle="", markerfacecolor="white", markeredgecolor="#555555", label="B"),
        matplotlib.patches.Patch(color="#c8c8c8", label="B/A as measured"),
    ]
    if result.speed_ratio:
        handles.append(Line2D([], [], marker="D", linestyle="", color="#555555",
                              label=f"B/A ÷ the CPUs' speed ratio ({result.speed_ratio:g})"))  # fmt: skip
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.075))  # fmt: skip
    tau, n = result.ranks[scenario]
    fig.suptitle(f"{scenario}: run B against run A, cell by cell (Kendall's tau {tau} over {n} cells)", fontsize=11)
    runs = "\n".join(textwrap.wrap(f"A = {result.a}", 250) + textwrap.wrap(f"B = {result.b}", 250))
    fig.text(0.01, 0.005, runs, fontsize=6, color="#555555", va="bottom")
    fig.tight_layout(rect=(0, 0.13, 1, 0.97))
    files = []
    fig.savefig(out / f"compare-{scenario}.png", dpi=DPI)
    fig.savefig(out / f"compare-{scenario}.svg", metadata=SVG_METADATA)
    files += [out / f"compare-{scenario}.png", out / f"compare-{scenario}.svg"]
    plt.close(fig)
    return files


def main(path_a: Path, path_b: Path, out: Path | None = None) -> int:
    """python -m lab compare A B [--out DIR]"""
    bundle_a, bundle_b = load_bundle(path_a), load_bundle(path_b)  # a BundleError is the command line's one line
    matrix = load()
    result = compare(analyze(bundle_a, matrix), analyze(bundle_b, matrix))
    out = out or path_a.parent / f"compare-{bundle_a.run_id}-vs-{bundle_b.run_id}"
    for path in write(result, out):
        print(path)
    for warning in result.warnings:
        say(f"warning: {warning}")
    return 0
