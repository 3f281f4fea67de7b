"""The participant's processing timeline (from ``profile.tsv``): one bar per step from its start to
its end, so steps that ran side by side, and what waited, can be seen; the slowest steps as a table."""
from __future__ import annotations

import json
from pathlib import Path

from ..profile import cell_value as _num
from . import plotting as P

STATUS_COLORS = {"computed": "#1f77b4", "reused": "#bdbdbd"}


def latest_profile(output_dir, subject: str, run_uuid: str | None = None) -> Path | None:
    """This run's ``profile.tsv`` (``run_uuid``), else the newest one of the participant."""
    log = Path(output_dir) / f"sub-{subject}" / "log"
    if run_uuid and (log / run_uuid / "profile.tsv").exists():
        return log / run_uuid / "profile.tsv"
    found = sorted(log.glob("*/profile.tsv"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def timeline(rows: list[dict], out_png, min_wall_s: float = 0.5) -> Path:
    """Gantt chart of the steps that took at least ``min_wall_s`` (the sinks' instants are left out),
    earliest at the top, labelled with the stage and its wall seconds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r for r in rows if _num(r["start_s"]) is not None and (_num(r["wall_s"]) or 0) >= min_wall_s]
    steps.sort(key=lambda r: _num(r["start_s"]))
    if not steps:
        raise ValueError("no timed steps in the profile")
    end = max(_num(r["end_s"]) for r in steps)
    height = 0.28 * len(steps) + 1.0
    fig, ax = plt.subplots(figsize=(9, height))
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.55 / height, top=1 - 0.35 / height)  # inches
    for i, r in enumerate(steps):
        start, wall = _num(r["start_s"]), _num(r["wall_s"])
        ax.barh(i, wall, left=start, color=STATUS_COLORS.get(r["status"], "#ff7f0e"), height=0.7)
        ax.text(start + wall + end * 0.005, i, f"{r['stage']} {wall:.0f} s", va="center", fontsize=7)
    ax.set_yticks([])
    ax.invert_yaxis()
    ax.set_xlim(0, end * 1.35)  # room for the labels of the last steps
    ax.set_xlabel("seconds since the participant's first step")
    ax.set_title("processing timeline (blue: computed, grey: reused from the work directory)", fontsize=9)
    return P.save(fig, out_png)


def profile_section(tsv: Path, figdir: Path, top: int = 8) -> dict:
    """What the report's Profile section shows: the timeline, the slowest steps and the totals."""
    from ..profile import read_profile

    rows = read_profile(tsv)
    summary_file = tsv.with_name("profile.json")
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    slowest = sorted(rows, key=lambda r: -(_num(r["wall_s"]) or 0))[:top]
    return {"timeline": timeline(rows, Path(figdir) / "profile_timeline.png"),
            "slowest": [{"stage": r["stage"], "node": r["node"], "wall": r["wall_s"], "cpu": r["cpu_s"],
                         "peak": r["peak_rss_gb"], "status": r["status"]} for r in slowest],
            "summary": summary, "tsv": tsv}
