"""``bids-boldsr-bench mappings``: how far apart are two runs' template -> BOLD mappings?

Reads the transforms bids-boldsr wrote for one BOLD run in a reference output folder (typically a run
with a T1w: template -> (warp ->) T1w -> BOLD reference) and in other output folders of the same data
(e.g. processed without the T1w, or with other ``--registration`` settings), maps every template brain
voxel (2 mm mask) through each chain and reports the distance (mm) to the reference mapping: mean,
median and 95th percentile inside the BOLD field of view, and the mean below z = -20 mm (cerebellum and
brainstem level, where slabs are clipped).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np


def template_to_boldref_chain(out_dir: Path, run: str, space: str) -> list[Path]:
    """The pull chain template -> BOLD reference written for ``run`` (a file stem like
    ``sub-02/func/sub-02_task-x_run-1``) in a bids-boldsr output folder."""
    func = out_dir / f"{run}_"
    sub = out_dir / run.split("/")[0] / "anat" / run.split("/")[0]
    direct = sorted(out_dir.glob(f"{run}_from-boldref_to-{space}_mode-image*_xfm.*"))
    if direct:
        warp = [p for p in direct if p.name.endswith("desc-warp_xfm.nii.gz")]
        return warp + [p for p in direct if p.suffix == ".txt"]
    t1w = sorted(sub.parent.glob(f"{sub.name}*_from-T1w_to-{space}_mode-image*_xfm.*"))
    warp = [p for p in t1w if p.name.endswith("desc-warp_xfm.nii.gz")]
    return warp + [p for p in t1w if p.suffix == ".txt"] + [Path(f"{func}from-boldref_to-T1w_mode-image_xfm.txt")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bids-boldsr-bench mappings", description=__doc__.split("\n")[0])
    p.add_argument("--reference", required=True, type=Path, help="output folder of the reference run")
    p.add_argument("--others", required=True, type=Path, nargs="+", help="output folders to compare")
    p.add_argument("--run", required=True, help="run stem, e.g. sub-02/func/sub-02_task-oneback_run-1")
    p.add_argument("--space", default="MNI152NLin2009aSym")
    p.add_argument("--json")
    args = p.parse_args(argv)
    from .. import templates as tpl
    from ..registration.io import load_chain
    from ..registration.resample import grid_points, map_points

    mask = tpl.embedded_image(2, desc="brain", suffix="mask")
    points = grid_points(mask.shape, mask.affine)[np.asanyarray(mask.dataobj).ravel() > 0]
    ref_chain = template_to_boldref_chain(args.reference, args.run, args.space)
    truth = map_points(points, load_chain(ref_chain))
    boldref = nib.load(args.reference / f"{args.run}_boldref.nii.gz")
    inv = np.linalg.inv(boldref.affine)
    vox = truth @ inv[:3, :3].T + inv[:3, 3]
    inside = np.all((vox > -0.5) & (vox < np.array(boldref.shape[:3]) - 0.5), axis=1)
    low = inside & (points[:, 2] < -20)
    report = {"reference": [str(p) for p in ref_chain], "voxels_in_fov": int(inside.sum()), "others": {}}
    for other in args.others:
        chain = template_to_boldref_chain(other, args.run, args.space)
        d = np.linalg.norm(map_points(points, load_chain(chain)) - truth, axis=1)
        row = {"chain": [p.name for p in chain], "mean_mm": float(d[inside].mean()),
               "median_mm": float(np.median(d[inside])), "p95_mm": float(np.percentile(d[inside], 95)),
               "mean_below_z-20_mm": float(d[low].mean()) if low.any() else None}
        report["others"][str(other)] = row
        print(f"{other}: {' + '.join(row['chain'])}\n  distance to the reference mapping in the FOV: mean "
              f"{row['mean_mm']:.2f} mm, median {row['median_mm']:.2f}, 95th pct {row['p95_mm']:.2f}; "
              f"below z=-20 mm: {row['mean_below_z-20_mm']:.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
