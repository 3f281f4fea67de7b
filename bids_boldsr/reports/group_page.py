"""Group report ``group_report.html``: one strip plot per QC metric (each run a point linking to its
participant's report, Tukey-fence outliers in red), a table, a task filter and the failures."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import collect
from .participant import fmt

WIDTH, HEIGHT, PAD = 520, 50, 30
SKIP = {"subject", "run", "sr_method", "repetition_time"}


def tukey(values: np.ndarray, k: float = 1.5) -> tuple[float, float]:
    """Lower and upper Tukey fences (Q1 - k IQR, Q3 + k IQR) of the finite values."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return -math.inf, math.inf
    q1, q3 = np.percentile(v, [25, 75])
    return float(q1 - k * (q3 - q1)), float(q3 + k * (q3 - q1))


def _task(run: str) -> str:
    return run.split("task-")[1].split("_")[0] if "task-" in run else ""


def strips(table) -> list[dict]:
    """Per numeric metric: points (x, y, link, outlier), fences and axis ticks for an inline SVG."""
    out = []
    runs = table["run"].astype(str).tolist()
    subjects = table["subject"].astype(str).tolist()
    for col in table.columns:
        if col in SKIP or table[col].dtype.kind not in "if" or not table[col].notna().any():
            continue
        vals = table[col].to_numpy(dtype=float)
        lo_f, hi_f = tukey(vals)
        finite = vals[np.isfinite(vals)]
        lo, hi = float(finite.min()), float(finite.max())
        span = (hi - lo) or max(abs(hi), 1.0)
        lo, hi = lo - 0.05 * span, hi + 0.05 * span

        def x(v):
            return PAD + (WIDTH - 2 * PAD) * (v - lo) / (hi - lo)

        rng = np.random.default_rng(len(col))
        points = []
        for run, sub, v in zip(runs, subjects, vals):
            if not np.isfinite(v):
                continue
            points.append({"x": round(x(v), 1), "y": round(HEIGHT / 2 + rng.uniform(-12, 12), 1),
                           "href": f"sub-{sub}.html#{run}", "run": run, "task": _task(run), "text": fmt(float(v)),
                           "outlier": bool(v < lo_f or v > hi_f)})
        fences = [round(x(f), 1) for f in (lo_f, hi_f) if lo <= f <= hi]
        ticks = [{"x": round(x(t), 1), "text": fmt(float(t))} for t in np.linspace(lo, hi, 5)]
        out.append({"metric": col, "points": points, "fences": fences, "ticks": ticks,
                    "n_outliers": sum(p["outlier"] for p in points),
                    "fence_text": f"{fmt(lo_f)} .. {fmt(hi_f)}"})
    return out


def failures(output_dir, table) -> list[dict]:
    """Crash files of every participant with a log folder, and participants without a QC table."""
    out = []
    done = set(table["subject"].astype(str))
    for sub_dir in sorted(Path(output_dir).glob("sub-*/")):
        sub = sub_dir.name.removeprefix("sub-")
        for crash in collect.crash_files(output_dir, sub):
            info = collect.parse_crash(crash)
            out.append({"subject": sub, "node": info["node"], "message": info["message"],
                        "file": crash.relative_to(output_dir).as_posix()})
        if sub not in done and (sub_dir / "log").is_dir():
            out.append({"subject": sub, "node": "(no QC table)", "message":
                        f"sub-{sub} has logs but no sub-{sub}_qc.tsv: its run failed or has not finished",
                        "file": ""})
    return out


def group_report(output_dir, table, out_name="group_report.html") -> Path:
    from ..atomic import atomic_write_text
    from .render import render

    output_dir = Path(output_dir)
    cols = [c for c in table.columns if c not in ("subject",)]
    rows = []
    plots = strips(table)
    outliers = {(p["run"], s["metric"]) for s in plots for p in s["points"] if p["outlier"]}
    for rec in table.to_dict(orient="records"):
        run = str(rec["run"])
        rows.append({"run": run, "subject": str(rec["subject"]), "task": _task(run),
                     "cells": [{"metric": c, "text": fmt(rec[c]) if not isinstance(rec[c], str) else rec[c],
                                "outlier": (run, c) in outliers} for c in cols if c != "run"]})
    page = render("group.html.j2", n_runs=len(table), n_subjects=table["subject"].nunique(),
                  tasks=sorted({r["task"] for r in rows if r["task"]}), strips=plots, width=WIDTH, height=HEIGHT,
                  columns=[c for c in cols if c != "run"], rows=rows, failures=failures(output_dir, table))
    return atomic_write_text(output_dir / out_name, page)
