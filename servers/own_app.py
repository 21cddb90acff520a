"""Your own app in the matrix: an ASGI app from a folder of yours, the requests to send it, and what must come back.

    python -m lab run --own-app shop:app --own-code apps/example            # compose: APP=shop:app CODE=apps/example

The folder holds the app's code (imported with the folder first on sys.path), an optional requirements.txt (installed
into an environment of its own, layered over the image's packages like a variant's: servers/variants.py) and
requests.toml (or --requests FILE): one [[request]] per scenario, with its method, path and query, body and content
type, the status that must come back, and either `expect` (the body, byte for byte) or `same = true` (the first
correct answer's body, recorded when the scenario is first loaded and then required of every answer, on every cell).
Status, content type, framing and body are checked on every answer; other headers (date, server) are not.

The app joins the matrix as the app `own` (`Matrix` with `with_own`), its requests as scenarios: the servers and
loops of the run's preset run it, with every part of a run and report. The servers run it through apps/own_app.py,
which answers the launcher's readiness and event-loop probes under /.lab/ and hands every other request to your app.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

from core.errors import LabError, UsageError
from core.model import Record
from servers.matrix import App, Expected, Matrix, MatrixError, Scenario

NAME = "own"  # the app's name in the matrix and in cell keys: granian-uvloop-hyper-w1-own
PROBES = "/.lab/"  # the paths apps/own_app.py answers itself
TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
REQUEST_KEYS = {"name", "method", "path", "body", "content_type", "status", "expect", "same"}
IMPORTS = "import importlib, sys; sys.path.insert(0, sys.argv[1]); m, _, a = sys.argv[2].partition(':'); " \
          "getattr(importlib.import_module(m), a)"  # fmt: skip


class OwnApp(Record):
    """Your app as a run records it: enough to start it again and to read its bundle without the folder."""

    target: str  # module:attribute
    code: str  # the folder it is imported from (on the target side)
    requests: list[Scenario]
    requirements: list[str]  # from the folder's requirements.txt

    @property
    def title(self) -> str:
        return f"your app ({self.target})"

    @property
    def scenarios(self) -> list[str]:
        return [s.name for s in self.requests]

    @classmethod
    def read(cls, target: str, code: Path, requests: Path | None = None) -> OwnApp:
        """The app, its requests and requirements, every one checked; a UsageError in one line naming the fix."""
        if not TARGET.fullmatch(target):
            raise UsageError(f"--own-app / APP {target!r}: give MODULE:ATTRIBUTE, e.g. shop:app")
        if not code.is_dir():
            raise UsageError(f"--own-code / APP_CODE {code}: no such folder (in compose, CODE=… is mounted there)")
        file = requests or code / "requests.toml"
        if not file.is_file():
            raise UsageError(f"the requests file {file} is not there; give --requests FILE (REQUESTS=…)")
        needs = code / "requirements.txt"
        lines = needs.read_text().splitlines() if needs.is_file() else []
        requirements = [t for line in lines if (t := line.split("#")[0].strip())]
        return cls(target=target, code=str(code.resolve()), requests=read_requests(file), requirements=requirements)

    def check_imports(self, python: str) -> None:
        """The app imports in the interpreter its servers will run; else a UsageError with Python's reason."""
        done = subprocess.run([python, "-c", IMPORTS, self.code, self.target], capture_output=True, text=True,
                              timeout=120, cwd=self.code)  # fmt: skip
        if done.returncode != 0:
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            raise UsageError(
                f"--own-app / APP {self.target} does not import from {self.code}: {lines[-1] if lines else 'failed'}"
            )


