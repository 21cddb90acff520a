"""Every environment variable the lab documents, each from where it is declared: a run option's on its option
(lab/config.py), the lab's own settings and compose's in core/settings.py.

From them come the README's settings table and .env.example (scripts/settings_doc.py writes both), and the list of
variables docker-compose.yml must pass to its containers; `drift` names whatever in those files differs, and a test
keeps it empty.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from core.host import ROOT
from core.settings import COMPOSE_VARIABLES, VARIABLES, Role, Variable
from lab.config import kind_of, options, separated

# The README's table sits between these two lines.
TABLE_START = "<!-- settings: made by scripts/settings_doc.py from lab/config.py and core/settings.py; edit those -->"
TABLE_END = "<!-- end of settings -->"
SECTIONS: dict[Role, str] = {
    "compose": "Read by docker compose itself",
    "passed": "Passed to every container (docker-compose.yml `environment:`)",
    "two-hosts": "Two hosts: docker-compose.two-hosts.yml passes it (docs/two-hosts.md)",
    "inside": "Set inside the containers by the image or the lab; listed so that every variable is, not for you to set",
}


def documented() -> dict[str, Variable]:
    """Every documented variable, by name: compose's first, then the run options' (in the table's order), then the
    lab's own settings."""
    found = dict(COMPOSE_VARIABLES)
    for name, option in options().items():
        if option.env:
            text = ("1: " if kind_of(name) is bool else "") + option.help
            text += f"; several: {separated(option)}" if option.repeat else ""
            found[option.env] = Variable(text, option.example, option.role, option.flag or "")
    return {**found, **VARIABLES}


def readme_table() -> str:
    """The README's settings table, between its two marker lines."""
    rows = [
        f"| `{name}` | {f'`{v.flag}`' if v.flag else ''} | {v.help} |"
        for role in SECTIONS
        for name, v in documented().items()
        if v.role == role
    ]
    return "\n".join([TABLE_START, "", "| variable | option | what it does |", "|---|---|---|", *rows, "", TABLE_END])


def env_example() -> str:
    """.env.example: every variable, each with what it does and a valid value, commented out."""
    lines = [
        "# Copy to .env (docker compose reads it) or set these in the shell. Every line is optional; each says its",
        "# default. `docker compose up` checks them all before anything starts and names the fix for a bad one.",
        "# Made by scripts/settings_doc.py from lab/config.py and core/settings.py: edit those, then run it.",
    ]
    for role, title in SECTIONS.items():
        lines += ["", f"# --- {title} ---"]
        for name, v in documented().items():
            if v.role == role:
                said = v.help + (f" (or {v.flag})" if v.flag else "")
                lines += textwrap.wrap(said, 118, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False)
                lines.append(f"# {name}={v.example}")
    return "\n".join(lines) + "\n"


def with_table(readme: str) -> str:
    """The README with its settings table made anew."""
    start, end = readme.index(TABLE_START), readme.index(TABLE_END) + len(TABLE_END)
    return readme[:start] + readme_table() + readme[end:]


def compose_environment(text: str) -> list[str]:
    """The variables a compose file's `x-lab` anchor passes to every container: its `environment:` list."""
    anchor = re.search(r"^x-lab: &lab\n(.*?)(?=^\S)", text, re.M | re.S)
    listed = re.search(r"^  environment:\n((?:(?:    .*|\s*#.*)?\n)*)", anchor.group(1) if anchor else "", re.M)
    return re.findall(r"^    ([A-Z][A-Z0-9_]*):", listed.group(1) if listed else "", re.M)


def compose_drift(text: str, roles: tuple[Role, ...], file: str) -> list[str]:
    """How a compose file's environment list differs from the variables of these roles (the first: each one)."""
    listed, every = set(compose_environment(text)), documented()
    wanted = {name for name, v in every.items() if v.role == roles[0]}
    allowed = {name for name, v in every.items() if v.role in roles}
    return [f"{file} does not pass {name}" for name in sorted(wanted - listed)] + [
        f"{file} passes {name}, which is not {' or '.join(roles)} in lab/config.py or core/settings.py"
        for name in sorted(listed - allowed)
    ]


def drift(root: Path = ROOT) -> list[str]:
    """Each way the files that list the variables differ from their declarations, in a line (none: in step)."""
    found = []
    readme = (root / "README.md").read_text()
    if TABLE_START not in readme or TABLE_END not in readme or with_table(readme) != readme:
        found.append("README.md's settings table is not the one declared: run python scripts/settings_doc.py")
    if (root / ".env.example").read_text() != env_example():
        found.append(".env.example is not the one declared: run python scripts/settings_doc.py")
    found += compose_drift((root / "docker-compose.yml").read_text(), ("passed",), "docker-compose.yml")
    two = (root / "docker-compose.two-hosts.yml").read_text()
    found += compose_drift(two, ("two-hosts", "passed"), "docker-compose.two-hosts.yml")
    return found
