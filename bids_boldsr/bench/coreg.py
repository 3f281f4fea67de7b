"""``bids-boldsr-bench coreg``: how stable is the BOLD -> T1w rigid coregistration from perturbed starts?

The run's BOLD reference (the workflow's ``bold_reference``) is displaced by ``--starts`` seeded rigid
moves (uniform, up to ``--max-mm`` along and ``--max-deg`` about each axis, rotations about the T1w
brain's centre) and registered to the T1w (rigid, mutual information, T1w brain mask from the embedded
template: the workflow's ``coreg`` step) by today's single start (``n_starts=1``) and by the multi-start
(``--n-starts``). Each estimate, with its move undone, maps the T1w brain-mask voxels into the reference;
the spread of a method is, per start, the 95th percentile over the brain of the distance between that
start's mapped points and the consensus (the per-point median over all starts), and the largest
pairwise 95th percentile. CPU seconds per registration (1 thread) are reported for both.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np


def perturbation(rng, centre, mm: float, deg: float) -> np.ndarray:
    """A rigid world move: rotation about ``centre`` (uniform +-deg per axis) then a shift (+-mm)."""
    from scipy.spatial.transform import Rotation

    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("xyz", rng.uniform(-deg, deg, 3), degrees=True).as_matrix()
    m[:3, 3] = centre - m[:3, :3] @ centre + rng.uniform(-mm, mm, 3)
    return m


def spread(estimates: list[np.ndarray], points: np.ndarray) -> dict:
    """Per-start p95 distance (mm) to the consensus mapping and the largest pairwise p95."""
    mapped = np.stack([points @ e[:3, :3].T + e[:3, 3] for e in estimates])
    consensus = np.median(mapped, 0)
    p95 = [float(np.percentile(np.linalg.norm(m - consensus, axis=1), 95)) for m in mapped]
    pair = max((float(np.percentile(np.linalg.norm(a - b, axis=1), 95))
                for i, a in enumerate(mapped) for b in mapped[i + 1:]), default=0.0)
    return {"p95_to_consensus_mm": p95, "max_p95_to_consensus_mm": max(p95),
            "median_p95_to_consensus_mm": float(np.median(p95)), "max_pairwise_p95_mm": pair}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bids-boldsr-bench coreg", description=__doc__.split("\n")[0])
    p.add_argument("--bold", required=True, help="a real BOLD run")
    p.add_argument("--t1w", required=True, help="the participant's T1w (with skull)")
    p.add_argument("--ref", help="register this reference volume instead of the run's bold_reference "
                   "(e.g. the workflow's super-resolved sr_boldref output)")
    p.add_argument("--starts", type=int, default=10, help="perturbed starting positions")
    p.add_argument("--max-mm", type=float, default=10.0)
    p.add_argument("--max-deg", type=float, default=10.0)
    p.add_argument("--n-starts", type=int, default=13, help="multi-start: starts per registration")
    p.add_argument("--sloppy", action="store_true", help="fast settings (tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json")
    args = p.parse_args(argv)
    import torch

    from ..registration.boldref import bold_reference
    from ..registration.linear import register_linear
    from .register_sr import t1w_brain

    torch.set_num_threads(1)
    t1w = nib.load(args.t1w)
    mask = t1w_brain(t1w, args.sloppy)
    ref = nib.load(args.ref) if args.ref else bold_reference(nib.load(args.bold))[0]
    ijk = np.argwhere(np.asanyarray(mask.dataobj) > 0)
    points = ijk @ mask.affine[:3, :3].T + mask.affine[:3, 3]
    rng = np.random.default_rng(args.seed)
    moves = [perturbation(rng, points.mean(0), args.max_mm, args.max_deg) for _ in range(args.starts)]
    data = np.asarray(ref.dataobj)
    methods = {"single-start (before)": 1, f"multi-start (n_starts={args.n_starts})": args.n_starts}
    results = {}
    for name, n in methods.items():
        estimates, cpu = [], []
        for move in moves:
            t0 = time.process_time()
            est = register_linear(nib.Nifti1Image(data, move @ ref.affine), t1w, dof=6, cost="mi",
                                  fixed_mask=mask, sloppy=args.sloppy, seed=args.seed, n_starts=n)
            cpu.append(time.process_time() - t0)
            estimates.append(np.linalg.inv(move) @ est)  # undo the move: T1w -> original reference
        results[name] = {"n_starts": n, **spread(estimates, points), "cpu_seconds_mean": float(np.mean(cpu)),
                         "cpu_seconds": cpu, "estimates": [e.tolist() for e in estimates]}
        r = results[name]
        print(f"{name:<26} p95 distance to consensus: max {r['max_p95_to_consensus_mm']:.2f} mm, median "
              f"{r['median_p95_to_consensus_mm']:.2f} mm; pairwise max {r['max_pairwise_p95_mm']:.2f} mm; "
              f"{r['cpu_seconds_mean']:.1f} CPU s per registration", flush=True)
    single, multi = results.values()
    # the two consensus mappings: how far apart are the methods' answers?
    c1 = np.median(np.stack([points @ np.asarray(e)[:3, :3].T + np.asarray(e)[:3, 3] for e in single["estimates"]]), 0)
    c2 = np.median(np.stack([points @ np.asarray(e)[:3, :3].T + np.asarray(e)[:3, 3] for e in multi["estimates"]]), 0)
    report = {"bold": args.bold, "t1w": args.t1w, "ref": args.ref, "starts": args.starts, "max_mm": args.max_mm,
              "max_deg": args.max_deg, "seed": args.seed, "brain_points": int(len(points)),
              "cpu_ratio_multi_to_single": multi["cpu_seconds_mean"] / single["cpu_seconds_mean"],
              "consensus_distance_p95_mm": float(np.percentile(np.linalg.norm(c1 - c2, axis=1), 95)),
              "moves": [m.tolist() for m in moves], "methods": results,
              "command": "bids-boldsr-bench coreg " + " ".join(argv if argv is not None else sys.argv[1:])}
    print(f"CPU ratio multi/single {report['cpu_ratio_multi_to_single']:.1f}; consensus mappings differ by "
          f"{report['consensus_distance_p95_mm']:.2f} mm (p95)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
