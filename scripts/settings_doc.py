"""Write the README's settings table and .env.example from the variables' declarations (lab/variables.py), or with
--check say how the files differ from them (exit 1), docker-compose.yml's `environment:` lists included.

    python scripts/settings_doc.py            after adding or changing a run option's variable or a LAB_* setting
    python scripts/settings_doc.py --check
"""

from __future__ import annotations

import argparse
import sys

from core.host import ROOT
from lab import variables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file differs")
    args = parser.parse_args(argv)
    if not args.check:
        readme = ROOT / "README.md"
        readme.write_text(variables.with_table(readme.read_text()))
        (ROOT / ".env.example").write_text(variables.env_example())
    found = variables.drift()
    for line in found:
        print(f"settings_doc: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
