"""A cell's server as a managed child process: started through the launcher, ready, pinned, stopped by SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servers.matrix import ROOT, Cell
from servers.sampler import TreeSampler


class ServerError(RuntimeError):
    """The server did not become ready, or did not stop cleanly; the message carries its log's tail."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return ""


@dataclass
class Server:
    """A running cell on this machine. The agent's RemoteServer offers the same methods for a server elsewhere."""

    cell: Cell
    port: int
    log: Path
    process: subprocess.Popen[bytes]
    report: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    sampler: TreeSampler | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        if self.process.poll() is None:
            return True
        self.exit_code = self.process.returncode
        return False

    def log_tail(self) -> str:
        return tail(self.log)

    def sample_open(self) -> None:
        """Start sampling the server's process tree (CPU seconds, RSS) for a load window."""
        self.sampler = TreeSampler(self.process.pid)
        self.sampler.start()

    def sample_close(self, start: float, end: float) -> dict[str, Any]:
        """The server's figures in [start, end]: CPU seconds, cores kept busy, peak RSS, process count."""
        assert self.sampler is not None, "sample_open() first"
        self.sampler.stop()
        cpu = self.sampler.cpu_seconds(start, end)
        seconds = end - start
        return {
            "cpu_seconds": round(sum(cpu.values()), 3),
            "cpu_cores": round(sum(cpu.values()) / seconds, 4) if seconds > 0 else 0.0,
            "rss_peak_bytes": self.sampler.rss_peak(start, end),
            "processes": len(cpu),
        }

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait, and (only if it hangs) SIGKILL the whole process group. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
                raise ServerError(f"{self.cell.key} did not stop within {timeout:g} s of SIGTERM") from None
        self.exit_code = self.process.returncode
        return self.exit_code


@contextlib.contextmanager
def serve(
    cell: Cell,
    workdir: Path,
    port: int | None = None,
    cpus: Sequence[int] | None = None,
    ready_timeout: float = 30.0,
) -> Iterator[Server]:
    """Start the cell with `python -m servers`, pinned to `cpus`, and yield it once it answers correctly."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    report, log = workdir / f"{cell.key}.server.json", workdir / f"{cell.key}.server.log"
    report.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "servers", "--cell", cell.key, "--port", str(port), "--report", str(report)]
    argv += ["--ready-timeout", str(ready_timeout)]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
    server = Server(cell, port, log, process)
    try:
        deadline = time.monotonic() + ready_timeout + 5
        while not report.exists():
            if process.poll() is not None:
                raise ServerError(f"{cell.key} exited {process.returncode} before it was ready:\n{tail(log)}")
            if time.monotonic() > deadline:
                raise ServerError(f"{cell.key} not ready within {ready_timeout:g} s:\n{tail(log)}")
            time.sleep(0.05)
        server.report = json.loads(report.read_text())
        yield server
    finally:
        if process.poll() is None:
            with contextlib.suppress(ServerError):
                server.stop()
