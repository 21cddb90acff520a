"""Debian's Chromium, headless, for the report tests: the DOM after the page's scripts ran, at a given window."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

# Without the background-networking flags Chromium waits on a closed network for minutes
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return exe


def render_dom(page: Path, width: int = 1400, height: int = 900) -> str:
    """The page's DOM once loaded (its load handler writes what it measured into <body data-...>)."""
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
             "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def body_data(dom: str) -> dict[str, str]:
    """<body data-x-y="v"> as {"x-y": "v"}."""
    body = re.search(r"<body([^>]*)>", dom)
    assert body, dom[:500]
    return dict(re.findall(r'data-([\w-]+)="([^"]*)"', body.group(1)))


def first_screen(dom: str) -> tuple[list[int], list[int], list[str]]:
    """Where the bottom-line table lies (left, top, right, bottom, px), the viewport (width, height), and the
    app x scenario columns it covers."""
    data = body_data(dom)
    table = re.search(r'<table id="bottom-line-table" data-columns="([^"]*)"', dom)
    assert table and "bottom-line" in data and "viewport" in data, data
    return (
        [int(v) for v in data["bottom-line"].split()],
        [int(v) for v in data["viewport"].split()],
        table.group(1).split(),
    )
