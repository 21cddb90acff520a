"""The secret the target agent and its runner share: every request to the agent carries it, and the agent compares it
in constant time. It lives in a file only its owner can read (mode 0600) and is never printed or logged: the agent
says where the file is, not what is in it.

    python -m core.secret PATH      create PATH with a new secret (kept when it exists); prints PATH
"""

from __future__ import annotations

import hmac
import os
import secrets
import sys
from pathlib import Path

from core.errors import UsageError

HEADER = "authorization"  # `Authorization: Bearer <secret>`
SCHEME = "Bearer "
MIN_LENGTH = 32  # characters: a secret given by hand shorter than this is refused


def generate() -> str:
    return secrets.token_urlsafe(32)  # 256 bits


def check(secret: str, where: str) -> str:
    """A secret as given (a file's content, a setting): stripped, and refused when short or not plain text."""
    value = secret.strip()
    if len(value) < MIN_LENGTH or not value.isascii() or not value.isprintable() or " " in value:
        raise UsageError(
            f"the agent secret in {where} must be at least {MIN_LENGTH} printable ASCII characters without spaces; "
            "make one with: python -m core.secret FILE"
        )
    return value


def read(path: Path) -> str:
    try:
        return check(path.read_text(), str(path))
    except OSError as exc:
        raise UsageError(f"the agent secret file {path} cannot be read ({exc.strerror}); give its path") from None


def ensure(path: Path) -> str:
    """The secret in `path`, made (0600, atomically, never overwritten) when the file does not exist yet."""
    if path.exists():
        return read(path)
    value = generate()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made meanwhile by the other side: theirs counts
        return read(path)
    except OSError as exc:
        raise UsageError(f"the agent secret file {path} cannot be made ({exc.strerror}); name another") from None
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def header(secret: str) -> dict[str, str]:
    return {HEADER: SCHEME + secret}


def matches(given: str | None, secret: str) -> bool:
    """Whether a request's Authorization header carries the secret; constant time in the secret's content."""
    if not given or not given.startswith(SCHEME):
        return False
    return hmac.compare_digest(given[len(SCHEME) :].encode(errors="replace"), secret.encode())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m core.secret PATH\n")
        return 2
    ensure(Path(args[0]))
    print(args[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
