"""Every environment variable the lab's Python code reads, read here and only here.

Two kinds, each declared once:
  - the lab's own settings (VARIABLES below), read into one frozen `Settings`;
  - a run option's variable (SERVERS, PAIR_ROUNDS, SERVER_CPUS, ...), named on its option in lab/config.py, which
    converts the text `variable` reads here to the option's type.
COMPOSE_VARIABLES are read by docker compose itself. lab/variables.py makes the README's settings table and
.env.example from these declarations and the option table, and checks docker-compose.yml's `environment:` list.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.errors import UsageError

# Who sets a variable, and so where it must appear:
#   passed     you (the shell or .env); docker-compose.yml passes it to every container
#   compose    you; docker compose itself reads it (in the file's ${...}), no container sees it
#   two-hosts  you; only docker-compose.two-hosts.yml passes it (one host's compose lab is loopback only)
#   inside     the image or the lab, inside the containers; listed so that every variable is, not for you to set
Role = Literal["passed", "compose", "two-hosts", "inside"]


@dataclass(frozen=True)
class Variable:
    """An environment variable as the README's settings table and .env.example describe it."""

    help: str  # what it does, its default included
    example: str = ""  # the value .env.example shows
    role: Role = "passed"
    flag: str = ""  # the run option it gives a value to, when it is one's (lab/config.py)


VARIABLES: dict[str, Variable] = {
    "LAB_RESULTS": Variable("the host folder mounted as the results folder (default `./results`); named in the last "
                            "lines", "./results"),
    "LAB_UID": Variable("run the containers as this user id (default: the results folder's owner, so the files are "
                        "yours)", "1000"),
    "LAB_GID": Variable("run the containers as this group id (default: the results folder's group)", "1000"),
    "LAB_DOCKER_VERSION": Variable("the Docker engine version recorded in each manifest: "
                                   "`docker version -f {{.Server.Version}}`", "27.3.1"),
    "LAB_MATRIX": Variable("a matrix file of your own instead of `servers/matrix.toml` (in compose, a path inside the "
                           "containers)", "/lab/code/matrix.toml"),
    "LAB_HOST_ID": Variable("the machine id in run ids and `results/reference/<id>/` (default: a hash of host name, "
                            "CPU model, memory)", "lab-7"),
    "LAB_IMAGE_ID": Variable("the container image id recorded in each manifest (default: the image's content hash, "
                             "written when it was built)", "sha256:0123"),
    "LAB_GIT_COMMIT": Variable("the lab's commit for the manifest where neither git nor `.git` is at hand",
                               "0123456789abcdef0123456789abcdef01234567"),
    "LAB_AGENT_SECRET_FILE": Variable(
        "the file with the secret the target agent and the runner share (made, mode 0600, when missing; default "
        "`~/.config/asgi-bench-lab/agent-secret`; in compose `/lab/secrets/agent-secret`); on two hosts copy it to "
        "the load host; never printed", "./agent-secret"),
    "LAB_VARIANTS": Variable("where the variants' environments are kept between runs (default "
                             "`~/.cache/asgi-bench-lab/variants`; in compose the `variants` volume, set by the image)",
                             "/lab/variants", "inside"),
    "LAB_IN_CONTAINER": Variable("set by the Dockerfile: the manifest records that the run was in a container", "1",
                                 "inside"),
    "LAB_OWN_APP": Variable("set by the launcher for your app's servers: its MODULE:ATTRIBUTE (`apps/own_app.py` "
                            "reads it)", "shop:app", "inside"),
    "LAB_OWN_CODE": Variable("set by the launcher for your app's servers: the folder it is imported from", "/lab/code",
                             "inside"),
    "LAB_LIFESPAN_REPORT": Variable(
        "set by the lab for a server under test: the file where the apps note lifespan startup, and lifespan shutdown "
        "begun and completed (`apps/common.py`)", "/tmp/lifespan.jsonl", "inside"),
}  # fmt: skip

COMPOSE_VARIABLES: dict[str, Variable] = {
    "PRESET": Variable("the matrix preset `docker compose up` runs: quick (about a minute), default (under 20 "
                       "minutes on 2 cores), full (every valid cell; hours); default: default", "quick", "compose"),
    "RESUME": Variable("continue an interrupted or stopped run: its run id, or `last` for the newest unfinished one "
                       "(default: a new run)", "last", "compose"),
    "BASE_IMAGE": Variable("the image's base: a public Python image, or a local one on a machine without a registry "
                           "(`scripts/offline-base-image.sh`); default `python:3.12-slim`", "lab-base", "compose"),
    "CODE": Variable("a host folder mounted read-only at `/lab/code` in the containers: your app, or a checkout or "
                     "wheels for a variant (default `./apps`)", "~/src", "compose"),
    "LOCUST_MASTER_BIND_HOST": Variable(
        "the address the Locust master's ZeroMQ port listens on for workers on other load machines (default "
        "127.0.0.1; never 0.0.0.0 unless named: it has no authentication; `docs/two-hosts.md`)", "192.0.2.10",
        "compose"),
}  # fmt: skip

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def variable(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """A variable's text, stripped; None when it is unset or empty (compose passes `${NAME:-}` as empty)."""
    return (os.environ if env is None else env).get(name, "").strip() or None


@dataclass(frozen=True)
class Settings:
    matrix_file: Path | None = None
    host_id: str | None = None
    image_id: str | None = None
    git_commit: str | None = None
    docker_version: str | None = None
    in_container: bool = False
    results_host: str | None = None
    variants_dir: Path | None = None
    uid: int | None = None
    gid: int | None = None
    agent_secret_file: Path = Path.home() / ".config" / "asgi-bench-lab" / "agent-secret"
    own_app_target: str | None = None  # LAB_OWN_APP
    own_app_code: str | None = None  # LAB_OWN_CODE
    lifespan_report: Path | None = None  # LAB_LIFESPAN_REPORT

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        def text(name: str) -> str | None:
            return variable(name, env)

        def number(name: str) -> int | None:
            value = text(name)
            if value is not None and not value.isdigit():
                raise UsageError(f"{name}={value!r} must be a whole number (a user or group id), e.g. 1000")
            return int(value) if value is not None else None

        return cls(
            matrix_file=Path(m) if (m := text("LAB_MATRIX")) else None,
            host_id=text("LAB_HOST_ID"),
            image_id=text("LAB_IMAGE_ID"),
            git_commit=text("LAB_GIT_COMMIT"),
            docker_version=text("LAB_DOCKER_VERSION"),
            in_container=text("LAB_IN_CONTAINER") == "1",
            results_host=text("LAB_RESULTS"),
            variants_dir=Path(v) if (v := text("LAB_VARIANTS")) else None,
            uid=number("LAB_UID"),
            gid=number("LAB_GID"),
            agent_secret_file=Path(f).expanduser() if (f := text("LAB_AGENT_SECRET_FILE")) else cls.agent_secret_file,
            own_app_target=text("LAB_OWN_APP"),
            own_app_code=text("LAB_OWN_CODE"),
            lifespan_report=Path(r) if (r := text("LAB_LIFESPAN_REPORT")) else None,
        )


def settings() -> Settings:
    """The settings as the environment has them now (cheap; read afresh so a test's environment counts)."""
    return Settings.from_env()
