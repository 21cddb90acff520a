"""Make a variant with a known slowdown: a server's own release with a fixed amount of work added to every request.

A maintainer's question is "is my change slower, and by how much?". To check that the lab answers it, this builds
the change whose answer is known: the release's source (pip download, from the registry), with `--loops` turns of an
empty Python loop at the start of every request's ASGI cycle (each HTTP implementation's `run_asgi`, in uvicorn), and
times those turns here, on the server CPU. A/B of the release against it then has a known answer: B's CPU per
request is A's plus that cost.

    python scripts/slow_variant.py --package uvicorn==0.54.0 --loops 100 --out /tmp/uvicorn-slow
    python -m lab run --variant A=uvicorn==0.54.0 --variant B=/tmp/uvicorn-slow \\
        --cell uvicorn-uvloop-httptools-w1-raw --scenario plaintext --repeats 1 --sweep-seconds 0 --no-calibrate
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import timeit
from pathlib import Path

# Where each request's ASGI cycle starts, per package: (files, the line after which the work goes).
HOOKS = {
    "uvicorn": ("uvicorn/protocols/http/*_impl.py", "    async def run_asgi(self, app: ASGI3Application) -> None:\n"),
}


def build(requirement: str, loops: int, out: Path) -> int:
    """The release's source in `out`, with the work added; how many places got it."""
    name = re.split(r"[=<>!~ ]", requirement, maxsplit=1)[0].lower()
    if name not in HOOKS:
        raise SystemExit(f"slow_variant: no hook for {name!r}; known: {', '.join(HOOKS)}")
    pattern, line = HOOKS[name]
    with tempfile.TemporaryDirectory() as tmp:
        download = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", "-d", tmp]
        subprocess.run([*download, requirement], check=True)
        (sdist,) = Path(tmp).glob("*.tar.gz")
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        (source,) = (p for p in Path(tmp).iterdir() if p.is_dir())
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(source, out)
    patched = 0
    for path in sorted(out.glob(pattern)):
        text = path.read_text()
        if line in text:
            work = f"        for _ in range({loops}):  # asgi-bench-lab: a known slowdown (scripts/slow_variant.py)\n"
            path.write_text(text.replace(line, line + work + "            pass\n"))
            patched += 1
    if not patched:
        raise SystemExit(f"slow_variant: {requirement}'s source has no {line.strip()!r} in {pattern}")
    return patched


def cost_us(loops: int, cpu: int) -> float:
    """The added work's CPU time per request here, in microseconds: the best of 7 timings of 10,000 requests' worth."""
    os.sched_setaffinity(0, {cpu})
    timer = timeit.Timer(f"for _ in range({loops}):\n    pass")
    return min(timer.repeat(7, 10_000)) / 10_000 * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", default="uvicorn==0.54.0", help="the release to slow down (default %(default)s)")
    parser.add_argument("--loops", type=int, default=100, help="turns of an empty loop per request")
    parser.add_argument("--out", type=Path, required=True, help="the folder for the slowed source (a variant: B=DIR)")
    parser.add_argument("--cpu", type=int, default=0, help="time the work on this CPU (the server's; default 0)")
    args = parser.parse_args()
    places = build(args.package, args.loops, args.out)
    print(
        f"{args.out}: {args.package} with {args.loops} loop turns per request in {places} places; "
        f"{cost_us(args.loops, args.cpu):.2f} µs of CPU per request on CPU {args.cpu} (best of 7)"
    )


if __name__ == "__main__":
    main()
