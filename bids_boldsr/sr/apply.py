"""Run-level super-resolution: stream a 4-D BOLD run through a volume method to disk."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..nifti import load_series, series_stats, voxel_sizes, write_series
from ..provenance import software_versions
from .grid import sr_target_grid
from .interpolate import ORDERS, interpolate_volume


LEARNED = {"tvsr": "tvsr", "tvsr-prior": "prior", "tvsr-published": "published"}  # CLI method -> training variant


def needs_training(method: str) -> bool:
    return method in LEARNED


def train_sr_model(bold_files, method, factor=None, voxel_size=None, device="cpu", seed=0,
                   sloppy=False, out_dir="."):
    """Train the participant's model on all its runs (LR data only); None for interpolation."""
    if not needs_training(method):
        return None
    from .tvsr import train_tvsr

    return train_tvsr(list(bold_files), factor=factor, voxel_size=voxel_size,
                      variant=LEARNED[method], device=device, seed=seed, sloppy=sloppy,
                      out_dir=out_dir)


def volume_method(method: str, checkpoint=None, device="cpu", run_mean=None, precision="auto"):
    """A function ``f(vol, in_affine, out_shape, out_affine) -> vol`` for ``method`` (learned methods
    may use the run's temporal mean, ``run_mean``: see ``run_super_resolver``; ``precision``: their
    network's arithmetic, ``load_tvsr``)."""
    if method in ORDERS:
        return lambda vol, a, s, b: interpolate_volume(vol, a, s, b, method=method)
    if method in LEARNED:
        if checkpoint is None:
            raise ValueError(f"--sr-method {method} needs a trained checkpoint")
        from .tvsr.infer import load_tvsr, run_super_resolver

        model = load_tvsr(checkpoint, device, precision)
        resolve = run_super_resolver(model, run_mean)

        def run(vol, a, s, b):
            out = resolve(vol, a)
            if out.shape != tuple(s):
                raise ValueError(f"model output {out.shape} does not match the SR grid {tuple(s)}")
            if not np.isfinite(out).all():  # never written: the int16 encoding would hide it
                raise FloatingPointError(f"{method} produced non-finite values; nothing is written for this run")
            return out
        run.provenance = resolve.provenance  # the run's estimated PSF, once the first volume is done
        run.precision = model.precision
        return run
    raise ValueError(f"unknown super-resolution method {method!r}")


def super_resolve_bold(bold_file, out_file, method="spline", factor=None, voxel_size=None,
                       checkpoint=None, device="cpu", progress=True, precision="auto") -> dict:
    """Super-resolve every volume of ``bold_file`` onto the FOV-preserving SR grid.

    Volumes are read, processed and written one at a time (memory independent of the run
    length); the output is int16 with a scale factor chosen from the whole series' range (float32
    when a volume would not fit it).
    Returns metadata for the sidecar.
    """
    img = load_series(bold_file)
    if img.ndim != 4:
        raise ValueError(f"{Path(bold_file).name} is not 4-D")
    shape, affine = sr_target_grid(img.shape[:3], img.affine, factor=factor, voxel_size=voxel_size)
    max_abs, mean = series_stats(img)  # one read of the run for both
    fn = volume_method(method, checkpoint, device, mean if needs_training(method) else None, precision)
    n = img.shape[3]
    bar = _progress(n, f"SR {Path(bold_file).name}", progress)

    def volume(t):
        bar.update(1)
        vol = np.asarray(img.dataobj[..., t], dtype=np.float32)
        return fn(vol, img.affine, shape, affine)
    # int16 scaled for the whole series' range (+50 % for the SR overshoot), float32 if it overflows
    write_series(out_file, shape + (n,), affine, img.header, volume, max_abs)
    bar.close()
    meta = {
        "SuperResolutionMethod": method,
        "SuperResolutionFactor": None if factor is None else float(factor),
        "InputVoxelSize": [round(float(v), 4) for v in voxel_sizes(img.affine)],
        "OutputVoxelSize": [round(float(v), 4) for v in voxel_sizes(affine)],
        "InputShape": list(img.shape),
        "OutputShape": list(shape) + [n],
        "Device": str(device),
        "ModelHash": _sha256(checkpoint) if checkpoint else None,
        "SoftwareVersions": software_versions(),
    }
    if checkpoint:
        from .tvsr import tvsr_metadata

        # the sidecar is reproducible: the model is named by its weights' hash (the checkpoint
        # file also holds the training's wall-clock time, left out here with TrainingSeconds)
        meta.update({k: v for k, v in tvsr_metadata(checkpoint).items()
                     if k not in ("SuperResolutionMethod", "TrainingSeconds")})
        meta["ModelHash"] = meta.get("WeightsSHA256", meta["ModelHash"])
        meta.update(getattr(fn, "provenance", {}))
        meta["NetworkPrecision"] = fn.precision
    return meta


def _sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _progress(total, desc, enabled):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="vol", disable=not enabled, mininterval=5)
