"""``bids-boldsr-bench gpu``: the CUDA paths of every engine against their CPU results, with timings.

Stages, each run on ``--device`` and compared with the CPU reference within the stated tolerance:

- ``resample``: the torch resampling engine (template grid, per-volume motion) vs the one-thread scipy
  engine; tolerance: 1.01 int16 steps max where both sample inside the input, mean < 1e-5 of the
  signal; a sample that one engine takes as outside (0) only on the rim of the sampled region;
- ``sr``: tvsr inference of the same checkpoint on the device vs on CPU (bf16 autocast on CUDA);
  tolerance: RMS difference < 2 % of the mean signal; training on the device vs on CPU from the same
  seed: outputs of the two models, RMS difference < 5 % of the mean signal;
- ``svf``: diffeomorphic T1w -> template registration (sloppy) from the same centre-of-mass start;
  tolerance: mean displacement difference < 0.5 mm;
- ``cnn``: cerebellum segmentation of the T1w; tolerance: cerebellum Dice (any label) >= 0.98.

With ``--device cpu`` (CI, no GPU) a stage whose device path is the CPU reference itself runs once
and is reported ``"compared": false``; ``resample`` is compared in any case (torch vs scipy). The JSON
holds per stage the seconds on each device, output voxels per second and the peak GPU memory.
``--tiny`` cuts the inputs (volumes, grids, training steps) for a quick CI run.
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

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DATASETS = {"ds-xa30": ("sub-01", "sub-01_task-fa_run-1_bold.nii.gz", "sub-01_T1w.nii.gz"),
            "ds-forrest": ("sub-02", "sub-02_task-oneback_run-1_bold.nii.gz", "sub-02_T1w.nii.gz")}
STAGES = ("resample", "sr", "svf", "cnn")


class _Timer:
    def __init__(self, device):
        self.device = device

    def __enter__(self):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.t0 = time.perf_counter()
        return self

    @property
    def cuda(self):
        return str(self.device).startswith("cuda")

    def __exit__(self, *exc):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            self.peak_gb = torch.cuda.max_memory_allocated() / 1024 ** 3
        else:
            self.peak_gb = None
        self.seconds = time.perf_counter() - self.t0
        return False


def _cut(bold_file, work, volumes, box=None):
    """The first ``volumes`` of a run; with ``box`` (voxels per axis) its central box only."""
    img = nib.load(bold_file)
    n = min(volumes, img.shape[3])
    out = Path(work) / f"bold{n}.nii.gz"
    data, affine = np.asarray(img.dataobj[..., :n], np.float32), img.affine.copy()
    if box is not None:
        lo = [max(0, (s - b) // 2) for s, b in zip(data.shape[:3], box)]
        data = data[lo[0]:lo[0] + box[0], lo[1]:lo[1] + box[1], lo[2]:lo[2] + box[2]]
        affine[:3, 3] = nib.affines.apply_affine(img.affine, lo)
    nib.save(nib.Nifti1Image(data, affine, img.header), out)
    sidecar = Path(str(bold_file).replace(".nii.gz", ".json"))
    if sidecar.is_file():
        (Path(work) / f"bold{n}.json").write_text(sidecar.read_text())
    return out


def compare_resampled(a: np.ndarray, b: np.ndarray, step: float) -> dict:
    """Two engines' int16-stored outputs (``step``: the scale slope) within the check's tolerance?

    A sample that lands on the input's edge can be inside for one engine and outside (0) for the
    other by rounding (float32 vs float64 coordinates). Such inside/outside disagreements are allowed
    only on the edge of the sampled region (next to a value both engines give as 0) and are counted
    apart; every other value must agree to one int16 step."""
    from scipy import ndimage

    signal = float(np.abs(a[a != 0]).mean())
    diff = np.abs(a - b)
    edge = ((a == 0) != (b == 0)) & (diff > 1.01 * step)  # 0 against 1 step is rounding, not the edge
    spatial = np.ones((3, 3, 3) + (1,) * (a.ndim - 3), bool)
    on_rim = ndimage.binary_dilation((a == 0) & (b == 0), structure=spatial)
    inner_max = float(diff[~edge].max() / step)
    ok = inner_max <= 1.01 and diff.mean() / signal < 1e-5 and bool(on_rim[edge].all())
    return {"compared": True, "passed": bool(ok), "max_abs_diff_int16_steps": inner_max,
            "fov_edge_disagreements": int(edge.sum()), "off_edge_disagreements": int((edge & ~on_rim).sum()),
            "output_values": int(a.size), "mean_abs_diff_rel": float(diff.mean() / signal),
            "tolerance": "max <= 1.01 int16 step where both engines sample inside the input, mean < 1e-5; "
                         "inside/outside disagreements only next to values both give as 0"}


def stage_resample(bold, t1w, work, device, tiny):
    from ..registration.apply import resample_series
    from .resample import _rigid

    img = nib.load(bold)
    from ..sr.grid import sr_target_grid

    shape, aff = sr_target_grid(img.shape[:3], img.affine, voxel_size=(3.0,) * 3 if tiny else (1.5,) * 3)
    rng = np.random.default_rng(0)
    motion = np.stack([_rigid(rng) for _ in range(img.shape[3])])
    runs = {}
    for engine, dev in (("torch", device), ("scipy", "cpu")):
        with _Timer(dev) as tm:
            resample_series(bold, Path(work) / f"{engine}.nii.gz", shape, aff, [_rigid(rng, 0, 0)], motion,
                            progress=False, engine=engine, device=dev)
        runs[engine] = tm
    a = np.asarray(nib.load(Path(work) / "scipy.nii.gz").dataobj, np.float64)
    b_img = nib.load(Path(work) / "torch.nii.gz")
    b = np.asarray(b_img.dataobj, np.float64)
    step = float(nib.load(Path(work) / "scipy.nii.gz").dataobj.slope)
    voxels = float(np.prod(shape)) * img.shape[3]
    return {**compare_resampled(a, b, step),
            "seconds": {device: runs["torch"].seconds, "cpu_scipy": runs["scipy"].seconds},
            "output_voxels_per_s": voxels / runs["torch"].seconds,
            "peak_gpu_gb": runs["torch"].peak_gb}


def _sr_outputs(ckpt, bold, device, n):
    from ..sr.apply import volume_method
    from ..sr.grid import sr_target_grid

    img = nib.load(bold)
    shape, aff = sr_target_grid(img.shape[:3], img.affine, factor=2.0)
    vols = [np.asarray(img.dataobj[..., t], np.float32) for t in range(n)]
    run = volume_method("tvsr", str(ckpt), device, run_mean=np.mean(vols, axis=0))
    return np.stack([run(v, img.affine, shape, aff) for v in vols]), shape


def _rel_rms(a, b):
    m = a != 0
    return float(np.sqrt(np.mean((a[m] - b[m]) ** 2)) / np.abs(a[m]).mean())


def stage_sr(bold, t1w, work, device, tiny):
    from ..sr.apply import train_sr_model

    n = 1 if tiny else 5
    out = {"compared": device != "cpu", "seconds": {}, "tolerance": "inference RMS < 2 %, training RMS < 5 %"}
    ckpts = {}
    for dev in dict.fromkeys([device, "cpu"]):
        d = Path(work) / f"sr-{dev.replace(':', '')}"
        d.mkdir(exist_ok=True)
        with _Timer(dev) as tm:
            ckpts[dev] = train_sr_model([bold], "tvsr", factor=2.0, device=dev, sloppy=True, out_dir=d)
        out["seconds"][f"train_{dev}"] = tm.seconds
        if dev == device:
            out["peak_gpu_gb_train"] = tm.peak_gb
    infer = {}
    for dev in dict.fromkeys([device, "cpu"]):
        with _Timer(dev) as tm:
            infer[dev], shape = _sr_outputs(ckpts[device], bold, dev, n)
        out["seconds"][f"infer_{dev}"] = tm.seconds
        if dev == device:
            out["peak_gpu_gb_infer"] = tm.peak_gb
            out["output_voxels_per_s"] = float(np.prod(shape)) * n / tm.seconds
    out["infer_rms_rel"] = _rel_rms(infer["cpu"], infer[device])
    trained_cpu = infer["cpu"] if ckpts["cpu"] == ckpts[device] else _sr_outputs(ckpts["cpu"], bold, "cpu", n)[0]
    out["train_rms_rel"] = _rel_rms(trained_cpu, infer["cpu"])
    out["passed"] = bool(out["infer_rms_rel"] < 0.02 and out["train_rms_rel"] < 0.05)
    return out


def _com_init(moving, fixed):
    from scipy import ndimage

    def com(img):
        data = np.asarray(img.dataobj, np.float32)
        return nib.affines.apply_affine(img.affine, ndimage.center_of_mass(np.clip(data, 0, None)))
    m = np.eye(4)
    m[:3, 3] = com(moving) - com(fixed)
    return m


def stage_svf(bold, t1w, work, device, tiny):
    from ..registration.svf import register_diffeomorphic
    from ..templates import embedded_image

    moving = nib.load(t1w)
    fixed = embedded_image(1, suffix="T1w")
    mask = embedded_image(1, desc="brain", suffix="mask")
    init = _com_init(moving, fixed)
    opts = {"iters": (20, 20)} if tiny else {}
    fields, out = {}, {"compared": device != "cpu", "seconds": {}, "tolerance": "mean |u_dev - u_cpu| < 0.5 mm"}
    for dev in dict.fromkeys([device, "cpu"]):
        with _Timer(dev) as tm:
            res = register_diffeomorphic(moving, fixed, init, fixed_mask=mask, device=dev, sloppy=True,
                                         spacing=8.0 if tiny else None, **opts)
        fields[dev] = res.field.displacement
        out["seconds"][dev] = tm.seconds
        if dev == device:
            out["peak_gpu_gb"] = tm.peak_gb
    diff = np.linalg.norm(fields[device] - fields["cpu"], axis=-1)
    out["mean_displacement_diff_mm"] = float(diff.mean())
    out["max_displacement_diff_mm"] = float(diff.max())
    out["mean_displacement_mm"] = float(np.linalg.norm(fields["cpu"], axis=-1).mean())
    out["passed"] = bool(diff.mean() < 0.5)
    return out


def stage_cnn(bold, t1w, work, device, tiny):
    from ..segmentation.cnn import segment_cerebellum

    img = nib.load(t1w)
    labels, out = {}, {"compared": device != "cpu", "seconds": {}, "tolerance": "cerebellum Dice >= 0.98"}
    for dev in dict.fromkeys([device, "cpu"]):
        with _Timer(dev) as tm:
            labels[dev] = np.asarray(segment_cerebellum(img, device=dev).dataobj)
        out["seconds"][dev] = tm.seconds
        if dev == device:
            out["peak_gpu_gb"] = tm.peak_gb
            out["output_voxels_per_s"] = float(np.prod(img.shape[:3])) / tm.seconds
    a, b = labels["cpu"] > 0, labels[device] > 0
    out["dice"] = float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))
    out["cerebellum_voxels"] = int(a.sum())
    out["passed"] = bool(out["dice"] >= 0.98 and a.sum() > 0)
    return out


def main(argv=None) -> int:
    from ..devices import resolve_device
    from .resample import machine

    p = argparse.ArgumentParser(prog="bids-boldsr-bench gpu", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (CI: no GPU)")
    p.add_argument("--data", type=Path, default=DATA, help="folder with ds-xa30/ and ds-forrest/")
    p.add_argument("--datasets", nargs="+", default=["ds-xa30"], choices=sorted(DATASETS))
    p.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    p.add_argument("--volumes", type=int, default=20, help="BOLD volumes used (the whole ds-xa30 run)")
    p.add_argument("--tiny", action="store_true", help="small inputs: a quick CI run")
    p.add_argument("--json", type=Path, help="write the result here (e.g. docs/results/gpu-check.json)")
    opts = p.parse_args(argv)
    from ..errors import BoldSRError

    try:
        device = resolve_device(opts.device)
    except BoldSRError as exc:  # --device cuda without a GPU: one line, exit 75
        print(f"bids-boldsr-bench gpu: error: {exc} (use --device cpu without one)", file=sys.stderr)
        return exc.code
    result = {"device": device, "tiny": opts.tiny, "machine": machine(), "datasets": {}}
    failed = []
    for ds in opts.datasets:
        sub, bold_name, t1w_name = DATASETS[ds]
        bold_src = opts.data / ds / sub / "func" / bold_name
        t1w = opts.data / ds / sub / "anat" / t1w_name
        result["datasets"][ds] = {}
        with tempfile.TemporaryDirectory() as work:
            bold = (_cut(bold_src, work, 3, box=(24, 24, 16)) if opts.tiny
                    else _cut(bold_src, work, opts.volumes))
            for stage in opts.stages:
                t0 = time.perf_counter()
                res = globals()[f"stage_{stage}"](bold, t1w, work, device, opts.tiny)
                res["stage_seconds"] = time.perf_counter() - t0
                result["datasets"][ds][stage] = res
                verdict = "PASS" if res["passed"] else "FAIL"
                if not res["passed"]:
                    failed.append(f"{ds}/{stage}")
                print(f"{ds:<11} {stage:<9} {verdict}  {json.dumps(res['seconds'])}", flush=True)
    result["passed"] = not failed
    if opts.json:
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        opts.json.write_text(json.dumps(result, indent=2, default=float) + "\n")
    if failed:
        print(f"bids-boldsr-bench gpu: {len(failed)} stage(s) outside tolerance: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0
