"""Progress of long model jobs in the log: done / total, rate and time left, at most every 30 s.

An LLM or embedding job on a slow CPU can run for many minutes per batch; without this its log is silent
and a slow machine looks like a hung one. Lines carry counts and timings only.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("emerge_ehr")


def duration(seconds: float) -> str:
    """A short human duration.

    >>> duration(42), duration(125), duration(7300)
    ('42 s', '2 min 5 s', '2 h 1 min')
    """
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


class Progress:
    """Counts finished items and logs ``label: done of total unit (rate/s, about T left)``.

    A line is written when ``interval`` seconds have passed since the last one, and when the total is reached.
    """

    def __init__(self, label: str, total: int, unit: str, interval: float = 30.0, clock=time.monotonic) -> None:
        self.label, self.total, self.unit, self.interval, self.clock = label, total, unit, interval, clock
        self.done = 0
        self.started = self.last = clock()

    def advance(self, n: int = 1) -> None:
        if n <= 0:
            return
        self.done += n
        now = self.clock()
        if self.done >= self.total or now - self.last >= self.interval:
            self.last = now
            log.info("%s", self.line(now))

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        text = f"{self.label}: {self.done} of {self.total} {self.unit} ({rate:.2f}/s"
        if self.total * 0.05 <= self.done < self.total:  # an estimate from the first few items misleads
            text += f", about {duration((self.total - self.done) / rate)} left"
        return text + f", {duration(elapsed)} so far)"
