"""Every `LAB_*` environment variable the lab's Python code reads, read here and only here, into one frozen object.

docker-compose.yml and .env.example set some of them; the README lists them all (a test keeps the three in step).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from core.errors import UsageError

# name -> what it does. The README's settings table and .env.example list each of these.
VARIABLES: dict[str, str] = {
    "LAB_MATRIX": "a matrix file of your own instead of servers/matrix.toml",
    "LAB_ALLOW_SHARED_CPUS": "1 lets the server and the load generator share CPUs (recorded and warned about)",
    "LAB_HOST_ID": "the machine id in run ids and results/reference/<id>/ (default: a hash of host name, CPU, memory)",
    "LAB_IMAGE_ID": "the container image id recorded in each manifest (default: the image's content hash)",
    "LAB_GIT_COMMIT": "the lab's commit for the manifest where neither git nor .git is at hand",
    "LAB_DOCKER_VERSION": "the Docker engine version recorded in each manifest",
    "LAB_IN_CONTAINER": "set by the Dockerfile: the manifest records that the run was in a container",
    "LAB_UID": "run the containers as this user id instead of the results folder's owner",
    "LAB_GID": "run the containers as this group id instead of the results folder's group",
    "LAB_VARIANTS": "where variants' environments are kept between runs (default ~/.cache/asgi-bench-lab/variants)",
    "LAB_OWN_APP": "set by the launcher for your app's servers: its MODULE:ATTRIBUTE (apps/own_app.py reads it)",
    "LAB_OWN_CODE": "set by the launcher for your app's servers: the folder it is imported from",
    "LAB_LIFESPAN_REPORT": "set by the lab for a server under test: the file where each app worker appends a JSON line "
    "as its lifespan startup completes and as its lifespan shutdown begins and completes (apps/common.py)",
    "LAB_RESULTS": "the host folder mounted as the results folder (default ./results); named in the last lines",
    "LAB_AGENT_SECRET_FILE": "the file with the secret the target agent and the runner share (made, mode 0600, when "
    "missing; default ~/.config/asgi-bench-lab/agent-secret)",
    "LAB_TARGET_HOST": "the one address beyond loopback that servers may be loaded on (the target host's); "
    "default: loopback only",
}

# Read by docker compose from the shell or .env, not by the lab's Python code; listed with the others.
COMPOSE_VARIABLES: dict[str, str] = {
    "CODE": "a host folder mounted read-only at /lab/code: your app, or a checkout or wheels for a variant "
    "(default ./apps)",
    "LOCUST_MASTER_BIND_HOST": "the address the Locust master's ZeroMQ port listens on for workers (default 127.0.0.1; "
    "never 0.0.0.0 unless named: it has no authentication)",
}

# The compose settings every container reads to pin itself (core/pin.py) and the runner checks (lab/cli.py).
CPU_VARIABLES = ("SERVER_CPUS", "LOAD_CPUS", "LOCUST_WORKERS")
# What one run measures, from compose (each is a run option's variable: lab/config.py).
FOCUS_VARIABLES: dict[str, str] = {
    "CELLS": "cell keys to run instead of the preset's, comma-separated",
    "SERVERS": "only the preset's cells of these servers, comma-separated (e.g. granian,uvicorn)",
    "LOOPS": "only the preset's cells of these event loops",
    "APPS": "only the preset's cells of these apps (e.g. fastapi)",
    "SCENARIOS": "only these scenarios (e.g. json)",
    "SWEEP_SCENARIOS": "the scenarios the sweep measures latency at equal load in (default: the preset's)",
    "AB": "A/B: the image's packages (A) against these requirements (B), e.g. uvicorn==0.53.0",
    "VARIANTS": "named variants instead of AB, ';'-separated: A=uvicorn==0.53.0;B=/lab/code/uvicorn",
    "FAIL_IF_SLOWER": "exit 3 when B is slower than A by more than this % with 95% confidence",
    "PAIR_ROUNDS": "A/B: rounds with both variants' servers at once, loaded side by side (default 10; 0: none)",
    "APP": "your own ASGI app instead of the lab's three, as MODULE:ATTRIBUTE (e.g. shop:app)",
    "APP_CODE": "the folder your app is imported from (default: /lab/code in compose, where CODE is mounted; else .)",
    "REQUESTS": "your app's requests file (default: APP_CODE/requests.toml)",
}
# The variables that give a run option its value when the command line does not (lab/config.py), and their fields.
RUN_OPTIONS = {
    "SERVER_CPUS": "server_cpus",
    "LOAD_CPUS": "load_cpus",
    "LOCUST_WORKERS": "locust_workers",
    "LAB_ALLOW_SHARED_CPUS": "allow_shared_cpus",
    "LAB_TARGET_HOST": "target_host",
    "CELLS": "cells",
    "SERVERS": "servers",
    "LOOPS": "loops",
    "APPS": "apps",
    "SCENARIOS": "scenarios",
    "SWEEP_SCENARIOS": "swept",
    "VARIANTS": "variants",
    "AB": "ab",
    "FAIL_IF_SLOWER": "fail_if_slower",
    "PAIR_ROUNDS": "pair_rounds",
    "APP": "own_app",
    "APP_CODE": "own_code",
    "REQUESTS": "requests",
}


@dataclass(frozen=True)
class Settings:
    matrix_file: Path | None = None
    allow_shared_cpus: bool = False
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
    target_host: str | None = None  # LAB_TARGET_HOST
    server_cpus: str | None = None  # SERVER_CPUS
    load_cpus: str | None = None  # LOAD_CPUS
    locust_workers: str | None = None  # LOCUST_WORKERS
    # A run's focus and variants, as compose passes them (lab/config.py reads each as its option's value).
    cells: str | None = None
    servers: str | None = None
    loops: str | None = None
    apps: str | None = None
    scenarios: str | None = None
    swept: str | None = None
    variants: str | None = None
    ab: str | None = None
    fail_if_slower: str | None = None
    pair_rounds: str | None = None
    own_app: str | None = None
    own_code: str | None = None
    requests: str | None = None
    own_app_target: str | None = None  # LAB_OWN_APP
    own_app_code: str | None = None  # LAB_OWN_CODE
    lifespan_report: Path | None = None  # LAB_LIFESPAN_REPORT

    def variable(self, name: str) -> str | bool | None:
        """A run option's value from its environment variable (lab/config.py: Option.env), as read here."""
        return getattr(self, RUN_OPTIONS[name])

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def text(name: str) -> str | None:
            return env.get(name, "").strip() or None

        def number(name: str) -> int | None:
            value = text(name)
            if value is not None and not value.isdigit():
                raise UsageError(f"{name}={value!r} must be a whole number (a user or group id), e.g. 1000")
            return int(value) if value is not None else None

        return cls(
            matrix_file=Path(m) if (m := text("LAB_MATRIX")) else None,
            allow_shared_cpus=text("LAB_ALLOW_SHARED_CPUS") in ("1", "true", "yes"),
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
            target_host=text("LAB_TARGET_HOST"),
            server_cpus=text("SERVER_CPUS"),
            load_cpus=text("LOAD_CPUS"),
            locust_workers=text("LOCUST_WORKERS"),
            **{RUN_OPTIONS[name]: text(name) for name in FOCUS_VARIABLES},
            own_app_target=text("LAB_OWN_APP"),
            own_app_code=text("LAB_OWN_CODE"),
            lifespan_report=Path(r) if (r := text("LAB_LIFESPAN_REPORT")) else None,
        )


def settings() -> Settings:
    """The settings as the environment has them now (cheap; read afresh so a test's environment counts)."""
    return Settings.from_env()
