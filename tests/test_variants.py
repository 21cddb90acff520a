"""Variants (servers/variants.py), A/B runs and a run's focus: environments built once and used, the A/B verdict
paired by round with its group's noise, and every bad setting refused in one line before anything starts."""

from __future__ import annotations

import math
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import UsageError
from core.host import ROOT, free_port
from lab import bundle, config
from lab.analysis import side_by_side, stats
from loadtests.load import Latency, PairResult, SideResult
from servers.local import LocalTargets
from servers.matrix import Cell, MatrixError, load
from servers.variants import Variant, VariantError, check, prepare
from tests.test_runner import lab_run, only_run

OLD_UVICORN = "uvicorn==0.53.0"  # the release before the pinned 0.54.0
CELL = "uvicorn-asyncio-h11-w1-raw"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("variants")


def test_a_cell_key_names_its_variant() -> None:
    cell = Cell.parse(f"{CELL}@B")
    assert cell.variant == "B" and cell.key == f"{CELL}@B" and cell.base.key == CELL
    assert load().valid(cell) == cell
    assert Cell.parse(f"{CELL}@").variant == ""  # "@" alone: the image's own environment
    for bad in (f"{CELL}@a@b", f"{CELL}@no/slash", f"{CELL}@-x"):
        with pytest.raises(MatrixError, match="variant name"):
            Cell.parse(bad)


def test_variants_parse_and_say_which_packages_they_change(tmp_path: Path) -> None:
    assert Variant.parse("B=uvicorn==0.53.0, h11==0.16.0") == Variant(
        name="B", requirements=["uvicorn==0.53.0", "h11==0.16.0"]
    )
    assert Variant.parse("A=").requirements == []
    assert Variant.parse("B=Uvicorn[standard]>=0.50").projects() == {"uvicorn"}
    project = tmp_path / "checkout"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "My_Server"\nversion = "1"\n')
    assert Variant.parse(f"B={project}").projects() == {"my-server"}
    assert Variant.parse("B=git+https://example.invalid/x.git").projects() == set()
    for bad in ("uvicorn==0.53.0", "B/x=uvicorn", "=uvicorn"):
        with pytest.raises(UsageError, match="NAME=REQUIREMENTS"):
            Variant.parse(bad)


def test_ab_runs_the_cells_its_package_touches_in_both_variants() -> None:
    m = load()
    c = config.parse(["--ab", OLD_UVICORN], m)
    assert c.ab_pair == ("A", "B") and c.variants[0].requirements == [] and c.variants[1].requirements == [OLD_UVICORN]
    assert {cell.server for cell in c.cells} == {"uvicorn"} and {cell.variant for cell in c.cells} == {"A", "B"}
    assert len(c.cells) == 2 * len([x for x in m.preset("default").cells if x.server == "uvicorn"])
    asked = config.parse(["--variant", "A=", "--variant", "B=granian==2.8.6", "--server", "granian", "--app", "raw"], m)
    assert sorted(asked.keys) == sorted(f"{x.key}@{v}" for x in m.preset("default").cells
                                        if (x.server, x.app) == ("granian", "raw") for v in "AB")  # fmt: skip
    focus = config.parse(["--server", "granian", "--server", "uvicorn", "--app", "fastapi", "--scenario", "json"], m)
    assert {x.server for x in focus.cells} == {"granian", "uvicorn"} and {x.app for x in focus.cells} == {"fastapi"}
    assert focus.scenarios == ["json"] and focus.variants == []


def test_the_focus_and_variants_come_from_compose_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVERS", "granian, uvicorn")
    monkeypatch.setenv("APPS", "fastapi")
    monkeypatch.setenv("SCENARIOS", "json")
    monkeypatch.setenv("VARIANTS", "A=uvicorn==0.54.0;B=uvicorn==0.54.0")
    monkeypatch.setenv("FAIL_IF_SLOWER", "2.5")
    c = config.parse([], load())
    assert c.servers == ["granian", "uvicorn"] and c.apps == ["fastapi"] and c.scenarios == ["json"]
    assert [v.text for v in c.variants] == ["A=uvicorn==0.54.0", "B=uvicorn==0.54.0"] and c.fail_if_slower == 2.5


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--server", "nginx"], "unknown server 'nginx'; valid: uvicorn, hypercorn, granian"),
        (
            ["--server", "hypercorn", "--loop", "rloop"],
            "no cell of preset 'default' has server hypercorn and loop rloop",
        ),
        (["--ab", OLD_UVICORN, "--variant", "C=x"], "give --ab (AB) or --variant (VARIANTS), not both"),
        (["--fail-if-slower", "3"], "--fail-if-slower compares two variants"),
        (["--ab", "starlette==0.40.0", "--cell", "granian-uvloop-hyper-w1-raw@C"], "no variant 'C' in this run"),
        (["--variant", "A=", "--variant", "A=h11"], "give each variant its own name"),
        (["--ab", "pydantic-core==2.0"], "no cell of this run uses pydantic-core"),
        (["--ab", OLD_UVICORN, "--fail-if-slower", "200"], "--fail-if-slower 200.0 must be in [0.01, 99] %"),
    ],
)
def test_bad_focus_and_variants_are_refused_in_one_line(argv: list[str], said: str) -> None:
    with pytest.raises(UsageError) as raised:
        config.parse(argv, load())
    assert said in str(raised.value) and "\n" not in str(raised.value)


