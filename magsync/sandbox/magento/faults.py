"""Faults of the Magento sandbox aimed at one read: the subscriber list failing mid-way.

The generic faults (``/_sandbox/faults``) hit the next N requests, whatever they are; a
client that retries gets past them. This one hits every request for page N and later of
``GET /V1/emarsys/subscriptions`` until cleared (or ``times`` requests), so a client's
read really stays incomplete and "an incomplete read deletes nothing" can be tested.
"""

from __future__ import annotations

import threading
from typing import Any


class PageFault:
    """Fail subscriber-list pages from ``from_page`` on; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.from_page: int | None = None
        self.status = 500
        self.times: int | None = None  # None: until cleared

    def set(self, from_page: int | None, status: int = 500, times: int | None = None) -> None:
        """Arm (or, with ``from_page`` None, clear) the fault."""
        if from_page is not None and from_page < 1:
            raise ValueError("subscriptions_fail_from_page counts from 1")
        with self._lock:
            self.from_page, self.status, self.times = from_page, status, times

    def hit(self, page: int) -> int | None:
        """The status to fail this request for ``page`` with, or None to answer it."""
        with self._lock:
            if self.from_page is None or page < self.from_page:
                return None
            if self.times is not None:
                self.times -= 1
                if self.times <= 0:
                    self.from_page = None
            return self.status

    def as_json(self) -> dict[str, Any]:
        """The fault as the control plane shows it."""
        with self._lock:
            return {"subscriptions_fail_from_page": self.from_page, "status": self.status,
                    "times": self.times}
