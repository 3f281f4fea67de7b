"""``bids-boldsr-bench sr-infer``: tvsr inference per volume, today's path against 0.4.0's, in one run.

0.4.0's path (the reference): the network on the whole volume in PyTorch's default layout, then the
data-consistency steps one by one. Today's: the network on the head's bounding box only, channels-last
with one-copy padding (``fast_forward``), in bfloat16 where the CPU has it natively (``--precision``),
and the same Landweber steps in closed form. The volumes are
timed alternately (reference, then today's, volume by volume) so that load on a shared machine falls on
both. The default ``temporal="static"`` path (the network once on the run's mean) is timed too; it
is a different estimate, so its quality is `bids-boldsr-bench sr`'s to score. Differences are given in % of the volume's 99th percentile, inside the head box (where both run
the network: float32 rounding only, or bf16's where it is used) and outside it (air, where today's output is the DC interpolation).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from ..sr.tvsr.common import PRECISIONS, cpu_has_native_bf16, landweber_steps, network_input
from ..sr.tvsr.infer import head_box, load_tvsr, run_super_resolver, super_resolve_volume
from ..sr.tvsr.resample import robust_scale
from ..sr.grid import sr_target_grid


def reference_volume(model, vol, affine, timings):
    """0.4.0's ``super_resolve_volume`` (tvsr variant), timed per stage."""
    cfg = model.config
    fine_shape, _ = sr_target_grid(vol.shape, affine, factor=cfg["factor"], voxel_size=cfg["voxel_size"])
    scale = robust_scale(vol)
    x = np.asarray(vol, np.float32) / scale
    t0 = time.perf_counter()
    inp = network_input(x, fine_shape, model.acquisition, cfg["hyper"])
    t1 = time.perf_counter()
    with torch.no_grad():
        y = model.net(torch.from_numpy(inp)[None, None])[0, 0].numpy()
    t2 = time.perf_counter()
    y = landweber_steps(y, x, model.acquisition, cfg["hyper"].get("dc_iters", 0))
    t3 = time.perf_counter()
    timings.append({"input_s": t1 - t0, "network_s": t2 - t1, "dc_s": t3 - t2, "total_s": t3 - t0})
    return y * scale


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def compare(model, img, volumes):
    """Per-volume seconds of both paths and their differences on ``volumes`` of ``img``."""
    ref_times, new_times, diffs = [], [], []
    box = None
    for t in volumes:
        vol = np.asarray(img.dataobj[..., t], np.float32)
        ref = reference_volume(model, vol, img.affine, ref_times)
        if box is None:  # as run_super_resolver: the first volume's head box for the run
            box = head_box(vol, ref.shape)
        new, seconds = _timed(lambda: super_resolve_volume(model, vol, img.affine, box))
        new_times.append(seconds)
        inside = np.zeros(ref.shape, bool)
        inside[box] = True
        scale = robust_scale(ref) / 100.0
        diff = np.abs(new - ref) / scale
        diffs.append({"max_in_box_pct": float(diff[inside].max()), "mean_in_box_pct": float(diff[inside].mean()),
                      "max_outside_box_pct": float(diff[~inside].max()) if (~inside).any() else 0.0,
                      "mean_outside_box_pct": float(diff[~inside].mean()) if (~inside).any() else 0.0})
    box_fraction = float(np.prod([b.stop - b.start for b in box]) / np.prod(ref.shape))
    return ref_times, new_times, diffs, box_fraction, list(ref.shape)


