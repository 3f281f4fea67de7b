"""``bids-boldsr-bench register-real``: real T1w images -> the real template, ours vs ANTs.

The product's own normalisation task, with real intensities on both sides: each T1w (moving) is
registered to the embedded MNI152NLin2009aSym (fixed, ``--template-res``) by
* ``bids-boldsr``: what the workflow runs (``register_to_template`` then the SVF stage with the
  T1w brain mask pulled through that affine);
* ``bids-boldsr-affine``: that affine alone (the baseline the SVF stage starts from);
* ``ants-SyN`` / ``ants-antsRegistrationSyN[s]`` (antspyx, separate virtualenv): ANTs' own
  rigid + affine + SyN, on the same T1w skull-stripped by the same brain mask (ANTs gets no skull).
Every method's transforms are read back as pull chains and scored by the same code:
* tissue overlap with the template's own GM/WM probability maps: the subject's tissue warped onto
  the template grid against ``probseg > 0.5`` (Dice) and against ``probseg`` itself (soft Dice
  ``2 sum(p q) / (sum p + sum q)``, ``q`` the warped tissue indicator, trilinear). Subject tissue
  comes from its FreeSurfer aseg (``--labelled T1W DSEG``) or, without labels (``--t1w``), from a
  3-class Gaussian mixture of its intensities inside the brain mask (``tissue_from_intensities``),
  fitted in its own space (the same classes for every method);
* cerebellum: the template's AAL cerebellum carried through the inverse onto the subject grid
  against the aseg cerebellum (labelled pairs), and the aseg cerebellum warped to the template;
* LNCC (window 9) of the warped T1w and the template inside the template brain mask;
* inverse consistency: template brain points mapped forward (template -> T1w) then back through
  the inverse, distance in mm (mean, 95th percentile);
* fraction of non-positive Jacobian determinants of the forward field (whole grid / in the brain).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

# FreeSurfer aseg labels per tissue class (ventral DC and CSF left out: mixed tissue)
GM_LABELS = (3, 42, 8, 47, 10, 49, 11, 50, 12, 51, 13, 52, 17, 53, 18, 54, 26, 58)
WM_LABELS = (2, 41, 7, 46, 16)
CEREBELLUM_LABELS = (7, 8, 46, 47)
METHODS = ("bids-boldsr", "bids-boldsr-affine", "ants-SyN", "ants-antsRegistrationSyN[s]")
ANTS_PRESETS = {"ants-SyN": "SyN", "ants-antsRegistrationSyN[s]": "antsRegistrationSyN[s]"}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else float("nan")


def soft_dice(p: np.ndarray, q: np.ndarray) -> float:
    """Dice of two [0, 1] maps: 2 sum(p q) / (sum p + sum q)."""
    p, q = p.astype(np.float64), q.astype(np.float64)
    total = p.sum() + q.sum()
    return float(2 * (p * q).sum() / total) if total else float("nan")


def tissue_from_labels(labels: np.ndarray) -> np.ndarray:
    """0 background/other, 1 GM, 2 WM from a FreeSurfer aseg."""
    out = np.zeros(labels.shape, np.uint8)
    out[np.isin(labels, GM_LABELS)] = 1
    out[np.isin(labels, WM_LABELS)] = 2
    return out


def _eroded(mask: np.ndarray, zooms, mm: float) -> np.ndarray:
    """``mask`` shrunk by ``mm`` (Euclidean, in voxel sizes ``zooms``; the inverse of
    ``registration.linear.dilate_mask``)."""
    from scipy import ndimage

    return ndimage.distance_transform_edt(mask, sampling=zooms[:3]) > mm


def tissue_from_intensities(t1w: np.ndarray, mask: np.ndarray, zooms, erode_mm: float = 4.0, seed: int = 0,
                            sample: int = 200_000) -> np.ndarray:
    """0 outside/CSF/other, 1 GM, 2 WM from a T1w without labels.

    A brain mask pulled through an affine keeps some bright scalp and marrow at its edge, which a
    3-class mixture would take for tissue classes. So the 3-class Gaussian mixture (classes
    ordered by mean: CSF < GM < WM) is fitted on the mask eroded by ``2 * erode_mm`` (brain only),
    voxels of the mask eroded by ``erode_mm`` are classified, and those brighter than the WM
    class's mean + 3 sd (fat, vessels) are left out."""
    from sklearn.mixture import GaussianMixture

    core, region = _eroded(mask, zooms, 2 * erode_mm), _eroded(mask, zooms, erode_mm)
    rng = np.random.default_rng(seed)
    fit = t1w[core].astype(np.float64)
    fit = fit[rng.choice(fit.size, min(sample, fit.size), replace=False)][:, None]
    gmm = GaussianMixture(3, random_state=seed).fit(fit)
    order = np.argsort(gmm.means_[:, 0])
    rank = np.argsort(order)  # component -> 0 CSF, 1 GM, 2 WM
    values = t1w[region].astype(np.float64)
    classes = rank[gmm.predict(values[:, None])]
    wm = order[2]
    classes[values > gmm.means_[wm, 0] + 3 * np.sqrt(gmm.covariances_.ravel()[wm])] = 0
    out = np.zeros(t1w.shape, np.uint8)
    out[region] = classes
    return out


