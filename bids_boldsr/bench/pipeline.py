"""``bids-boldsr-bench pipeline DS``: the participant level on a dataset (default settings unless
given after ``--``), then its per-stage profile table (``profile.tsv``), the total and the machine.

``DS`` is a BIDS folder or the name of one under ../shared/data (ds-xa30, ds-forrest). Example:
``bids-boldsr-bench pipeline ds-xa30 --json docs/results/pipeline-xa30.json -- --nprocs 2``."""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from ..profile import format_table, read_profile
from .gpu import DATA


def main(argv=None) -> int:
    from ..cli.run import main as run

    argv = list(argv or [])
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(prog="bids-boldsr-bench pipeline", description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("--out", type=Path, help="output folder (default: a temporary one)")
    p.add_argument("--work", type=Path, help="work folder (default: beside the outputs; reuse = resume)")
    p.add_argument("--top", type=int, default=25, help="rows of the table (slowest first)")
    p.add_argument("--json", type=Path)
    opts = p.parse_args(argv)
    ds = Path(opts.dataset)
    if not ds.exists() and (DATA / opts.dataset).is_dir():
        ds = DATA / opts.dataset
    with tempfile.TemporaryDirectory() as tmp:
        out = opts.out or Path(tmp) / "out"
        work = opts.work or out.parent / "work"
        t0 = time.time()
        code = run([str(ds), str(out), "participant", "-w", str(work), *extra])
        total = time.time() - t0
        profiles = [p for p in out.glob("sub-*/log/*/profile.tsv") if p.stat().st_mtime >= t0]
        result = {"dataset": str(ds), "arguments": extra, "exit_code": code, "total_s": round(total, 1),
                  "participants": {}}
        for tsv in sorted(profiles):
            rows = read_profile(tsv)
            summary = json.loads((tsv.parent / "profile.json").read_text())
            label = tsv.parents[2].name
            result["participants"][label] = {"summary": summary, "stages": rows}
            print(f"{label}: {summary['nodes_computed']} steps computed, {summary['nodes_reused']} reused")
            print(format_table(rows, opts.top))
            print(f"total {summary['wall_s']:.1f} s wall, {summary['cpu_s']:.1f} s CPU in the steps, peak "
                  f"memory {summary['peak_total_rss_gb']} GB; machine: {summary['machine']}")
    if opts.json:
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        opts.json.write_text(json.dumps(result, indent=2) + "\n")
    return code