def test_paired_ab_holds_its_false_positive_rate_on_the_noisiest_group() -> None:
    """Synthetic A/A runs: granian's pairs calm (1%), hypercorn's noisy (12%); at 95% about 5% of the verdicts may
    be significant, on each server. Pooled over the run, hypercorn's would come out far more often."""
    rng = random.Random(7)
    hits: dict[str, int] = {"granian": 0, "hypercorn": 0}
    runs = 200
    for _ in range(runs):
        for server, sd in (("granian", 0.01), ("hypercorn", 0.12)):
            for app in ("raw", "starlette", "fastapi"):
                base = f"{server}-{app}"
                drift = [rng.gauss(0, 0.2) for _ in range(5)]  # the round moves both sides alike
                a, b = ([1000 * math.exp(drift[r] + rng.gauss(0, sd)) for r in range(5)] for _ in "AB")
                logs = [math.log(y / x) for x, y in zip(a, b, strict=True)]
                hits[server] += stats.side_by_side("plaintext", f"{base}@A", f"{base}@B", logs).significant
    for server, n in hits.items():
        assert n / (3 * runs) < 0.09, (server, n)  # 5% expected; 9% is 3 standard errors above it
    slower = {r: 1000 * math.exp(0.002 * (-1) ** r) for r in range(6)}
    b = {r: 0.96 * v for r, v in slower.items()}
    found = stats.side_by_side("json", "x@A", "x@B", [math.log(b[r] / slower[r]) for r in range(6)])
    assert (
        found.significant and found.slower_than(3) and not found.slower_than(5) and found.ratio == pytest.approx(0.96)
    )


def test_a_variant_environment_is_built_once_and_its_server_runs_from_it(cache: Path, tmp_path: Path) -> None:
    a, b = prepare([Variant.parse("A="), Variant.parse(f"B={OLD_UVICORN}")], cache)
    assert a.python == sys.executable and a.own == {} and a.folder is None
    assert b.own == {"uvicorn": "0.53.0"} and not b.cached and Path(b.python).exists()
    (again,) = prepare([Variant.parse(f"B={OLD_UVICORN}")], cache)
    assert again.cached and again.python == b.python and again.install_seconds < 5
    (twin,) = prepare([Variant.parse("B2=uvicorn==0.54.0")], cache)  # the image's version: installed all the same,
    assert twin.folder != b.folder and twin.own == {"uvicorn": "0.54.0"}  # so an A/A's two sides are two installs
    targets = LocalTargets(tmp_path, matrix=load(), variants_dir=cache)
    assert [e.cached for e in targets.prepare([Variant.parse("A="), Variant.parse(f"B={OLD_UVICORN}")])] == [True] * 2
    for variant, expected in (("A", "0.54.0"), ("B", "0.53.0")):
        with targets.serve(Cell.parse(f"{CELL}@{variant}"), free_port()) as server:
            assert server.report.versions["uvicorn"] == expected
            assert server.report.argv[0] == (sys.executable if variant == "A" else b.python)


def test_bad_variants_are_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(VariantError, match=re.escape("uvicorn==0.0.999")):
        check([Variant.parse("B=uvicorn==0.0.999")])
    with pytest.raises(VariantError, match="does not exist on the target side"):
        check([Variant.parse(f"B={tmp_path / 'no-checkout'}")])
    results = tmp_path / "results"
    done = lab_run("--ab", "no-such-package-asgi-bench-lab==1.0", "--cell", f"{CELL}", results=results)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "variant B" in line and "no-such-package-asgi-bench-lab" in line
    assert not results.exists() or not any(results.iterdir())