def _chain_from_ants(reg: dict) -> tuple[list, list]:
    """ANTs' forward/inverse transform files as our pull chains (template -> T1w, T1w -> template)."""
    from bids_boldsr.registration.io import load_affine, load_field

    warp, affine = reg["fwdtransforms"]
    inverse_affine, inverse_warp = reg["invtransforms"]
    return ([load_field(warp), load_affine(affine)],
            [np.linalg.inv(load_affine(inverse_affine)), load_field(inverse_warp)])


def run_ants(preset: str, t1w_brain: Path, template_path: Path, work: Path, seed: int) -> dict:
    import ants

    fixed, moving = ants.image_read(str(template_path)), ants.image_read(str(t1w_brain))
    c0, t0 = time.process_time(), time.perf_counter()
    reg = ants.registration(fixed=fixed, moving=moving, type_of_transform=preset, random_seed=seed,
                            outprefix=str(work / f"{preset.replace('[', '_').replace(']', '')}_"))
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    chain, inverse = _chain_from_ants(reg)
    return {"chain": chain, "inverse_chain": inverse, "cpu_seconds": cpu, "seconds": wall}


def run_ours(t1w: nib.Nifti1Image, template, mask, affine, sloppy: bool, spacing=None, device="cpu") -> dict:
    """The workflow's SVF stage after its affine (``affine`` timed separately, shared with ANTs' mask);
    ``spacing``: the SVF's finest level in mm (default: the workflow's, ``finest_spacing`` on ``device``)."""
    from bids_boldsr.registration.linear import brain_mask_from_template
    from bids_boldsr.registration.svf import finest_spacing, register_diffeomorphic

    if spacing is None and not sloppy:
        spacing = finest_spacing(t1w, template, device)

    c0, t0 = time.process_time(), time.perf_counter()
    result = register_diffeomorphic(t1w, template, affine["matrix"], fixed_mask=mask,
                                    moving_mask=brain_mask_from_template(t1w, mask, affine["matrix"]),
                                    sloppy=sloppy, spacing=spacing, device=device)
    if str(device).startswith("cuda"):  # wall time of the finished GPU work
        import torch

        torch.cuda.synchronize()
    return {"chain": result.chain, "inverse_chain": result.inverse_chain,
            "cpu_seconds": time.process_time() - c0 + affine["cpu_seconds"],
            "seconds": time.perf_counter() - t0 + affine["seconds"], "svf_spacing_mm": result.stats["spacing_mm"]}


