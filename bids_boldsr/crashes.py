"""Crash reports of failed Nipype nodes: read, filed under the participant's log folder, and
summarised on one screen (node, error, crash file) instead of tracebacks."""
from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass
from pathlib import Path

MAX_LISTED = 8  # crashes listed one by one; the rest are counted


@dataclass(frozen=True)
class Crash:
    node: str       # full node name, e.g. bids_boldsr_0_4_0_wf.sub_01_wf.bold_..._wf.sr
    error: str      # the exception's last line
    path: Path      # the crash report

    @property
    def no_space(self) -> bool:
        return os.strerror(errno.ENOSPC) in self.error or "ENOSPC" in self.error


def read_crash(path) -> Crash:
    """Node and error of one text crash report (nipype ``crash2txt``)."""
    path = Path(path)
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return Crash("?", f"crash report unreadable ({exc.strerror or exc})", path)
    node = next((x[6:].strip() for x in lines if x.startswith("Node: ")),
                path.name.removesuffix(".txt").removesuffix(".pklz"))
    body = [x.strip() for x in lines if x.strip() and not x.strip().startswith("Traceback")
            and x.strip() != "..."]
    return Crash(node, body[-1] if body else "(no error line: see the crash report)", path)


def file_crashes(crash_dir, log_dirs: dict) -> list[Crash]:
    """Move each crash report of ``crash_dir`` into the log folder of the participant whose
    sub-workflow (``sub_<label>_wf``) holds the node; ``log_dirs`` maps that name to the folder.
    Returns the crashes with their final paths."""
    crashes = []
    for path in sorted(Path(crash_dir).glob("crash-*")):
        crash = read_crash(path)
        parts = crash.node.split(".")
        dest = next((d for name, d in log_dirs.items() if name in parts), None)
        if dest is not None and Path(dest) != path.parent:
            Path(dest).mkdir(parents=True, exist_ok=True)
            target = Path(dest) / path.name
            os.replace(path, target)
            crash = Crash(crash.node, crash.error, target)
        crashes.append(crash)
    return crashes


def summary(crashes: list[Crash]) -> list[str]:
    """One screen: a line per failed node (the first ``MAX_LISTED``), its error and report."""
    lines = [f"{len(crashes)} processing step(s) failed:"]
    for c in crashes[:MAX_LISTED]:
        lines.append(f"  {c.node.split('.', 1)[-1]}: {c.error[:200]}")
        lines.append(f"    crash report: {c.path}")
    if len(crashes) > MAX_LISTED:
        lines.append(f"  ... and {len(crashes) - MAX_LISTED} more (see the log folders)")
    return lines


class ShortCrashLog(logging.Filter):
    """Nipype logs each crash with its whole traceback; keep that record's first line (the
    crash file path) so the terminal shows the summary, not pages of tracebacks. The full
    traceback stays in the crash report."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if msg.startswith("Saving crash info to") or "Traceback (most recent call last)" in msg:
            first = msg.splitlines()[0]
            record.msg, record.args = first, ()
        return True


def install_short_crash_log() -> None:
    """Attach :class:`ShortCrashLog` to nipype's workflow logger (once)."""
    logger = logging.getLogger("nipype.workflow")
    if not any(isinstance(f, ShortCrashLog) for f in logger.filters):
        logger.addFilter(ShortCrashLog())
