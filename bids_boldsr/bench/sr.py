"""``bids-boldsr-bench sr``: super-resolution against interpolation baselines on a real BOLD run.

Each real volume is taken as HR; LR is simulated from it by one of a family of point-spread
functions (``DEGRADATIONS``); every method reconstructs on the HR grid from the LR only (tvsr is
trained on the LR run, never on HR) and is never told which PSF made it. PSNR/SSIM inside an EPI
brain mask of the HR mean.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from dataclasses import asdict, replace
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..sr.grid import sr_target_grid
from ..sr.interpolate import interpolate_volume
from ..sr.tvsr import AcquisitionModel, acquisition_from_image, load_tvsr, train_tvsr
from ..sr.tvsr.acquisition import sidecar_for
from ..sr.tvsr.infer import run_super_resolver
from ..sr.tvsr.common import data_consistency
from .glm import GLM_DOC, contrasts, glm_zmaps, score_series
from ..sr.tvsr.psf_family import random_acquisition

MASK_DOC = "nilearn.masking.compute_epi_mask of the HR temporal mean"
DEGRADATIONS = {
    "box": "voxel averaging: a box as wide as the LR voxel along every axis",
    "gaussian": "box in-plane, Gaussian slice profile FWHM = LR slice thickness (tvsr's default model)",
    "kspace": "in-plane k-space truncation to the LR matrix (periodic sinc), box through-plane",
    "mixed": "one PSF drawn per run (seeded): in-plane box or k-space with Tukey apodisation 0-0.5, "
             "slice profile box or Gaussian, thickness 0.8-1.3 x the LR slice spacing",
}
PRIOR_FINE_TUNE_STEPS = 300  # tvsr-prior-ft: the prior fine-tuned on the LR run (scale recursion, PSF family)
# a learned NAME and its ablations NAME<suffix>: hyper-parameter changes at inference; "-truedc" also
# swaps the model's B for the true PSF (an oracle: what estimating the PSF costs)
ABLATIONS = {"": {}, "-nodc": {"dc_iters": 0, "fluct_dc_iters": 0}, "-volume": {"temporal": "volume"},
             "-noens": {"flip_ensemble": 1}, "-assumeddc": {"dc_psf": "assumed"}, "-truedc": {"dc_psf": "assumed"},
             "-leastres": {"psf_calibration": 0}}  # the PSF estimate without its calibration (0.7)
SPLINE_DC_ITERS = 50  # as many as tvsr's own data-consistency refinement
MAX_DOC = "99.9th percentile of the HR volume inside the mask"


def psnr(ref, test, mask, data_range):
    rmse = np.sqrt(np.mean((ref[mask] - test[mask]) ** 2))
    return float(20 * np.log10(data_range / rmse))


def ssim(ref, test, mask, data_range, k1=0.01, k2=0.03, sigma=1.5):
    """3-D SSIM (Gaussian window, sigma 1.5 voxels), averaged over the mask."""
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    blur = lambda a: ndimage.gaussian_filter(a.astype(np.float64), sigma, truncate=3.5)
    mu_r, mu_t = blur(ref), blur(test)
    var_r = blur(ref * ref) - mu_r ** 2
    var_t = blur(test * test) - mu_t ** 2
    cov = blur(ref * test) - mu_r * mu_t
    smap = ((2 * mu_r * mu_t + c1) * (2 * cov + c2)) / ((mu_r ** 2 + mu_t ** 2 + c1) * (var_r + var_t + c2))
    return float(smap[mask].mean())


def simulation_grids(hr_shape, hr_affine, factor):
    """Crop HR so that the LR grid is exact (n_hr = n_lr * factor) and return both grids."""
    lr_shape, crop = [], []
    for n in hr_shape[:3]:
        m = int(n // factor)
        while abs(m * factor - round(m * factor)) > 1e-6:
            m -= 1
        lr_shape.append(m)
        crop.append(int(round(m * factor)))
    zooms = np.sqrt((hr_affine[:3, :3] ** 2).sum(axis=0))
    lr_to_hr = np.eye(4)
    lr_to_hr[:3, :3] = np.diag([factor] * 3)
    lr_to_hr[:3, 3] = (factor - 1) / 2.0  # outer faces of both fields of view coincide
    lr_affine = hr_affine @ lr_to_hr
    check_shape, check_affine = sr_target_grid(lr_shape, lr_affine, factor=factor)
    assert tuple(check_shape) == tuple(crop) and np.allclose(check_affine, hr_affine), "grid mismatch"
    return tuple(crop), tuple(lr_shape), lr_affine, zooms


def degradation_model(degradation, acq: AcquisitionModel, seed=0) -> AcquisitionModel:
    """The PSF that makes the LR run (``DEGRADATIONS``); ``acq`` is the run's own slice geometry."""
    if degradation in ("gaussian", "acquisition"):
        return acq
    if degradation == "box":
        return AcquisitionModel(slice_axis=None, profile="box")
    if degradation == "kspace":
        return replace(acq, inplane="kspace", profile="box", thickness_ratio=1.0)
    if degradation == "mixed":
        return random_acquisition(np.random.default_rng(seed), acq.slice_axis)
    raise ValueError(f"unknown degradation {degradation!r}; choose from {sorted(DEGRADATIONS)}")


