"""Each setting declared once: every LAB_* variable is read in one module (core/settings.py), every run option's
variable on its option (lab/config.py); the README's table, .env.example and compose's `environment:` lists follow
from them (lab/variables.py)."""

from __future__ import annotations

import re

import pytest

from core.host import ROOT
from core.settings import Settings
from lab import cli, variables

CODE = [p for d in ("apps", "core", "servers", "loadtests", "lab", "scripts") for p in (ROOT / d).rglob("*.py")]


def test_only_the_settings_module_reads_lab_variables() -> None:
    reading = re.compile(r"""(environ(\.get)?\s*[\[(]|getenv\()\s*["']LAB_""")
    offenders = [str(p.relative_to(ROOT)) for p in CODE if reading.search(p.read_text())]
    assert offenders == [], offenders


def test_the_readme_env_example_and_compose_files_follow_the_declarations() -> None:
    assert variables.drift() == []
    said = {n for f in ("docker-compose.yml", "docker-compose.two-hosts.yml")
            for n in re.findall(r"\$\{([A-Z_]+)", (ROOT / f).read_text())}  # fmt: skip
    assert said <= set(variables.documented()), said - set(variables.documented())  # compose reads no stranger


def test_a_variable_missing_or_extra_anywhere_is_named() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    without = compose.replace("    PAIR_ROUNDS: ${PAIR_ROUNDS:-}\n", "")
    assert variables.compose_drift(without, ("passed",), "f") == ["f does not pass PAIR_ROUNDS"]
    extra = compose.replace("  environment:\n", "  environment:\n    LAB_TARGET_HOST: x\n    NEW_THING: 1\n")
    assert [line.split(",")[0] for line in variables.compose_drift(extra, ("passed",), "f")] == [
        "f passes LAB_TARGET_HOST", "f passes NEW_THING"]  # fmt: skip
    readme = (ROOT / "README.md").read_text()
    assert variables.with_table(readme.replace("| `PAIR_ROUNDS` |", "| `PAIR_ROUND` |")) == readme
    assert "# PAIR_ROUNDS=" in variables.env_example() and "`--pair-rounds`" in variables.readme_table()


def test_settings_come_from_the_environment_given() -> None:
    s = Settings.from_env({"LAB_UID": "1000", "LAB_HOST_ID": " lab-7 ", "LAB_IN_CONTAINER": "1", "SERVERS": "x"})
    assert s.uid == 1000 and s.host_id == "lab-7" and s.in_container and s.matrix_file is None
    assert Settings.from_env({}) == Settings()


def test_every_commands_help_prints(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse %-formats help texts: a bare % in one (e.g. an option's unit) crashes `--help`."""
    for command in ("run", "preflight", "calibrate", "lifecycle", "plot", "compare", "reference"):
        with pytest.raises(SystemExit) as done:
            cli.main([command, "--help"])
        assert done.value.code == 0, command
        assert "usage: python -m lab " + command in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "(0: no budget, no extra rounds)" in shown and "or PAIR_ROUNDS;" not in shown
    assert "repeatable; or SERVERS (comma-separated)" in shown
