"""Graph's documented per-tenant limit on invitations: 150 requests per 5 seconds, all apps together.

Throttling is about request rate, so the window is real (monotonic) time, not scenario time.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

INVITATIONS_PER_WINDOW = 150
INVITATION_WINDOW_S = 5.0


class SlidingWindowLimit:
    """At most ``limit`` requests in any ``window_s`` seconds."""

    def __init__(self, limit: int = INVITATIONS_PER_WINDOW, window_s: float = INVITATION_WINDOW_S) -> None:
        self.limit = limit
        self.window_s = window_s
        self._hits: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> int | None:
        """Record a request and return None, or return the Retry-After (whole seconds) when over the limit."""
        now = time.monotonic()
        with self._lock:
            while self._hits and now - self._hits[0] >= self.window_s:
                self._hits.popleft()
            if len(self._hits) >= self.limit:
                return max(1, math.ceil(self.window_s - (now - self._hits[0])))
            self._hits.append(now)
            return None