def static_timing(model, img, volumes):
    """The default ``temporal="static"`` path: one network pass on the run's mean, then per volume
    the data-consistent spline of its deviation. Returns (mean SR seconds, median s per volume)."""
    from ..nifti import series_stats

    from ..sr.tvsr.train import DEFAULTS

    hyper = model.config["hyper"]  # a checkpoint from before 0.5 has neither key
    hyper = {**hyper, "temporal": "static",
             "fluct_dc_iters": hyper.get("fluct_dc_iters", DEFAULTS["tvsr"]["fluct_dc_iters"])}
    static = replace(model, config={**model.config, "hyper": hyper})
    resolve = run_super_resolver(static, series_stats(img)[1])
    vol0 = np.asarray(img.dataobj[..., 0], np.float32)
    _, first = _timed(lambda: resolve(vol0, img.affine))  # includes the mean's SR
    per = [_timed(lambda: resolve(np.asarray(img.dataobj[..., t], np.float32), img.affine))[1] for t in volumes]
    return first - float(np.median(per)), float(np.median(per)), hyper["fluct_dc_iters"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="bids-boldsr-bench sr-infer", description=__doc__.splitlines()[0])
    ap.add_argument("bold", help="a 4-D BOLD run (the LR input)")
    ap.add_argument("--checkpoint", required=True, help="a tvsr checkpoint trained for this run's grid")
    ap.add_argument("--volumes", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=PRECISIONS, default="auto",
                    help="today's network arithmetic (auto: bfloat16 where the CPU has it natively); "
                         "the 0.4.0 reference is always float32")
    ap.add_argument("--out", type=Path, help="JSON file for the results")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    img = nib.load(args.bold)
    model = load_tvsr(args.checkpoint, "cpu", args.precision)
    # volume 0 first, untimed, warms both paths' caches (B's matrices, SVDs, oneDNN primitives)
    compare(model, img, [0])
    ref, new, diffs, box_fraction, shape = compare(model, img, range(1, 1 + args.volumes))
    ref_total = [r["total_s"] for r in ref]
    mean_s, fluct_s, fluct_iters = static_timing(model, img, range(1, 1 + args.volumes))
    n_run = img.shape[3]
    static_per_volume = (mean_s + n_run * fluct_s) / n_run
    result = {
        "bold": Path(args.bold).name, "sr_shape": shape, "volumes": args.volumes,
        "dc_iterations": model.config["hyper"].get("dc_iters", 0),
        "network": {"layers": model.config["hyper"]["layers"], "features": model.config["hyper"]["features"]},
        "head_box_fraction": box_fraction, "precision": model.precision,
        "cpu_native_bf16": cpu_has_native_bf16(),
        "reference_s_per_volume": float(np.median(ref_total)),
        "reference_stages_s": {k: float(np.median([r[k] for r in ref])) for k in ("input_s", "network_s", "dc_s")},
        "new_s_per_volume": float(np.median(new)),
        "speedup": float(np.median(ref_total) / np.median(new)),
        "static": {"mean_sr_s": mean_s, "s_per_volume": fluct_s, "run_volumes": n_run,
                   "s_per_volume_amortised": static_per_volume,
                   "speedup_amortised": float(np.median(ref_total) / static_per_volume),
                   "fluct_dc_iterations": fluct_iters},
        "max_diff_in_box_pct": max(d["max_in_box_pct"] for d in diffs),
        "mean_diff_in_box_pct": float(np.mean([d["mean_in_box_pct"] for d in diffs])),
        "max_diff_outside_box_pct": max(d["max_outside_box_pct"] for d in diffs),
        "mean_diff_outside_box_pct": float(np.mean([d["mean_outside_box_pct"] for d in diffs])),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_average": os.getloadavg(), "platform": platform.platform(), "torch": torch.__version__},
    }
    print(f"{result['bold']}  SR grid {shape}, {args.volumes} volumes, {args.threads} threads")
    print(f"  0.4.0 path: {result['reference_s_per_volume']:.2f} s/volume "
          f"(input {result['reference_stages_s']['input_s']:.2f}, network {result['reference_stages_s']['network_s']:.2f}, "
          f"{result['dc_iterations']} DC steps {result['reference_stages_s']['dc_s']:.2f})")
    print(f"  today ({model.precision}): {result['new_s_per_volume']:.2f} s/volume  -> {result['speedup']:.2f}x "
          f"(head box {100 * box_fraction:.0f} % of the grid)")
    print(f"  |difference|: inside the box max {result['max_diff_in_box_pct']:.2e} % "
          f"(mean {result['mean_diff_in_box_pct']:.2e} %), outside max "
          f"{result['max_diff_outside_box_pct']:.2f} % (mean {result['mean_diff_outside_box_pct']:.3f} %) of the 99th percentile")
    print(f"  temporal='static' (the default method): network on the run's mean once {mean_s:.2f} s, then "
          f"{fluct_s:.3f} s/volume -> {static_per_volume:.3f} s/volume over the run's {n_run} volumes "
          f"({result['static']['speedup_amortised']:.1f}x; a different estimate, scored by bench sr)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0