def read_requests(file: Path) -> list[Scenario]:
    """The requests file's [[request]] tables as scenarios; any mistake refused in one line, naming the request."""
    try:
        data = tomllib.loads(file.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"requests file {file}: not TOML ({exc})") from None
    tables = data.get("request")
    if set(data) != {"request"} or not isinstance(tables, list) or not tables:
        raise UsageError(f"requests file {file}: give one [[request]] table per request, and nothing else")
    found: list[Scenario] = []
    for n, t in enumerate(tables, start=1):
        where = f"requests file {file}, request #{n}"
        unknown = set(t) - REQUEST_KEYS
        if unknown:
            raise UsageError(f"{where}: unknown keys {sorted(unknown)}; valid: {', '.join(sorted(REQUEST_KEYS))}")
        name, method, path = t.get("name", ""), str(t.get("method", "GET")).upper(), t.get("path", "")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", name):
            raise UsageError(f"{where}: name {name!r}: give lower-case letters, digits, '-' or '_'")
        if name in {s.name for s in found}:
            raise UsageError(f"{where}: the name {name!r} is used twice")
        if method not in METHODS:
            raise UsageError(f"{where} ({name}): method {method!r}; valid: {', '.join(METHODS)}")
        if not isinstance(path, str) or not path.startswith("/") or path.startswith(PROBES) or " " in path:
            raise UsageError(f"{where} ({name}): path {path!r} must start with / (not {PROBES}), with no spaces")
        status = t.get("status", 200)
        if not isinstance(status, int) or not 200 <= status <= 399:
            raise UsageError(f"{where} ({name}): status {status!r}: give the success status that must come back")
        if ("expect" in t) == bool(t.get("same", False)):
            raise UsageError(f"{where} ({name}): give either expect = BODY or same = true")
        body, kind = t.get("body", ""), t.get("content_type", "")
        if not isinstance(body, str) or not isinstance(kind, str) or (body and not kind):
            raise UsageError(f"{where} ({name}): body and content_type are text; a body needs its content_type")
        expect = None
        if "expect" in t:
            if not isinstance(t["expect"], str):
                raise UsageError(f"{where} ({name}): expect is the body's text")
            expect = Expected.of("", "length", t["expect"].encode())  # its content type: the first answer's
        found.append(Scenario(name=name, method=method, path=path, answer="given", status=status, send=body,
                              send_type=kind, expect=expect))  # fmt: skip
    return found


def with_own(matrix: Matrix, own: OwnApp | None) -> Matrix:
    """The matrix with your app as the app `own` and its requests as scenarios (itself, without one)."""
    if own is None:
        return matrix
    clash = [s.name for s in own.requests if matrix.scenarios.get(s.name, s) != s]  # itself again: no clash
    if clash:
        raise MatrixError(f"your app's request {clash[0]!r} has the name of one of the lab's scenarios; rename it")
    app = App(NAME, "apps.own_app:app", (), own.title, ready=f"{PROBES}ready", loop_probe=f"{PROBES}loop")
    scenarios = {**matrix.scenarios, **{s.name: s for s in own.requests}}
    return dataclasses.replace(matrix, apps={**matrix.apps, NAME: app}, scenarios=scenarios)


def first_answer(scenario: Scenario, host: str, port: int, timeout: float = 10.0) -> Expected:
    """The answer a running server gives to the scenario's request once: it must have the stated status (and body,
    when the file gives it); its content type, framing and body are then what every later answer must have."""
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers: dict[str, Any] = {"Content-Type": scenario.send_type} if scenario.send_type else {}
        conn.request(scenario.method, scenario.path, body=scenario.send.encode() or None, headers=headers)
        response = conn.getresponse()
        body = response.read()
        chunked = (response.getheader("transfer-encoding") or "").lower() == "chunked"
        kind = (response.getheader("content-type") or "").strip()
    finally:
        conn.close()
    said = f"your app's request {scenario.name} ({scenario.method} {scenario.path})"
    if response.status != scenario.status:
        raise OwnAppError(f"{said} answered {response.status}, not {scenario.status}: {body[:80]!r}")
    if scenario.expect is not None and body != scenario.expect.body:
        raise OwnAppError(f"{said} answered {body[:80]!r}, not the expected {scenario.expect.body[:80]!r}")
    return Expected.of(kind.lower(), "chunked" if chunked else "length", body)


class OwnAppError(LabError):
    """Your app's first answer to a request is not the one the requests file states: a failed repeat, not bad input
    (the app may answer one server right and another wrong)."""
