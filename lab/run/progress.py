"""What a run tells the person watching it: one line per event, each with how far the run is and how long the rest
should take. The runner reports to a Listener; Progress prints. In compose, Ctrl-C ends the services' output at
once, so there every line also says how to continue: the last line a user sees then does."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class Listener(Protocol):
    def planned(self, repeats: int) -> None:
        """This many more repeats are to come (a phase was planned)."""
        ...

    def passed(self, repeats: int) -> None:
        """This many planned repeats need no measuring (done before a resume, or their cell failed)."""
        ...

    def measured(self, text: str) -> None:
        """One repeat was measured; `text` says how it went."""
        ...

    def say(self, text: str) -> None:
        """Anything else worth a line."""
        ...

    @property
    def per_repeat(self) -> float:
        """Seconds per measured repeat so far, everything included (0 before the first): the budget's estimate."""
        ...


def fmt(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@dataclass
class Progress:
    """A Listener that prints: `[done/total] what happened | elapsed, ETA` on stderr."""

    total: int = 0
    write: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr, flush=True))
    resume_hint: str = ""
    done: int = 0
    count: int = 0  # repeats measured in this session (for the ETA)
    started: float = field(default_factory=time.monotonic)

    def planned(self, repeats: int) -> None:
        self.total += repeats

    def passed(self, repeats: int) -> None:
        self.done += repeats

    def measured(self, text: str) -> None:
        self.done += 1
        self.count += 1
        self.say(text)

    def say(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        eta = f"ETA {fmt(elapsed / self.count * max(self.total - self.done, 0))}" if self.count else "ETA ?"
        self.write(f"[{self.done}/{self.total}] {text} | elapsed {fmt(elapsed)}, {eta}{self.resume_hint}")

    @property
    def per_repeat(self) -> float:
        """Seconds per measured repeat so far, everything included (0 before the first)."""
        return (time.monotonic() - self.started) / self.count if self.count else 0.0
