"""Per-stage profile of a participant run: wall and CPU seconds and peak memory of every Nipype node,
written to ``sub-<label>/log/<run_uuid>/profile.tsv`` (and ``profile.json``: totals, machine).

No psutil and no change to the nodes: a thread of the main process samples ``/proc`` of itself and
its descendants (the MultiProc workers) every ``interval`` seconds. A worker runs a node inside the
node's own folder of the work directory, so ``/proc/<pid>/cwd`` tells which node the CPU time and
resident memory belong to. Wall time, start and end come from each node's result record. CPU seconds
are exact up to one sampling interval at a node's start and end and include Nipype's own work on
the node (input hashing, result files: ~0.5 s), so ``cpu_per_wall`` is left empty for steps shorter
than four intervals; peak memory is the largest sampled
resident set (a spike shorter than the interval can be missed). Elsewhere than Linux only wall time
is written."""
from __future__ import annotations

import csv
import json
import os
import threading
import time
from datetime import datetime
from pathlib import Path

COLUMNS = ("node", "stage", "start_s", "end_s", "wall_s", "cpu_s", "cpu_per_wall", "peak_rss_gb",
           "status")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _read(pid: int):
    """(cpu seconds, rss bytes, cwd) of a process, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK, int(fields[21]) * _PAGE, cwd


class Sampler:
    """Context manager sampling the process tree; ``by_dir[cwd] = {"cpu_s", "peak_rss"}``."""

    def __init__(self, interval: float = 0.5, root: int | None = None):
        self.interval, self.root = interval, root or os.getpid()
        self.by_dir: dict[str, dict] = {}
        self.peak_total_rss = 0
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="bids-boldsr-profile")
        self.enabled = Path("/proc/self/stat").exists()

    def sample(self) -> None:
        total = 0
        for pid in [self.root, *descendants(self.root)]:
            got = _read(pid)
            if got is None:
                continue
            cpu, rss, cwd = got
            total += rss
            rec = self.by_dir.setdefault(cwd, {"cpu_s": 0.0, "peak_rss": 0})
            rec["cpu_s"] += max(0.0, cpu - self._last.get(pid, cpu if pid == self.root else 0.0))
            rec["peak_rss"] = max(rec["peak_rss"], rss)
            self._last[pid] = cpu
        self.peak_total_rss = max(self.peak_total_rss, total)

    def _loop(self):
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self):
        if self.enabled:
            self.sample()
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._stop.set()
            self._thread.join()
            self.sample()
        return False


def _runtime(result_file: Path):
    from nipype.utils.filemanip import loadpkl

    try:
        rt = loadpkl(result_file).runtime
    except Exception:  # noqa: BLE001 - an unreadable record is no profile row
        return None
    rt = rt[0] if isinstance(rt, list) and rt else rt
    start, end = getattr(rt, "startTime", None), getattr(rt, "endTime", None)
    if not start or not end:
        return None
    return datetime.fromisoformat(start).timestamp(), datetime.fromisoformat(end).timestamp()


def node_rows(wf_dir: Path, since: float, sampler: Sampler | None) -> list[dict]:
    """One row per node folder under a participant's workflow folder (``result_*.pklz``)."""
    rows = []
    for result in sorted(Path(wf_dir).rglob("result_*.pklz")):
        node_dir = result.parent
        times = _runtime(result)
        if times is None:
            continue
        reused = result.stat().st_mtime < since
        rec = (sampler.by_dir.get(str(node_dir.resolve())) or sampler.by_dir.get(str(node_dir))
               ) if sampler else None
        wall = times[1] - times[0]
        cpu = rec["cpu_s"] if rec and not reused else None
        rows.append({"node": ".".join(node_dir.relative_to(wf_dir).parts), "stage": node_dir.name,
                     "start_s": round(times[0] - since, 2), "end_s": round(times[1] - since, 2),
                     "wall_s": round(wall, 2),
                     "cpu_s": None if cpu is None else round(cpu, 2),
                     # cpu_s also holds Nipype's own work on the node (hashing, result files):
                     # the ratio means something only for steps of several sampling intervals
                     "cpu_per_wall": (None if cpu is None or not sampler or wall < 4 * sampler.interval
                                      else round(cpu / wall, 2)),
                     "peak_rss_gb": None if not rec or reused else round(rec["peak_rss"] / 1024 ** 3, 3),
                     "status": "reused" if reused else "computed"})
    return sorted(rows, key=lambda r: (r["start_s"], r["node"]))


def machine() -> dict:
    import platform

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    gpu = None
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001
        pass
    return {"cpus": cpus, "gpu": gpu, "load_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "platform": platform.platform()}


def write_profile(log_dir: Path, wf_dir: Path, since: float, sampler: Sampler | None,
                  finished: float | None = None) -> Path:
    """``profile.tsv`` (COLUMNS; empty cells: not measured) and ``profile.json`` in ``log_dir``."""
    from .atomic import atomic_write_text

    rows = node_rows(wf_dir, since, sampler)
    log_dir.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(COLUMNS)] + ["\t".join("n/a" if r[c] is None else str(r[c]) for c in COLUMNS)
                                    for r in rows]
    tsv = log_dir / "profile.tsv"
    atomic_write_text(tsv, "\n".join(lines) + "\n")
    computed = [r for r in rows if r["status"] == "computed"]
    summary = {"wall_s": round((finished or time.time()) - since, 2),
               "nodes_computed": len(computed), "nodes_reused": len(rows) - len(computed),
               "cpu_s": round(sum(r["cpu_s"] or 0 for r in computed), 2),
               "peak_total_rss_gb": round(sampler.peak_total_rss / 1024 ** 3, 3) if sampler else None,
               "sampling_interval_s": sampler.interval if sampler else None, "machine": machine()}
    atomic_write_text(log_dir / "profile.json", json.dumps(summary, indent=2) + "\n")
    return tsv


def read_profile(tsv: Path) -> list[dict]:
    with open(tsv, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def cell_value(v) -> float | None:
    """A number of ``profile.tsv`` (None where it was not measured)."""
    return float(v) if v not in (None, "", "n/a") else None


def format_table(rows: list[dict], top: int | None = None) -> str:
    """Per-stage table, slowest first: stage, wall, CPU, CPU/wall, peak memory."""
    num = cell_value
    rows = sorted(rows, key=lambda r: -(num(r["wall_s"]) or 0))[:top]
    out = [f"{'node':<48} {'wall s':>8} {'cpu s':>8} {'cpu/wall':>8} {'peak GB':>8} {'status':>8}"]
    for r in rows:
        vals = [num(r[c]) for c in ("wall_s", "cpu_s", "cpu_per_wall", "peak_rss_gb")]
        cells = [f"{v:8.1f}" if v is not None and i < 2 else (f"{v:8.2f}" if v is not None else f"{'n/a':>8}")
                 for i, v in enumerate(vals)]
        out.append(f"{r['node'][-48:]:<48} " + " ".join(cells) + f" {r['status']:>8}")
    return "\n".join(out)
