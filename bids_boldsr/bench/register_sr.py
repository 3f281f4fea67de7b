"""``bids-boldsr-bench register-sr``: does BOLD -> T1w coregistration gain from super-resolution?

A real run is degraded by the acquisition model (``bench sr``'s simulation, factor 2 by default:
3 mm -> 6 mm); its reference volume (the workflow's ``bold_reference``) is brought back to the
original grid by cubic spline and by the self-supervised ``tvsr`` network trained on the degraded
run only, and each version (and the degraded reference itself) is registered to the T1w
(rigid, mutual information, T1w brain mask: the workflow's ``coreg`` step). The error of a
method is the distance, averaged over the T1w brain, between the points its transform and the
transform estimated from the original-resolution reference map to. Every registration is
repeated from ``--starts`` rigid perturbations of the reference's position (up to 2 mm / 2
degrees per axis), and the original reference is put through the same starts: its error is the noise floor.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np


def rigid(rng, mm=2.0, deg=2.0) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("xyz", rng.uniform(-deg, deg, 3), degrees=True).as_matrix()
    m[:3, 3] = rng.uniform(-mm, mm, 3)
    return m


def point_error(est: np.ndarray, ref: np.ndarray, points: np.ndarray) -> float:
    """Mean distance (mm) between two pull matrices' images of world points (N, 3)."""
    a = points @ est[:3, :3].T + est[:3, 3]
    b = points @ ref[:3, :3].T + ref[:3, 3]
    return float(np.linalg.norm(a - b, axis=1).mean())


def t1w_brain(t1w: nib.Nifti1Image, sloppy: bool):
    """T1w brain mask from the embedded template (the workflow's T1w mask)."""
    from .. import templates as tpl
    from ..registration.linear import brain_mask_from_template, register_to_template

    template, mask = tpl.embedded_image(suffix="T1w"), tpl.embedded_image(desc="brain", suffix="mask")
    matrix = register_to_template(t1w, template, mask, sloppy=sloppy, head_atlas=tpl.head_atlas())
    return brain_mask_from_template(t1w, mask, matrix)


def references(bold_path, factor, workdir, sloppy, seed):
    """Original-resolution reference, degraded reference and its spline / tvsr versions."""
    from ..registration.boldref import bold_reference
    from ..sr.apply import train_sr_model
    from ..sr.interpolate import interpolate_volume
    from ..sr.tvsr import load_tvsr, super_resolve_volume
    from .sr import simulate_run

    hr, hr_affine, lr, lr_affine, lr_path, _ = simulate_run(bold_path, factor, "gaussian", workdir)
    hr_ref, _, _ = bold_reference(nib.Nifti1Image(hr, hr_affine))
    lr_ref, _, _ = bold_reference(nib.Nifti1Image(lr, lr_affine))
    lr_vol = np.asarray(lr_ref.dataobj, np.float32)
    out = {"original": hr_ref, "degraded": lr_ref,
           "spline": nib.Nifti1Image(interpolate_volume(lr_vol, lr_affine, hr.shape[:3], hr_affine, "spline"),
                                     hr_affine)}
    t0 = time.process_time()
    ckpt = train_sr_model([lr_path], "tvsr", factor=factor, seed=seed, sloppy=sloppy, out_dir=workdir)
    train_cpu = time.process_time() - t0
    out["tvsr"] = nib.Nifti1Image(super_resolve_volume(load_tvsr(ckpt, "cpu"), lr_vol, lr_affine), hr_affine)
    return out, train_cpu


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bids-boldsr-bench register-sr", description=__doc__.split("\n")[0])
    p.add_argument("--bold", required=True, help="a real BOLD run (its sidecar is read when present)")
    p.add_argument("--t1w", required=True, help="the participant's T1w (with skull)")
    p.add_argument("--factor", type=float, default=2.0)
    p.add_argument("--starts", type=int, default=5, help="perturbed starting positions per method")
    p.add_argument("--sloppy", action="store_true", help="fast settings (tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json")
    args = p.parse_args(argv)
    import torch

    from ..registration.linear import register_linear

    torch.manual_seed(args.seed)
    t1w = nib.load(args.t1w)
    mask = t1w_brain(t1w, args.sloppy)
    ijk = np.argwhere(np.asanyarray(mask.dataobj) > 0)[::50]
    points = ijk @ mask.affine[:3, :3].T + mask.affine[:3, 3]
    with tempfile.TemporaryDirectory() as tmp:
        refs, train_cpu = references(args.bold, args.factor, tmp, args.sloppy, args.seed)
    truth = register_linear(refs["original"], t1w, dof=6, cost="mi", fixed_mask=mask, sloppy=args.sloppy)
    rng = np.random.default_rng(args.seed)
    starts = [rigid(rng) for _ in range(args.starts)]
    results = {}
    for name, ref in refs.items():
        errors = []
        for move in starts:  # the reference displaced by ``move``: undo it on the estimate
            moved = nib.Nifti1Image(np.asarray(ref.dataobj), move @ ref.affine)
            est = register_linear(moved, t1w, dof=6, cost="mi", fixed_mask=mask, sloppy=args.sloppy)
            errors.append(point_error(np.linalg.inv(move) @ est, truth, points))
        results[name] = {"mean_error_mm": float(np.mean(errors)), "max_error_mm": float(np.max(errors)),
                         "errors_mm": errors,
                         "voxel_size_mm": [round(float(v), 3) for v in np.sqrt((ref.affine[:3, :3] ** 2).sum(0))]}
        print(f"{name:<9} coregistration error vs original-resolution estimate: "
              f"mean {np.mean(errors):.3f} mm, max {np.max(errors):.3f} mm", flush=True)
    report = {"bold": args.bold, "t1w": args.t1w, "factor": args.factor, "starts": args.starts,
              "tvsr_training_cpu_seconds": train_cpu, "methods": results,
              "command": "bids-boldsr-bench register-sr " + " ".join(argv if argv is not None else sys.argv[1:])}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