def _jacobian(chain, mask_img) -> dict:
    from bids_boldsr.registration.field import DisplacementField, jacobian_determinant
    from bids_boldsr.registration.resample import resample

    field = chain[0]
    if not isinstance(field, DisplacementField):  # an affine alone
        det = float(np.linalg.det(np.asarray(field)[:3, :3]))
        return {"neg_jacobian_fraction": float(det <= 0), "neg_jacobian_fraction_brain": float(det <= 0)}
    det = jacobian_determinant(field.displacement, np.sqrt((field.affine[:3, :3] ** 2).sum(0)))
    inside = resample(np.asanyarray(mask_img.dataobj).astype(np.float32), mask_img.affine, det.shape,
                      field.affine, [], order=0) > 0
    return {"neg_jacobian_fraction": float((det <= 0).mean()),
            "neg_jacobian_fraction_brain": float((det[inside] <= 0).mean()) if inside.any() else 0.0}


def inverse_consistency(chain, inverse_chain, mask_img, step: int = 2) -> dict:
    """Template brain points (every ``step``-th voxel) forward then back: distance in mm."""
    from bids_boldsr.registration.resample import map_points

    ijk = np.argwhere(np.asanyarray(mask_img.dataobj)[::step, ::step, ::step] > 0) * step
    points = ijk @ mask_img.affine[:3, :3].T + mask_img.affine[:3, 3]
    back = map_points(map_points(points, chain), inverse_chain)
    err = np.linalg.norm(back - points, axis=1)
    return {"ice_mean_mm": float(err.mean()), "ice_p95_mm": float(np.percentile(err, 95)),
            "ice_max_mm": float(err.max())}


def score(subject: dict, template: dict, chain, inverse_chain) -> dict:
    """Every score of one registration (see the module docstring)."""
    import torch

    from bids_boldsr.registration.resample import resample
    from bids_boldsr.registration.similarity import lncc

    t_img, t_shape, t_aff = template["t1w"], template["t1w"].shape, template["t1w"].affine
    brain = template["brain"]
    tissue, t1w = subject["tissue"], subject["t1w"]
    warped = resample(tissue, t1w.affine, t_shape, t_aff, chain, order=0)
    out = {}
    for k, name in ((1, "GM"), (2, "WM")):
        p = template[name]
        out[f"dice_{name}"] = dice(warped == k, p > 0.5)
        q = resample((tissue == k).astype(np.float32), t1w.affine, t_shape, t_aff, chain, order=1)
        out[f"soft_dice_{name}"] = soft_dice(np.clip(p, 0, 1), np.clip(q, 0, 1))
    out["dice_tissue"] = (out["dice_GM"] + out["dice_WM"]) / 2
    out["soft_dice_tissue"] = (out["soft_dice_GM"] + out["soft_dice_WM"]) / 2
    out["dice_brain_tissue"] = dice(warped > 0, (template["GM"] + template["WM"]) > 0.5)
    if subject.get("labels") is not None:
        labels = subject["labels"]
        cb_subject = np.isin(labels, CEREBELLUM_LABELS)
        atlas_native = resample(template["cerebellum"].astype(np.uint8), t_aff, labels.shape, t1w.affine,
                                inverse_chain, order=0) > 0
        out["dice_cerebellum_native"] = dice(atlas_native, cb_subject)
        cb_warped = resample(cb_subject.astype(np.uint8), t1w.affine, t_shape, t_aff, chain, order=0) > 0
        out["dice_cerebellum_template"] = dice(cb_warped, template["cerebellum"])
    image = resample(subject["brain_image"], t1w.affine, t_shape, t_aff, chain, order=1)
    f, m = (torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
            for a in (np.asanyarray(t_img.dataobj), image))
    f, m = f / f[0, 0][torch.from_numpy(brain)].max(), m / max(float(m.max()), 1e-6)
    out["lncc"] = float(lncc(f, m, 9, torch.from_numpy(brain.astype(np.float32))[None, None]))
    mask_img = nib.Nifti1Image(brain.astype(np.uint8), t_aff)
    out.update(inverse_consistency(chain, inverse_chain, mask_img))
    out.update(_jacobian(chain, mask_img))
    return out


