"""Scenario time: real time multiplied by the time scale, plus any manual advance.

Every delay in a scenario is stated in real-world time ("60m", "36h"). With ``--time-scale 3600`` an
hour of scenario time passes in one real second, so the same scenario serves a demo, a test and a
multi-day rehearsal. Tests can also move the clock forward explicitly through the admin API.
"""

from __future__ import annotations

import math
import re
import threading
import time
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: str | int | float) -> timedelta:
    """Parse ``"90m"``, ``"36h"``, ``"1.5d"``, ``"250ms"`` or a number of seconds.

    Raises:
        ValueError: the text is not a duration; the message shows the accepted forms.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:  # YAML's .inf and .nan are floats
            raise ValueError(f"a duration is a finite number of seconds, not negative: {value!r}")
        return _seconds(float(value), value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(
            f"not a duration: {value!r} (use a number of seconds or e.g. '250ms', '30s', '90m', '36h', '2d')"
        )
    return _seconds(float(match.group(1)) * _UNIT_SECONDS[match.group(2)], value)


def _seconds(seconds: float, given: object) -> timedelta:
    try:
        return timedelta(seconds=seconds)
    except OverflowError as exc:  # past timedelta's 999999999 days: a ValueError, so that pydantic names the field
        raise ValueError(f"too long a duration: {given!r}") from exc


class ScenarioClock:
    """A clock that runs ``time_scale`` times faster than the wall clock and can be advanced."""

    def __init__(self, time_scale: float = 1.0, start: datetime | None = None) -> None:
        if time_scale <= 0:
            raise ValueError(f"time scale must be positive, got {time_scale}")
        self._lock = threading.Lock()
        self.time_scale = float(time_scale)
        self._origin = start or datetime.now(UTC)
        self._real_origin = time.monotonic()
        self._advanced = timedelta()

    def now(self) -> datetime:
        """The current scenario time (timezone-aware, UTC)."""
        elapsed = (time.monotonic() - self._real_origin) * self.time_scale
        with self._lock:
            return self._origin + timedelta(seconds=elapsed) + self._advanced

    @property
    def started_at(self) -> datetime:
        """Scenario time at which the sandbox started."""
        return self._origin

    def advance(self, delta: timedelta) -> datetime:
        """Jump the scenario clock forward (never backward) and return the new time."""
        if delta < timedelta():
            raise ValueError("the scenario clock only moves forward")
        with self._lock:
            self._advanced += delta
        return self.now()

    def real_seconds(self, scenario_delta: timedelta) -> float:
        """How many real seconds a scenario duration takes at this time scale."""
        return scenario_delta.total_seconds() / self.time_scale