def simulate_run(bold, factor, degradation, workdir, seed=0):
    """Write the simulated LR run (and its sidecar) to ``workdir``; return HR data and LR path."""
    img = nib.load(str(bold))
    hr_shape, lr_shape, lr_affine, zooms = simulation_grids(img.shape, img.affine, factor)
    hr = np.asarray(img.dataobj[:hr_shape[0], :hr_shape[1], :hr_shape[2]], dtype=np.float32)
    meta = json.loads(sidecar_for(bold).read_text()) if sidecar_for(bold).exists() else {}
    acq = acquisition_from_image(img, meta)
    model = degradation_model(degradation, acq, seed)
    lr = np.stack([model.apply(hr[..., t], lr_shape) for t in range(hr.shape[3])], axis=-1)
    lr_path = Path(workdir) / f"lr-x{factor}-{degradation}_bold.nii.gz"
    lr_img = nib.Nifti1Image(lr, lr_affine)
    lr_img.header.set_dim_info(slice=acq.slice_axis)
    lr_img.header.set_zooms(tuple(zooms * factor) + (float(img.header.get_zooms()[3]),))
    nib.save(lr_img, lr_path)
    spacing = float(meta.get("SpacingBetweenSlices") or zooms[acq.slice_axis])
    thickness = float(meta.get("SliceThickness") or spacing)
    sidecar = {"SliceThickness": thickness * factor, "SpacingBetweenSlices": spacing * factor}
    sidecar_for(lr_path).write_text(json.dumps(sidecar))
    return hr, img.affine, lr, lr_affine, lr_path, model


def _method_volume(method, models, lr_vol, lr_affine, hr_shape, hr_affine, assumed=None):
    """One method's reconstruction; ``spline-dc`` is spline + 50 data-consistency steps under the
    model the app assumes from the LR run's header and sidecar (``assumed``), not the true PSF.
    Learned methods are ``run_super_resolver`` functions of the LR run (``models``)."""
    if method in models:
        return models[method](lr_vol, lr_affine)
    if method == "spline-dc":
        spline = interpolate_volume(lr_vol, lr_affine, hr_shape, hr_affine, method="spline")
        return data_consistency(spline, lr_vol, assumed, SPLINE_DC_ITERS)
    return interpolate_volume(lr_vol, lr_affine, hr_shape, hr_affine, method=method)


