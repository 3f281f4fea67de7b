"""``bids-boldsr-bench interp``: separable SR interpolation vs. scipy map_coordinates, same run.

Also times reading a run volume by volume with and without a kept-open gzip stream.
"""
from __future__ import annotations

import argparse
import json
import time

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..registration.resample import grid_points, points_to_voxels
from ..sr.grid import sr_target_grid
from ..sr.interpolate import ORDERS, interpolate_volume


def _time(fn, repeats):
    fn()  # warm-up (operators are cached after the first call)
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return (time.perf_counter() - t0) / repeats, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bids-boldsr-bench interp", description=__doc__.splitlines()[0])
    p.add_argument("--bold", required=True)
    p.add_argument("--factor", type=float, default=2.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--volumes", type=int, default=30, help="volumes read for the I/O timing")
    p.add_argument("--json")
    opts = p.parse_args(argv)
    img = nib.load(opts.bold)
    vol = np.asarray(img.dataobj[..., 0], dtype=np.float32)
    shape, aff = sr_target_grid(vol.shape, img.affine, factor=opts.factor)
    result = {"bold": opts.bold, "factor": opts.factor, "input_shape": list(vol.shape),
              "output_shape": list(shape), "methods": {}}
    vox = points_to_voxels(grid_points(shape, aff), img.affine)
    for method, order in ORDERS.items():
        t_sep, fast = _time(lambda: interpolate_volume(vol, img.affine, shape, aff, method), opts.repeats)
        t_ref, ref = _time(lambda: ndimage.map_coordinates(vol, vox, order=order, mode="nearest"
                                                           ).reshape(shape), opts.repeats)
        result["methods"][method] = {"separable_s": t_sep, "map_coordinates_s": t_ref,
                                     "speedup": t_ref / t_sep,
                                     "max_abs_diff": float(np.abs(fast - ref).max())}
    n = min(opts.volumes, img.shape[3])
    io = {}
    for keep in (False, True):
        src = nib.load(opts.bold, keep_file_open=keep)
        t0 = time.perf_counter()
        for t in range(n):
            np.asarray(src.dataobj[..., t])
        io["kept_open" if keep else "reopened"] = (time.perf_counter() - t0) / n
    io["speedup"] = io["reopened"] / io["kept_open"]
    result["read_volume_s"] = io
    print(f"{'method':<10} {'separable s':>12} {'map_coord s':>12} {'speed-up':>9} {'max diff':>9}")
    for m, r in result["methods"].items():
        print(f"{m:<10} {r['separable_s']:12.3f} {r['map_coordinates_s']:12.3f} "
              f"{r['speedup']:8.1f}x {r['max_abs_diff']:9.1e}")
    print(f"reading {n} volumes: {io['reopened']:.3f} s/vol reopened, {io['kept_open']:.3f} s/vol "
          f"kept open ({io['speedup']:.1f}x)")
    if opts.json:
        with open(opts.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0
