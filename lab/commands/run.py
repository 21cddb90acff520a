"""python -m lab run: a run's configuration prepared and checked, its backends opened, the runner run, and its last
lines (the headline and where the results are, or the error and its fix) printed after every service it used has
stopped."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from core.errors import LabError, UsageError, say
from core.host import LOOPBACK, check_port_free, machine_cpus
from core.settings import settings
from lab import config as options
from lab.analysis.analyze import Analysis
from lab.bundle import Manifest, read_model
from lab.config import RunConfig
from lab.run.ledger import check_writable, find_run, holding, new_run_dir
from loadtests.load import LoadBackend
from servers.matrix import Matrix, load
from servers.target import TargetBackend
from servers.variants import Environment
from servers.variants import check as check_variants

GATE_EXIT = 3  # --fail-if-slower: B measured slower than A by more than the given %


def prepare(args: argparse.Namespace, matrix: Matrix) -> tuple[RunConfig, Matrix, Path | None, Manifest | None]:
    """The run's configuration (new, or the resumed run's own, with the matrix it was planned from), checked with
    everything around it."""
    if args.resume:
        run_dir = find_run(args.results, args.resume)
        manifest = read_model(run_dir / "manifest.json", "manifest")
        config = manifest.config
        matrix = config.matrix_of(matrix)
        if args.port is not None:  # the run's own port may be taken now (say, by a server its dead runner left)
            config = config.model_copy(update={"port": args.port})
        config = config.check(matrix)
    else:
        config, run_dir, manifest = options.from_args(args, matrix), None, None
        if config.restart:
            raise UsageError("--restart: restarts under load are measured by `python -m lab lifecycle --restart`, "
                             "not in a run")  # fmt: skip
        matrix = config.matrix_of(matrix)  # with your app, when it runs one
        check_variants(config.variants)  # resolved, not installed: an unknown package stops here
        if config.own and not config.own.requirements and not config.variants:
            config.own.check_imports(sys.executable)  # else where it is installed, before the first cell
    if not config.target_agent:
        for port in config.ports:
            check_port_free(config.target_host, port, "server port")
    check_writable(args.results)
    return config, matrix, run_dir, manifest


def run_main(args: argparse.Namespace, matrix: Matrix) -> int:
    from lab.run.backends import open_backends
    from lab.run.runner import Runner

    targets: TargetBackend | None = None
    loads: LoadBackend | None = None
    final: list[str] = []
    try:
        config, matrix, run_dir, manifest = prepare(args, matrix)
        # The runner samples and polls all run long: it keeps to the load CPUs, off the server's.
        os.sched_setaffinity(0, set(config.load_cpus) & set(machine_cpus()) or set(machine_cpus()))
        if run_dir is None:
            run_dir = new_run_dir(args.results)
            try:
                targets, loads = open_backends(config, matrix, run_dir / "logs")
                environments = installed(config, targets)
            except BaseException:
                run_dir.rmdir()  # still empty: a refused run leaves nothing behind
                raise
        else:
            targets, loads = open_backends(config, matrix, run_dir / "logs")
            environments = installed(config, targets)
        with holding(run_dir):
            runner = Runner(config, matrix, run_dir, targets, loads, environments=environments)
            code = runner.run(manifest)
        final = outcome(run_dir, code, args, runner.analysis)
        gate = config.fail_if_slower
        if gate is not None and code == 0 and runner.analysis is not None and runner.analysis.slower(gate):
            code = GATE_EXIT
            final.append(f"exit {GATE_EXIT}: B is slower than A by more than {gate:g}% with 95% confidence (above)")
    except LabError as exc:
        final, code = [exc.line()], exc.exit_code
    finally:
        # Ending the services may make compose (`up --exit-code-from lab`) stop this container too: the run is over
        # by now, and its last lines must still be printed, so SIGTERM waits for them.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if args.shutdown_services:
            shutdown(args, targets, loads)
        else:
            for backend in (loads, targets):
                if backend is not None and not (args.target_agent or args.locust_master):
                    backend.close()  # what this machine started: the local Locust master and workers
            if targets is not None:
                targets.release()  # an agent that stays: the next run may drive it
    for line in final:  # the last lines, after every other service has stopped
        say(line)
    return code


def installed(config: RunConfig, targets: TargetBackend) -> list[Environment]:
    """The run's variants installed on the target side (from its cache when they were before), said in one line."""
    if not config.variants and not config.own:
        return []
    found = targets.prepare(config.variants, config.own)
    if not found:
        return []
    say(
        "variants: "
        + "; ".join(
            f"{e.variant} = {', '.join(f'{k} {v}' for k, v in e.own.items()) or 'the image'}"
            + (f" (installed in {e.install_seconds:.1f} s)" if not e.cached else "")
            for e in found
        )
    )
    return found


def outcome(root: Path, code: int, args: argparse.Namespace, analysis: Analysis | None) -> list[str]:
    """What the run's last lines say: the headline and the results, or how to resume."""
    from lab.analysis.analyze import analyze
    from lab.bundle import load_bundle
    from lab.report import findings

    analysis = analysis or analyze(load_bundle(root), load())
    lines = list(findings.headline(analysis))
    resume = (
        f"RESUME={analysis.run_id} docker compose up"
        if args.target_agent
        else f"python -m lab run --resume {analysis.run_id}"
    )
    status = analysis.manifest.status
    host = settings().results_host  # in a container: where the results folder is on the host
    where = f"{host.rstrip('/')}/{root.name}" if host and root.parent == Path("/lab/results") else str(root)
    if status == "interrupted":
        lines.append(f"interrupted; results so far in {where}; continue with: {resume}")
    elif status == "stopped":
        note = analysis.manifest.parts[-1].note
        lines.append(f"stopped ({note}); results so far in {where}; once it is back: {resume}")
    else:
        failed = f"; {len(analysis.failures)} failure(s), see report.html" if analysis.failures else ""
        lines.append(f"results in {where} (report.html, summary.md){failed}; exit {code}")
    return lines


def shutdown(args: argparse.Namespace, targets: TargetBackend | None, loads: LoadBackend | None) -> None:
    """End the compose services this run used, and wait until they are gone, so that `docker compose up` ends by
    itself with this run's lines last."""
    from lab.run.backends import services

    try:
        for name in ("locust_master", "target_agent"):
            options.check_bound(options.options()[name], getattr(args, name))
    except UsageError:
        return  # a service named by something that is no URL: nothing there to end (the run's error says why)
    found = services(args.locust_master if loads is None else None, args.target_agent if targets is None else None)
    loads, targets = loads or found[0], targets or found[1]
    for backend in (loads, targets):
        if backend is not None:
            backend.close()
    for url in (args.locust_master, args.target_agent):
        if url:
            wait_gone(url)


def wait_gone(url: str, timeout: float = 15.0) -> None:
    """Until nothing listens at the service's address any more (then a moment for compose to say it exited)."""
    import socket
    import time
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((parts.hostname or LOOPBACK, parts.port or 80)) != 0:
                time.sleep(1.0)
                return
        time.sleep(0.2)