def load_template(resolution: int) -> dict:
    from bids_boldsr import templates as tpl

    get = lambda **q: tpl.embedded_image(resolution=resolution, **q)  # noqa: E731
    t1w, mask = get(suffix="T1w"), get(desc="brain", suffix="mask")
    return {"t1w": t1w, "mask": mask, "brain": np.asanyarray(mask.dataobj) > 0,
            "GM": np.asanyarray(get(label="GM", suffix="probseg").dataobj, dtype=np.float32),
            "WM": np.asanyarray(get(label="WM", suffix="probseg").dataobj, dtype=np.float32),
            "cerebellum": np.asanyarray(get(atlas="AAL", desc="cerebellum", suffix="dseg").dataobj) > 0}


def prepare_subject(path, labels_path, template: dict, sloppy: bool, seed: int, work: Path) -> dict:
    """The shared affine, the brain mask it gives, the skull-stripped T1w (written for ANTs) and
    the subject's tissue classes."""
    from bids_boldsr.registration.linear import brain_mask_from_template, register_to_template
    from bids_boldsr.templates import head_atlas

    t1w = nib.load(path)
    c0, t0 = time.process_time(), time.perf_counter()
    matrix = register_to_template(t1w, template["t1w"], template["mask"], sloppy=sloppy, seed=seed,
                                  head_atlas=head_atlas())
    affine = {"matrix": matrix, "cpu_seconds": time.process_time() - c0, "seconds": time.perf_counter() - t0}
    mask = np.asanyarray(brain_mask_from_template(t1w, template["mask"], matrix).dataobj) > 0
    data = np.asanyarray(t1w.dataobj, dtype=np.float32)
    labels = np.asanyarray(nib.load(labels_path).dataobj).astype(np.int32) if labels_path else None
    tissue = (tissue_from_labels(labels) if labels is not None
              else tissue_from_intensities(data, mask, t1w.header.get_zooms(), seed=seed))
    brain_image = np.where(mask, data, 0).astype(np.float32)
    brain_path = work / f"{Path(path).name.split('.')[0]}_brain.nii.gz"
    nib.save(nib.Nifti1Image(brain_image, t1w.affine), brain_path)
    return {"t1w": t1w, "labels": labels, "tissue": tissue, "brain_image": brain_image,
            "brain_path": brain_path, "affine": affine, "name": Path(path).name,
            "kind": "labelled" if labels is not None else "unlabelled"}


def summarise(rows: list[dict]) -> dict:
    keys = [k for k, v in rows[0].items() if isinstance(v, float)]
    return {"pairs": len(rows), **{k: float(np.nanmean([r.get(k, np.nan) for r in rows])) for k in keys}}


def build_parser():
    p = argparse.ArgumentParser(prog="bids-boldsr-bench register-real", description=__doc__.split("\n")[0])
    p.add_argument("--labelled", nargs=2, action="append", default=[], metavar=("T1W", "DSEG"),
                   help="a T1w with its FreeSurfer aseg (repeatable)")
    p.add_argument("--t1w", action="append", default=[], help="a T1w without labels (repeatable)")
    p.add_argument("--template-res", type=int, default=1, choices=(1, 2),
                   help="resolution of the embedded template used as the fixed image (default 1 mm, "
                   "the workflow's)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    p.add_argument("--resume", nargs="+", metavar="JSON", help="earlier results of the same command: "
                   "(subject, method) rows found there are kept instead of being run again")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for every method (default 1)")
    p.add_argument("--sloppy", action="store_true", help="our fast settings (tests)")
    p.add_argument("--svf-spacing", type=float,
                   help="our SVF's finest level in mm (default: the workflow's finest_spacing, 1 for 1 mm images)")
    p.add_argument("--device", default="cpu", help="our SVF stage's torch device (cpu, cuda); the "
                   "affine and ANTs stay on the CPU")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the results here (after every registration)")
    return p


