"""A run's manifest as the runner keeps it: made when a run starts (or resumes, keeping what the earlier parts
recorded), with the machine, every version, the lab's commit and both hosts' facts, and ended with its status."""

from __future__ import annotations

import os
import time

from core import hostfacts
from lab import bundle, scale
from lab.bundle import Manifest, Part, Skipped
from lab.config import RunConfig
from lab.run import fingerprint, hosts
from lab.run.budget import RERUNS
from lab.run.ledger import Ledger
from lab.run.progress import Listener
from servers.matrix import Matrix
from servers.target import TargetBackend
from servers.variants import Environment


def start(
    config: RunConfig,
    matrix: Matrix,
    ledger: Ledger,
    targets: TargetBackend,
    environments: list[Environment],
    resumed: Manifest | None,
    listener: Listener,
) -> Manifest:
    """The run's manifest written as `running`: a new one, or the resumed run's with a new part."""
    c, machine = config, fingerprint.machine()
    wiring = "on this machine" if not (c.target_agent or c.locust_master) else (
        f"through the target agent {c.target_agent} and the Locust master {c.locust_master}"
    )  # fmt: skip
    part = Part(
        started=time.time(), ended=None, status="running", machine_id=machine.machine_id,
        container=machine.container, uid=os.getuid(), wiring=wiring, note=None,
    )  # fmt: skip
    facts, notes = hosts.both(c, targets)
    manifest = ledger.save(
        Manifest(
            schema_version=bundle.SCHEMA_VERSION, kind="manifest", run_id=ledger.run_id, status="running",
            started=resumed.started if resumed else part.started, ended=None, config=c, machine=machine,
            versions=hostfacts.versions(), lab_commit=fingerprint.lab_commit(),
            skipped=[Skipped(key=x.key, scenario=s, reason=r) for x, s, r in c.skipped(matrix)], failures=[],
            parts=[*(ended(p) for p in (resumed.parts if resumed else [])), part],
            rounds=list(resumed.rounds) if resumed else [], sweep=dict(resumed.sweep) if resumed else {},
            extra_rule=extra_rule(c), speed=resumed.speed if resumed else None,
            environments=environments or (resumed.environments if resumed else []),
            hosts=facts, host_notes=notes,
        )
    )  # fmt: skip
    listener.say(
        f"run {ledger.run_id}: {len(c.cells)} cells x {len(c.scenarios)} scenarios, {c.repeats} rounds; "
        f"server CPUs {c.server_cpus}, load CPUs {c.load_cpus} with {c.load_workers} Locust worker(s); "
        f"{scale.how(c.server_cpus, c.cells, len({*c.server_cpus, *c.load_cpus}))}"
        + (f"; servers on the target host {c.target_host}" if c.two_hosts else "")
    )
    for note in notes:
        listener.say(f"hosts: {note}")
    return manifest


def end(ledger: Ledger, status: str, note: str | None) -> None:
    assert ledger.manifest is not None
    parts = list(ledger.manifest.parts)
    parts[-1] = parts[-1].model_copy(update={"ended": time.time(), "status": status, "note": note})
    ledger.save(status=status, ended=time.time(), parts=parts)


def ended(part: Part) -> Part:
    """An earlier part still `running` had a runner that died without a word (kill -9, a lost machine)."""
    if part.status != "running":
        return part
    return part.model_copy(update={"status": "interrupted", "note": "its runner died without ending the run"})


def extra_rule(config: RunConfig) -> str:
    """The rule that gave some groups extra side-by-side rounds, in the run's own numbers (lab/run/allowance.py has
    the whole rule)."""
    if not config.budget_seconds:
        return "none: no time budget, so every group has exactly its rounds"
    return (
        f"while the run fits its {config.budget_seconds / 60:g} minutes (the sweep's and the stops' time kept free): "
        f"extra side-by-side rounds for the groups with comparisons not yet significant, up to {config.max_repeats} "
        f"rounds, and disturbed repeats measured again up to {RERUNS} times (lab/run/allowance.py)"
    )
