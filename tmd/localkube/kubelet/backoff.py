"""Crash-loop back-off: the kubelet's exponential restart delay (10 s doubling to 5 min)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    """`base` is configurable so tests need not wait 10 s; `reset_after` is how long a container must
    run before its crash history is forgotten (the kubelet uses 2 × the cap)."""

    base: float = 10.0
    cap: float = 300.0

    @property
    def reset_after(self) -> float:
        return 2 * self.cap

    def delay(self, crashes: int) -> float:
        """Delay before the restart that follows the `crashes`-th consecutive crash (1-based)."""
        if crashes <= 0:
            return 0.0
        return min(self.base * (2 ** (crashes - 1)), self.cap)

    def crashes_after(self, previous_crashes: int, ran_for: float) -> int:
        """Consecutive crash count after a container that ran `ran_for` seconds has exited."""
        return 1 if ran_for >= self.reset_after else previous_crashes + 1