def _stream_child(ckpt, lr_path, n_vol, out_path, factor, device="cpu"):
    """Child process: stream SR volumes to disk; report throughput and this process's peak RSS
    (and the peak GPU memory on CUDA).

    ``ckpt=None`` streams cubic-spline volumes instead (same writer, far cheaper per volume)."""
    import torch
    torch.set_num_threads(1)
    from ..nifti import StreamingNiftiWriter
    from ..nifti import series_stats
    img = nib.load(str(lr_path))
    loaded = load_tvsr(ckpt, device) if ckpt else None
    model = run_super_resolver(loaded, series_stats(img)[1]) if loaded else None
    shape, affine = sr_target_grid(img.shape[:3], img.affine, factor=factor)
    start = time.perf_counter()
    with StreamingNiftiWriter(out_path, tuple(shape) + (n_vol,), affine, dtype=np.float32) as writer:
        for t in range(n_vol):
            vol = np.asarray(img.dataobj[..., t], np.float32)
            writer.write_volume(model(vol, img.affine) if model else
                                interpolate_volume(vol, img.affine, shape, affine, "spline"))
    seconds = time.perf_counter() - start
    method = {None: "spline", "prior": "tvsr-prior"}.get(loaded and loaded.variant, "tvsr")
    cuda = str(device).startswith("cuda") and torch.cuda.is_available()
    return {"method": method, "volumes": n_vol, "shape": list(shape), "device": str(device),
            "seconds": seconds, "volumes_per_s": n_vol / seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_gpu_mb": torch.cuda.max_memory_allocated() / 1024 ** 2 if cuda else None}


def throughput(ckpt, lr_path, n_vol, workdir, factor, device="cpu"):
    """Run ``_stream_child`` in a fresh process (its peak RSS is then this measurement's alone)."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:  # re-raises a child's error
        return pool.submit(_stream_child, ckpt and str(ckpt), str(lr_path), n_vol,
                           str(Path(workdir) / f"sr-{n_vol}.nii"), factor, device).result()


def functional_check(hr, sr, mask):
    """Voxelwise temporal correlation with the original series, and tSNR of both, in the mask."""
    a, b = hr[mask], sr[mask]
    a0, b0 = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    corr = (a0 * b0).sum(1) / np.sqrt((a0 ** 2).sum(1) * (b0 ** 2).sum(1) + 1e-12)
    return {"temporal_corr_median": float(np.median(corr)), "tsnr_sr": _median_tsnr(b), "tsnr_hr": _median_tsnr(a)}


def _median_tsnr(rows) -> float:
    """Median over voxels (rows) of the temporal mean / standard deviation."""
    return float(np.median(rows.mean(1) / (rows.std(1) + 1e-6)))


def tsnr_of(series) -> float:
    """Median tSNR inside the series' own EPI mask (the LR input run's, for the tSNR criterion)."""
    from nilearn.masking import compute_epi_mask
    mask = compute_epi_mask(nib.Nifti1Image(series.mean(-1), np.eye(4))).get_fdata() > 0
    return _median_tsnr(series[mask])


def _events_path(bold) -> Path:
    name = Path(bold).name
    stem = name[:-len("_bold.nii.gz")] if name.endswith("_bold.nii.gz") else name.split("_bold")[0]
    return Path(bold).with_name(stem + "_events.tsv")


def _events_and_tr(args):
    import pandas as pd
    events = pd.read_csv(args.events or _events_path(args.bold), sep="\t")
    sidecar = sidecar_for(args.bold)
    meta = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    return events, float(meta.get("RepetitionTime") or nib.load(str(args.bold)).header.get_zooms()[3])


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bids-boldsr-bench sr", description=__doc__)
    p.add_argument("--bold", required=True, help="a 4-D BOLD NIfTI (its volumes are the HR reference)")
    p.add_argument("--factor", type=float, required=True)
    p.add_argument("--volumes", type=int, default=5, help="volumes scored (evenly spaced)")
    p.add_argument("--degradation", choices=[*DEGRADATIONS, "acquisition"], default="gaussian",
                   help="the PSF that makes the LR run: " + "; ".join(f"{k}: {v}" for k, v in DEGRADATIONS.items())
                        + " ('acquisition' is the old name of 'gaussian')")
    p.add_argument("--psf-seed", type=int, default=0, help="seed of the 'mixed' PSF draw")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="the learned methods' network arithmetic (load_tvsr; auto: bfloat16 on CPUs with "
                        "native bf16, float32 elsewhere), recorded per method")
    p.add_argument("--slice-profile", choices=["gaussian", "box"], default="gaussian",
                   help="the slice profile tvsr's acquisition model assumes (default: Gaussian, whatever "
                        "the simulated degradation; 'box' matches --degradation box)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--sloppy", action="store_true", help="seconds-long training (smoke test)")
    p.add_argument("--functional", action="store_true", help="also SR every volume: temporal correlation, tSNR")
    p.add_argument("--glm", action="store_true",
                   help="also SR every volume and fit the run's first-level GLM (its events.tsv): z-map r and "
                        "Dice of |z| > 3.1 against the original run's, per contrast")
    p.add_argument("--events", help="events.tsv for --glm (default: the one beside --bold)")
    p.add_argument("--throughput", type=int, nargs="*", metavar="N",
                   help="train tvsr on the real run and stream N of its SR volumes to disk, in a fresh "
                        "process per N; report volumes/s and peak RSS")
    p.add_argument("--throughput-method", choices=["tvsr-prior", "tvsr", "spline"], default="tvsr")
    p.add_argument("--methods", default="tvsr-prior,tvsr,tvsr-published,spline-dc,spline,trilinear",
                   help="comma-separated: tvsr, tvsr-family (trained on the psf_family draws instead of "
                        "the assumed model), tvsr-prior (the shipped learned prior, no training), tvsr-prior-ft "
                        f"(the prior fine-tuned {PRIOR_FINE_TUNE_STEPS} steps on the LR run), tvsr-published, spline-dc, spline, trilinear; "
                        "ablations of a learned NAME: NAME-nodc (no data consistency), NAME-volume (the network on "
                        "every volume), NAME-noens (no mirror-image mean), NAME-assumeddc (DC under the header's PSF), "
                        "NAME-truedc (DC under the true PSF: what estimating it costs), NAME-leastres (the PSF "
                        "estimate's least residual, without the calibration by simulation)")
    p.add_argument("--work-dir", help="keeps simulated data and checkpoints (default: temporary)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--hyper", action="append", default=[], metavar="KEY=VALUE",
                   help="override a tvsr hyper-parameter (repeatable), e.g. --hyper steps=300")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import torch
    torch.set_num_threads(args.threads)
    from nilearn.masking import compute_epi_mask
    methods = args.methods.split(",")
    hyper = {k: json.loads(v) if v[:1] in "-0123456789[{tfn" else v
             for k, v in (item.split("=", 1) for item in args.hyper)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        hr, hr_affine, lr, lr_affine, lr_path, truth = simulate_run(args.bold, args.factor, args.degradation, work,
                                                                   args.psf_seed)
        assumed = acquisition_from_image(nib.load(str(lr_path)), sidecar_for(lr_path))
        mask = compute_epi_mask(nib.Nifti1Image(hr.mean(-1), hr_affine)).get_fdata() > 0
        models, result = {}, {"factor": args.factor, "degradation": args.degradation, "mask": MASK_DOC,
                              "degradation_doc": DEGRADATIONS.get(args.degradation, DEGRADATIONS["gaussian"]),
                              "true_psf": asdict(truth), "assumed_psf": asdict(assumed),
                              "spline_dc_iters": SPLINE_DC_ITERS,
                              "tvsr_slice_profile": args.slice_profile,
                              "psnr_max": MAX_DOC, "bold": str(args.bold), "hr_shape": list(hr.shape),
                              "lr_shape": list(lr.shape), "methods": {}}
        trained = {"tvsr": ("tvsr", {"slice_profile": args.slice_profile, **hyper}),
                   "tvsr-family": ("tvsr", {"slice_profile": args.slice_profile, **hyper, "psf": "family"}),
                   "tvsr-prior": ("prior", hyper),
                   "tvsr-prior-ft": ("prior", {**hyper, "steps": PRIOR_FINE_TUNE_STEPS}),
                   "tvsr-published": ("published", {})}
        for method, (variant, options) in trained.items():
            if any(method + suffix in methods for suffix in ABLATIONS):
                ckpt = train_tvsr([lr_path], factor=args.factor, variant=variant, device=args.device,
                                  sloppy=args.sloppy, out_dir=work / "models", **options)
                model = load_tvsr(ckpt, args.device)
                for suffix, change in ABLATIONS.items():
                    name = method + suffix
                    if name in methods:
                        acq = truth if suffix == "-truedc" else model.acquisition
                        models[name] = run_super_resolver(replace(model, acquisition=acq, config={
                            **model.config, "hyper": {**model.config["hyper"], **change}}), lr.mean(-1))
                        result["methods"][name] = {"train_seconds": model.training["seconds"],
                                                   "selected_step": model.training["best_step"]}
        if args.glm:
            events, t_r = _events_and_tr(args)
            ref_z = glm_zmaps(hr, hr_affine, mask, events, t_r)
            result["glm"] = {"events": str(args.events or _events_path(args.bold)), "t_r": t_r,
                             "model": GLM_DOC, "contrasts": contrasts(events["trial_type"]),
                             "suprathreshold_original": {k: int((np.abs(v[mask]) > 3.1).sum()) for k, v in ref_z.items()}}
        picks = np.unique(np.linspace(0, hr.shape[3] - 1, min(args.volumes, hr.shape[3])).round().astype(int))
        for method in methods:
            scores, start = [], time.perf_counter()
            for t in picks:
                out = _method_volume(method, models, lr[..., t], lr_affine, hr.shape[:3], hr_affine, assumed)
                ref = hr[..., t]
                top = float(np.percentile(ref[mask], 99.9))
                scores.append((psnr(ref, out, mask, top), ssim(ref, out, mask, top)))
            entry = result["methods"].setdefault(method, {})
            entry.update({"psnr": float(np.mean([s[0] for s in scores])), "ssim": float(np.mean([s[1] for s in scores])),
                          "seconds": (time.perf_counter() - start) / len(picks)})
            if getattr(models.get(method), "provenance", None):  # the PSF the method estimated
                entry["psf_estimate"] = models[method].provenance
            if args.functional or args.glm:
                sr = np.stack([_method_volume(method, models, lr[..., t], lr_affine, hr.shape[:3], hr_affine, assumed)
                               for t in range(hr.shape[3])], -1)
                entry["functional"] = {**functional_check(hr, sr, mask), "tsnr_input": tsnr_of(lr)}
            if args.glm:
                entry["glm"] = score_series(ref_z, sr, hr_affine, mask, events, t_r)
                entry["glm_mean"] = {k: float(np.mean([c[k] for c in entry["glm"].values()])) for k in ("r", "dice")}
            sr = None
        if args.throughput:  # the product path: train on the real run itself, stream its SR to disk
            start, ckpt = time.perf_counter(), None
            if args.throughput_method != "spline":
                variant = "prior" if args.throughput_method == "tvsr-prior" else "tvsr"
                ckpt = train_tvsr([args.bold], factor=args.factor, variant=variant, device=args.device,
                                  sloppy=args.sloppy, out_dir=work / "models", **hyper)
            train_s, n_t = time.perf_counter() - start, nib.load(str(args.bold)).shape[3]
            result["throughput"] = [{**throughput(ckpt, args.bold, min(n, n_t), work, args.factor, args.device),
                                     "train_seconds": train_s}
                                    for n in args.throughput]
    print(f"factor {args.factor}  degradation {args.degradation}  HR {hr.shape}  LR {lr.shape}  "
          f"volumes scored {len(picks)}\nmask: {MASK_DOC}; PSNR MAX: {MAX_DOC}")
    print(f"{'method':<16}{'PSNR dB':>9}{'SSIM':>8}{'s/vol':>8}{'train s':>9}")
    for name, m in result["methods"].items():
        print(f"{name:<16}{m['psnr']:>9.2f}{m['ssim']:>8.4f}{m['seconds']:>8.2f}{m.get('train_seconds', 0):>9.1f}")
        if "functional" in m:
            print(f"{'':<16}temporal corr {m['functional']['temporal_corr_median']:.4f}  "
                  f"tSNR {m['functional']['tsnr_sr']:.2f} (HR {m['functional']['tsnr_hr']:.2f}, "
                  f"LR input {m['functional']['tsnr_input']:.2f})")
        if "glm" in m:
            print(f"{'':<16}GLM z-map vs original: mean r {m['glm_mean']['r']:.3f}, mean Dice |z|>3.1 "
                  f"{m['glm_mean']['dice']:.3f} over {len(m['glm'])} contrasts")
    for row in result.get("throughput", []):
        print(f"throughput {row['method']} (real run, trained {row['train_seconds']:.0f} s): {row['volumes']} vols of "
              f"{row['shape']}: {row['volumes_per_s']:.2f} vol/s, peak RSS {row['peak_rss_mb']:.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
