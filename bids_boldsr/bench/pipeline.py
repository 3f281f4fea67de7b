"""``bids-boldsr-bench pipeline DS``: the participant level on a dataset (default settings unless
given after ``--``), then its per-stage profile table (``profile.tsv``), the total and the machine.

``DS`` is a BIDS folder or the name of one under ../shared/data (ds-xa30, ds-forrest). Example:
``bids-boldsr-bench pipeline ds-xa30 --json docs/results/pipeline-xa30.json -- --nprocs 2``.
``--volumes N`` runs a copy in which every BOLD run keeps its first N volumes (and its events that start
before them): memory and time against run length."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import nibabel as nib

from ..cli.parser import _positive_int
from ..profile import format_table, read_profile
from .gpu import DATA


def truncated_copy(ds: Path, dest: Path, volumes: int) -> Path:
    """``ds`` at ``dest`` with each BOLD run cut to its first ``volumes`` volumes and its events to those
    starting before the cut; every other file is a link to the original (nothing in ``ds`` is written)."""
    shutil.copytree(Path(ds).resolve(), dest, copy_function=os.symlink)  # absolute links
    for bold in dest.rglob("*_bold.nii*"):
        img = nib.load(os.readlink(bold))
        bold.unlink()
        nib.save(img.slicer[..., :volumes], bold)
        stem = str(bold).split("_bold.nii")[0]
        events, sidecar = Path(stem + "_events.tsv"), Path(stem + "_bold.json")
        if events.is_symlink():
            lines = Path(os.readlink(events)).read_text().splitlines()
            meta = json.loads(sidecar.read_text()) if sidecar.exists() else {}
            end = volumes * float(meta.get("RepetitionTime") or img.header.get_zooms()[3])
            events.unlink()
            keep = [ln for ln in lines[1:] if ln.strip() and float(ln.split("\t")[0]) < end]
            events.write_text("\n".join([lines[0], *keep]) + "\n")
    return dest


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
    p.add_argument("--volumes", type=_positive_int, help="run a copy whose BOLD runs keep their first N volumes")
    opts = p.parse_args(argv)
    ds = Path(opts.dataset)
    if not ds.exists() and (DATA / opts.dataset).is_dir():
        ds = DATA / opts.dataset
    with tempfile.TemporaryDirectory() as tmp:
        if opts.volumes:
            ds = truncated_copy(ds, Path(tmp) / f"{ds.name}-{opts.volumes}vols", opts.volumes)
        out = opts.out or Path(tmp) / "out"
        work = opts.work or out.parent / "work"
        t0 = time.time()
        code = run([str(ds), str(out), "participant", "-w", str(work), *extra])
        total = time.time() - t0
        profiles = [p for p in out.glob("sub-*/log/*/profile.tsv") if p.stat().st_mtime >= t0]
        result = {"dataset": str(ds), "volumes": opts.volumes, "arguments": extra, "exit_code": code,
                  "total_s": round(total, 1),
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
