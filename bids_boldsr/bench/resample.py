"""``bids-boldsr-bench resample``: template-space resampling of a BOLD series by every engine of
``registration.apply.resample_series``, back to back in one run, against the current one
(``scipy``: one thread); accuracy of the written series inside the template brain mask.

The input is what the workflow resamples: the run super-resolved to ``--factor`` (here by cubic
spline interpolation, not timed), on the template's field of view at that voxel size, with
per-volume rigid motion (seeded, up to 1 mm / 1 degree) composed into the single interpolation.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from ..nifti import StreamingNiftiWriter, load_series, voxel_sizes
from ..registration.apply import resample_series
from ..sr.grid import sr_target_grid
from ..sr.interpolate import interpolate_volume

DEFAULT_BOLD = "../shared/data/ds-forrest/sub-02/func/sub-02_task-oneback_run-1_bold.nii.gz"


def _rigid(rng, mm=1.0, deg=1.0):
    a = np.deg2rad(rng.uniform(-deg, deg, 3))
    cx, cy, cz = np.cos(a)
    sx, sy, sz = np.sin(a)
    rot = (np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
           @ np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]))
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rot, rng.uniform(-mm, mm, 3)
    return m


def make_inputs(bold_file, work, volumes, factor, template, seed=0):
    """The super-resolved-size series (``work/sr.nii``), the output grid, chain and motion."""
    img = load_series(bold_file)
    n = min(volumes, img.shape[3])
    shape0 = img.shape[:3]
    shape, aff = sr_target_grid(shape0, img.affine, factor=factor)
    sr_file = Path(work) / "sr.nii"
    with StreamingNiftiWriter(sr_file, tuple(shape) + (n,), aff, header=img.header) as w:
        for t in range(n):
            w.write_volume(interpolate_volume(np.asarray(img.dataobj[..., t], np.float32), img.affine,
                                              shape, aff, "spline"))
    out_shape, out_aff = sr_target_grid(template.shape[:3], template.affine, voxel_size=voxel_sizes(aff))
    centre = lambda s, a: a[:3, :3] @ ((np.asarray(s[:3]) - 1) / 2) + a[:3, 3]  # noqa: E731
    chain = np.eye(4)
    chain[:3, 3] = centre(shape, aff) - centre(out_shape, out_aff)  # template -> BOLD: centres aligned
    rng = np.random.default_rng(seed)
    motion = np.stack([_rigid(rng) for _ in range(n)])
    return sr_file, out_shape, out_aff, [chain], motion


def accuracy(ref_file, test_file, mask):
    """max / mean |test - ref| inside ``mask`` where the reference has signal, in % of the mean
    reference signal there; the count of voxels that differ by more than one int16 step."""
    ref, test = load_series(ref_file), load_series(test_file)  # one open stream each: linear in length
    step = float(getattr(ref.dataobj, "slope", 1.0))
    maxd = mean = 0.0
    signal, count, over = [], 0, 0
    for t in range(ref.shape[3]):
        r = np.asarray(ref.dataobj[..., t], np.float64)
        x = np.asarray(test.dataobj[..., t], np.float64)
        m = mask & (r != 0)
        d = np.abs(x - r)[m]
        maxd, mean, count = max(maxd, float(d.max(initial=0))), mean + float(d.sum()), count + d.size
        over += int((d > 1.5 * step).sum())
        signal.append(float(np.abs(r[m]).mean()) if m.any() else 0.0)
    s = float(np.mean(signal)) or 1.0
    return {"max_abs_diff_pct": 100 * maxd / s, "mean_abs_diff_pct": 100 * mean / max(count, 1) / s,
            "voxels_over_one_int16_step": over, "voxels_compared": count, "mean_signal": s}


def main(argv=None) -> int:
    from ..templates import embedded_image

    p = argparse.ArgumentParser(prog="bids-boldsr-bench resample", description=__doc__.splitlines()[0])
    p.add_argument("--bold", default=DEFAULT_BOLD)
    p.add_argument("--volumes", type=int, default=10)
    p.add_argument("--factor", type=float, default=2.0)
    p.add_argument("--engines", nargs="+", help="first = baseline (default: scipy threads numba, + torch on "
                   "CUDA; torch on CPU is slower than scipy and exists for tests)")
    p.add_argument("--threads", type=int, help="threads of the threads/torch engines (default: all CPUs)")
    p.add_argument("--device", default="cpu", help="device of the torch engine (cpu, cuda)")
    p.add_argument("--json", help="write the result here (e.g. docs/results/resample-forrest.json)")
    opts = p.parse_args(argv)
    if not opts.engines:
        opts.engines = ["scipy", "threads", "numba"] + (["torch"] if opts.device.startswith("cuda") else [])
    template = embedded_image(1, suffix="T1w")
    brain = embedded_image(1, desc="brain", suffix="mask")
    with tempfile.TemporaryDirectory() as work:
        sr_file, shape, aff, chain, motion = make_inputs(opts.bold, work, opts.volumes, opts.factor, template)
        from ..segmentation.atlas import labels_to_grid

        mask = np.asarray(labels_to_grid(brain, shape, aff).dataobj) > 0
        runs = {}
        for engine in opts.engines:
            out = Path(work) / f"{engine}.nii.gz"
            t0, c0 = time.perf_counter(), time.process_time()
            info = resample_series(sr_file, out, shape, aff, chain, motion, progress=False,
                                   engine=engine, device=opts.device, threads=opts.threads)
            runs[engine] = {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
                            "threads": info["threads"], "volumes": info["volumes"], "file": out}
        base = opts.engines[0]
        for engine, r in runs.items():
            r["seconds_per_volume"] = r["seconds"] / r["volumes"]
            r["speedup_vs_" + base] = runs[base]["seconds"] / r["seconds"]
            if engine != base:
                r["accuracy_vs_" + base] = accuracy(runs[base]["file"], r["file"], mask)
        for r in runs.values():
            r.pop("file")
    result = {"bold": opts.bold, "volumes": runs[base]["volumes"], "factor": opts.factor,
              "output_shape": [int(s) for s in shape], "output_points": int(np.prod(shape)),
              "machine": machine(), "engines": runs}
    print(f"{'engine':<8} {'threads':>7} {'s/vol':>7} {'x ' + base:>9} {'max %':>8} {'mean %':>8}")
    for engine, r in runs.items():
        acc = r.get("accuracy_vs_" + base, {})
        print(f"{engine:<8} {r['threads']:>7} {r['seconds_per_volume']:7.3f} {r['speedup_vs_' + base]:8.2f}x "
              f"{acc.get('max_abs_diff_pct', 0):8.4f} {acc.get('mean_abs_diff_pct', 0):8.5f}")
    print(f"machine: {result['machine']}")
    if opts.json:
        Path(opts.json).parent.mkdir(parents=True, exist_ok=True)
        Path(opts.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def machine() -> dict:
    """CPUs this process may use, load, and the GPU (if torch sees one)."""
    import torch

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpus": cpus, "load_1min": load, "gpu": gpu, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "platform": platform.platform()}
