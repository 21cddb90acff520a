"""Every LAB_* variable is read in one module (core/settings.py) and listed in the README and .env.example."""

from __future__ import annotations

import re

import pytest

from core.host import ROOT
from core.settings import COMPOSE_VARIABLES, VARIABLES, Settings
from lab.config import options

CODE = [p for d in ("apps", "core", "servers", "loadtests", "lab", "scripts") for p in (ROOT / d).rglob("*.py")]


def test_only_the_settings_module_reads_lab_variables() -> None:
    reading = re.compile(r"""(environ(\.get)?\s*[\[(]|getenv\()\s*["']LAB_""")
    offenders = [str(p.relative_to(ROOT)) for p in CODE if reading.search(p.read_text())]
    assert offenders == [], offenders


def test_every_variable_is_documented() -> None:
    readme, example = (ROOT / "README.md").read_text(), (ROOT / ".env.example").read_text()
    for name in {*VARIABLES, *COMPOSE_VARIABLES, *(o.env for o in options().values() if o.env)}:
        assert f"`{name}`" in readme, f"README.md does not list {name}"
        assert re.search(rf"^#? ?{name}=", example, re.M), f".env.example does not list {name}"
    used = set(re.findall(r"\bLAB_[A-Z_]+\b", (ROOT / "docker-compose.yml").read_text()))
    declared = {*VARIABLES, *COMPOSE_VARIABLES, *(o.env for o in options().values() if o.env)}
    assert used <= declared, used - declared


def test_settings_come_from_the_environment_given() -> None:
    s = Settings.from_env({"LAB_UID": "1000", "LAB_HOST_ID": " lab-7 ", "LAB_IN_CONTAINER": "1"})
    assert s.uid == 1000 and s.host_id == "lab-7" and s.in_container and s.matrix_file is None
    assert Settings.from_env({}) == Settings()


def test_every_commands_help_prints(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse %-formats help texts: a bare % in one (e.g. an option's unit) crashes `--help`."""
    from lab.cli import main

    for command in ("run", "preflight", "plot", "compare", "reference"):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0, command
        assert "usage: python -m lab " + command in capsys.readouterr().out
