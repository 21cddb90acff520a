"""Benchmark: who lost the requests due before SIGTERM — the server, or the lab's stop client?

Reads stop records (a bundle's stops/ or `python -m lab lifecycle --out DIR`), measures nothing. A request due before
the signal can be lost for three reasons, told apart by its own times (loadtests/stopping.py: LostRequest):
  sent after the signal   the client sent it late (its loop behind its schedule, or no connection free): the server
                          met a new request while stopping, which a graceful stop may refuse;
  sent just before it     on a keep-alive connection, within RACE seconds before the signal: the server closed the
                          idle connection as it stopped, with the request on its way (HTTP/1.1's keep-alive race, which
                          a client must be ready to retry);
  sent well before it     the server had the request for longer and lost it: the server's own doing.
Prints, per server, the stops and the lost requests of each kind, with the send lateness of the first kind.

    python -m lab lifecycle --cell uvicorn-uvloop-httptools-w1-raw --stops 20 --out /tmp/stops
    python scripts/stop_losses.py /tmp/stops [more folders]
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter, defaultdict
from pathlib import Path

from lab.bundle import read_model

RACE = 0.005  # seconds: a request sent this close before SIGTERM may not have been read by the server yet


def kind(sent: float | None) -> str:
    if sent is None:
        return "never sent"
    if sent >= 0:
        return "sent after the signal"
    return "sent just before it" if sent > -RACE else "sent well before it"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    stops: Counter[str] = Counter()
    kinds: dict[str, Counter[str]] = defaultdict(Counter)
    late: dict[str, list[float]] = defaultdict(list)
    for folder in args.folders:
        for path in sorted((folder / "stops").glob("*.json") if (folder / "stops").is_dir() else folder.glob("*.json")):
            record = read_model(path, "stop")
            server = record.cell.server
            stops[server] += 1
            for r in record.load.lost_early:
                k = kind(r.sent)
                kinds[server][k] += 1
                if k == "sent after the signal" and r.sent is not None:
                    late[server].append(r.sent - r.due)
                if r.reused:
                    kinds[server]["(on a reused connection)"] += 1
    for server in sorted(stops):
        found = kinds[server]
        lost = sum(n for k, n in found.items() if not k.startswith("("))
        print(f"{server}: {stops[server]} stops, {lost} requests due before SIGTERM lost")
        for k, n in sorted(found.items()):
            print(f"  {k}: {n}")
        if late[server]:
            print(f"  send lateness of those sent after the signal: median {1000 * statistics.median(late[server]):.1f}"
                  f" ms, the most {1000 * max(late[server]):.1f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