def _run(method, subject, template, work, args) -> dict:
    if method == "bids-boldsr":
        return run_ours(subject["t1w"], template["t1w"], template["mask"], subject["affine"], args.sloppy,
                        args.svf_spacing, args.device)
    if method == "bids-boldsr-affine":
        matrix = subject["affine"]["matrix"]
        return {"chain": [matrix], "inverse_chain": [np.linalg.inv(matrix)],
                "cpu_seconds": subject["affine"]["cpu_seconds"], "seconds": subject["affine"]["seconds"]}
    return run_ants(ANTS_PRESETS[method], subject["brain_path"], template["path"], work, args.seed)


def _earlier(paths) -> dict:
    out = {}
    for path in paths or []:
        for method, rows in json.loads(Path(path).read_text())["per_subject"].items():
            for row in rows:
                out[(method, row["subject"])] = {**row, "reused_from": row.get("reused_from", str(path))}
    return out


def _report(results: dict, args, command: str) -> dict:
    kinds = sorted({r["kind"] for rows in results.values() for r in rows})
    return {"methods": {m: summarise(rows) for m, rows in results.items() if rows},
            "by_kind": {k: {m: summarise([r for r in rows if r["kind"] == k]) for m, rows in results.items()
                            if any(r["kind"] == k for r in rows)} for k in kinds},
            "per_subject": results,
            "settings": {"template": "MNI152NLin2009aSym", "template_res": args.template_res,
                         "threads": args.threads, "sloppy": args.sloppy, "seed": args.seed,
                         "device": args.device,
                         "command": command}}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    subjects = [(t, d) for t, d in args.labelled] + [(t, None) for t in args.t1w]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if not subjects or unknown:
        print("give --labelled T1W DSEG and/or --t1w T1W" if not subjects else
              f"unknown methods: {', '.join(unknown)} (choose from {', '.join(METHODS)})", file=sys.stderr)
        return 64
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    command = "bids-boldsr-bench register-real " + " ".join(argv if argv is not None else sys.argv[1:])
    earlier = _earlier(args.resume)
    names = [Path(t).name for t, _ in subjects]
    to_run = [m for m in methods if m.startswith("ants-") and any((m, n) not in earlier for n in names)]
    if to_run:  # ANTs rows that --resume does not already hold need antspyx
        try:
            import ants  # noqa: F401
        except ImportError:
            print("antspyx not installed: skipping ANTs methods (pip install antspyx)", file=sys.stderr)
            methods = [m for m in methods if m not in to_run]
    results = {m: [] for m in methods}
    template = load_template(args.template_res)
    work = Path(tempfile.mkdtemp(prefix="boldsr-register-real-"))
    template["path"] = work / "template_T1w.nii.gz"
    nib.save(template["t1w"], template["path"])
    try:
        for path, labels in subjects:
            todo = [m for m in methods if (m, Path(path).name) not in earlier]
            subject = prepare_subject(path, labels, template, args.sloppy, args.seed, work) if todo else None
            for m in methods:
                if m not in todo:
                    row = earlier[(m, Path(path).name)]
                else:
                    run = _run(m, subject, template, work, args)
                    row = {"subject": subject["name"], "kind": subject["kind"],
                           "cpu_seconds": run["cpu_seconds"], "seconds": run["seconds"],
                           **({"svf_spacing_mm": run["svf_spacing_mm"]} if "svf_spacing_mm" in run else {}),
                           **score(subject, template, run["chain"], run["inverse_chain"])}
                results[m].append(row)
                print(f"{row['subject']} {m}: tissue Dice {row['dice_tissue']:.4f} (soft "
                      f"{row['soft_dice_tissue']:.4f}), LNCC {row['lncc']:.4f}, ICE p95 {row['ice_p95_mm']:.2f} mm, "
                      f"det J <= 0 {100 * row['neg_jacobian_fraction']:.4f} %, {row['cpu_seconds']:.0f} CPU s",
                      flush=True)
                if args.json:
                    Path(args.json).write_text(json.dumps(_report(results, args, command), indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
