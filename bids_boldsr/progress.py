"""One live console line per long step: ``name i/N (pct) elapsed, ETA``.

``Progress`` is the meter; :func:`step` is the coordinate-free hook engines call inside a loop
(``progress.step("sr train", i, n)``): it keeps one meter per name in this process. On a terminal
the line is rewritten in place (``\\r``); in a log file (batch jobs, containers) a new line is
written at most every ``interval`` seconds and at the end, so logs stay short."""
from __future__ import annotations

import os
import sys
import time

INTERVAL_S = float(os.environ.get("BIDS_BOLDSR_PROGRESS_S", "10"))


def format_seconds(s: float) -> str:
    s = int(round(max(s, 0.0)))
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:d}:{s % 60:02d}"


class Progress:
    def __init__(self, name, total, unit="step", enabled=True, stream=None, interval=None,
                 clock=time.monotonic, start_done=0):
        self.name, self.total, self.unit, self.enabled = name, int(total), unit, enabled
        self.stream = stream or sys.stderr
        self.interval = INTERVAL_S if interval is None else interval
        self.clock = clock
        self.start = clock()
        self.last_print = None
        self.done = self.start_done = int(start_done)  # the ETA counts steps done since the start
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self) -> str:
        elapsed = self.clock() - self.start
        pct = 100.0 * self.done / self.total if self.total else 100.0
        text = f"{self.name}: {self.unit} {self.done}/{self.total} ({pct:.0f}%) {format_seconds(elapsed)} elapsed"
        if self.start_done < self.done < self.total:
            rate = (self.done - self.start_done) / max(elapsed, 1e-9)
            text += f", ETA {format_seconds((self.total - self.done) / rate)}"
        elif self.done >= self.total and elapsed > 0 and self.done:
            text += f", {self.done / elapsed:.2f} {self.unit}/s"
        return text

    def update(self, done: int) -> None:
        self.done = int(done)
        if not self.enabled:
            return
        now, final = self.clock(), self.done >= self.total
        if not final and self.last_print is not None and now - self.last_print < self.interval:
            return
        self.last_print = now
        if self.tty:
            self.stream.write("\r" + self.line() + ("\n" if final else ""))
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()


_METERS: dict[str, Progress] = {}


def step(name: str, i: int, total: int, unit: str = "step") -> None:
    """Report that step ``i`` of ``total`` of the task ``name`` is done (1-based). A new meter
    starts when ``i`` is 1 or smaller than the last one; the meter is dropped at the end."""
    meter = _METERS.get(name)
    if meter is None or i <= 1 or i < meter.done or meter.total != total:
        meter = _METERS[name] = Progress(name, total, unit=unit, start_done=i,
                                         enabled=os.environ.get("BIDS_BOLDSR_PROGRESS", "1") != "0")
    meter.update(i)
    if i >= total:
        _METERS.pop(name, None)