def test_an_ab_run_finds_a_known_slowdown_side_by_side_states_it_first_and_fails_the_gate(
    cache: Path, tmp_path: Path
) -> None:
    """A/B through the runner on one quick cell, B the pinned uvicorn with a fixed amount of work added to every
    request (scripts/slow_variant.py): pair rounds with both variants' servers at once, a throughput round with each
    alone, each side's environment recorded, the verdict first in the headline and the report, and --fail-if-slower
    exits 3 (only when the whole interval is below its bound: test_paired_ab_holds_its_false_positive_rate…)."""
    slow = tmp_path / "uvicorn-slow"
    made = subprocess.run(
        [sys.executable, "scripts/slow_variant.py", "--loops", "3000", "--out", str(slow)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    env = {**os.environ, "LAB_VARIANTS": str(cache)}
    short = ["--scenario", "plaintext", "--repeats", "1", "--duration", "1", "--warmup", "0.5", "--users", "8",
             "--referee-seconds", "0", "--sweep-seconds", "0", "--no-calibrate", "--pair-rounds", "3",
             "--pair-seconds", "1", "--fail-if-slower", "5"]  # fmt: skip
    done = lab_run("--ab", str(slow), "--cell", CELL, *short, results=tmp_path / "results", env=env)
    assert done.returncode == 3, done.stderr
    run = bundle.load_bundle(only_run(tmp_path / "results"))
    assert run.manifest.status == "complete" and [e.variant for e in run.manifest.environments] == ["A", "B"]
    assert run.manifest.environments[1].sources[0].path == str(slow)
    assert {r.key for r in run.repeats} == {f"{CELL}@A", f"{CELL}@B"}
    assert sorted((p.key, p.round) for p in run.groups) == [(CELL, n) for n in (1, 2, 3)]  # the pair rounds
    for p in run.groups:
        assert p.ok and [c.variant for c in p.cells] == ["A", "B"], p.failure
        a, b = p.load.group.sides
        assert a.ok > 0 and b.ok > 0 and all(s.cpu_seconds > 0 for s in p.servers)
    lines = done.stderr.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("asgi-bench-lab: A/B — "))
    assert f"B = uvicorn 0.54.0 from {slow}" in lines[head] and "A = the image's (uvicorn 0.54.0)" in lines[head]
    assert "side by side" in lines[head]
    said = lines[head + 1]
    assert "raw ASGI on uvicorn · asyncio · h11, plaintext: B slower than A by " in said
    assert "over 3 pair rounds, side by side" in said and "server CPU per answer B ÷ A" in said
    assert "— FAIL" in lines[head + 2]
    # the bottom line states the side-by-side verdict for the cell's two variants, not the sequential rounds' order
    (bottom,) = [line for line in lines[head + 3 :] if line.endswith("(the A/B verdict).")]
    assert bottom.startswith("asgi-bench-lab: raw ASGI on uvicorn · asyncio · h11, plaintext: B slower than A by ")
    report = (run.root / "report.html").read_text()
    assert report.index('id="ab"') < report.index('id="bottom-line"')


def test_side_by_side_reads_each_window_and_gives_an_interval_over_the_rounds() -> None:
    """One window's rates from its buckets (together: all of them; slices: each side's own turns, per counted
    second), and B ÷ A with Student's t over the rounds: a known 3% slowdown found, with its interval."""
    empty = Latency(count=0, percentiles_us={}, curve_us=[], hdr="")

    def side(buckets: list[int]) -> SideResult:
        return SideResult(target="t", requests=sum(buckets), ok=sum(buckets), errors={}, latency=empty, buckets=buckets)

    together = PairResult(mode="together", bucket_seconds=0.1, settle_seconds=0.0, first=7,
                          a=side([100, 110, 90]), b=side([97, 107, 87]))  # fmt: skip
    assert side_by_side.rates(together) == pytest.approx((1000.0, 970.0))
    sliced = PairResult(mode="slices", bucket_seconds=0.1, settle_seconds=0.02, first=7,  # A's turns: even indexes
                        a=side([0, 80, 0, 84]), b=side([60, 0, 64, 0]))  # fmt: skip
    assert side_by_side.rates(sliced) == pytest.approx((82 / 0.08, 62 / 0.08))
    rng = random.Random(3)
    logs = [math.log(0.97) + rng.gauss(0, 0.01) for _ in range(16)]
    found = stats.side_by_side("plaintext", "x@A", "x@B", logs)
    assert found.measurable and found.rounds == 16 and found.df == 15 and found.slower_than(1)
    assert found.low < 0.97 < found.high and found.half_pct < 1
    (one,) = [stats.side_by_side("json", "x@A", "x@B", [0.01])]
    assert not math.isfinite(one.half_pct) and not one.significant  # one round: no interval, no verdict
