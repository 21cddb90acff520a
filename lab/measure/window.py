"""A measured window: what it measures (a scenario at an offered rate, its number, warm-up and duration)."""

from __future__ import annotations

from dataclasses import dataclass


def point_label(scenario: str, rate: float) -> str:
    """A scenario, or a scenario at an offered rate: json, json@2000."""
    return f"{scenario}@{rate:g}" if rate else scenario


@dataclass(frozen=True)
class Work:
    """One measured repeat of a point: its scenario, offered rate (0: the closed model), number and timing."""

    scenario: str
    rate: float
    number: int  # the round (throughput and extra rounds); 1 in the sweep
    warmup: float
    duration: float

    @property
    def label(self) -> str:
        return point_label(self.scenario, self.rate)
