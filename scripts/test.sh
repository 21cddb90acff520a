#!/usr/bin/env bash
# Set up and run the lab's tests on a fresh machine: system tools the tests use (Debian's chromium for the report
# test, wrk and h2load for the referee, when root with apt), a virtual environment in .venv with the pinned packages, ruff,
# pytest.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m slow`).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=""
command -v chromium >/dev/null || missing="$missing chromium"  # the report test renders report.html in it
command -v wrk >/dev/null || missing="$missing wrk"            # the referee of every local run
command -v h2load >/dev/null || missing="$missing nghttp2-client"  # the referee over h2c
command -v ip >/dev/null || missing="$missing iproute2"         # the two-host test's network namespaces
if [ -n "$missing" ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "test.sh: installing Debian's$missing"
  apt-get update -qq >/dev/null
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

venv=${LAB_VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -c requirements.lock -e ".[fast,test]"
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
# -rs: each skipped test and why (the two-host test skips where network namespaces cannot be made)
exec "$venv/bin/python" -m pytest -rs "$@"
