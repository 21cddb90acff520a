"""The image's entrypoint: run the command as the owner of the results folder, never as root by accident.

    python -m core.entrypoint COMMAND [ARGS...]

Started as root (the image's default), it takes the user and group that own the mounted results folder
(/lab/results) — or LAB_UID/LAB_GID when set — drops to them, and execs the command: files written into results/
belong to whoever owns the folder on the host, whatever uid ran `docker compose up`. Services that mount no
results folder run as the image's unprivileged `lab` user (uid 1000). A root-owned results folder means its
owner is root, and the run is root's. Started as another user already (`user:` set), it only execs the command.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from core.errors import say
from core.settings import settings

RESULTS = Path("/lab/results")
LAB_USER = 1000  # the image's `lab` user (Dockerfile)


def owner(results: Path = RESULTS) -> tuple[int, int]:
    """The uid and gid to run as: LAB_UID/LAB_GID if set, else the results folder's owner, else the lab user."""
    env = settings()
    if env.uid is not None:
        return env.uid, env.gid if env.gid is not None else env.uid
    if results.is_dir() and os.path.ismount(results):
        stat = results.stat()
        return stat.st_uid, stat.st_gid
    return LAB_USER, LAB_USER


def main(argv: list[str]) -> int:
    if not argv:
        say("usage: python -m core.entrypoint COMMAND [ARGS...]")
        return 2
    if os.getuid() == 0:
        uid, gid = owner()
        if (uid, gid) != (0, 0):
            cache = settings().variants_dir
            if cache is not None and cache.is_dir() and cache.stat().st_uid != uid:
                os.chown(cache, uid, gid)  # the variants volume is made as the image's: its user may be another
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            os.environ["HOME"] = "/tmp"  # the uid may have no home in the image; Python and Locust write caches
    os.execvp(argv[0], argv)
    return 127  # unreachable


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
