"""``bids-boldsr-bench register``: our affine + diffeomorphic registration vs ANTs SyN.

Either one labelled pair (``--moving/--moving-labels/--fixed/--fixed-labels``) or N pairs
synthesised SynthMorph-style from label maps (``--synth-pairs N --labelmaps DIR``): labels
subsampled to ``--resolution`` mm (nearest, 2 mm by default to keep CPU time sane), a random
intensity per brain label (labels < 100; extra-cerebral labels left dark, i.e. skull-stripped
like a template) shared by the pair plus per-image jitter (a same-modality problem, like
T1w -> T1w template), per-voxel noise, blur, a smooth multiplicative bias field and gamma.
``--t1w-pairs N`` pairs the real labelled T1w (``--t1w/--t1w-labels``, moving) with images
synthesised from N label maps (fixed) at a T1w contrast: each label's intensity is the median of
the real T1w over that label, then the same noise, blur, bias and gamma.
Reported per method: mean Dice over shared brain structures, per-structure Dice, fraction of
negative Jacobian determinants (whole field and inside the fixed brain), wall seconds.
ANTs runs through antspyx when it is installed (``pip install antspyx``; the ``bench`` extra).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

# FreeSurfer aseg brain structures used for Dice (the usual VoxelMorph/SynthMorph set)
STRUCTURES = {2: "Left-Cerebral-White-Matter", 3: "Left-Cerebral-Cortex", 4: "Left-Lateral-Ventricle",
              7: "Left-Cerebellum-White-Matter", 8: "Left-Cerebellum-Cortex", 10: "Left-Thalamus",
              11: "Left-Caudate", 12: "Left-Putamen", 13: "Left-Pallidum", 14: "3rd-Ventricle",
              15: "4th-Ventricle", 16: "Brain-Stem", 17: "Left-Hippocampus", 18: "Left-Amygdala",
              26: "Left-Accumbens-area", 28: "Left-VentralDC", 41: "Right-Cerebral-White-Matter",
              42: "Right-Cerebral-Cortex", 43: "Right-Lateral-Ventricle", 46: "Right-Cerebellum-White-Matter",
              47: "Right-Cerebellum-Cortex", 49: "Right-Thalamus", 50: "Right-Caudate", 51: "Right-Putamen",
              52: "Right-Pallidum", 53: "Right-Hippocampus", 54: "Right-Amygdala", 58: "Right-Accumbens-area",
              60: "Right-VentralDC"}
ANTS_PRESETS = {"ants-SyN": "SyN", "ants-antsRegistrationSyN[s]": "antsRegistrationSyN[s]"}


def dice_per_structure(a: np.ndarray, b: np.ndarray) -> dict:
    out = {}
    for label, name in STRUCTURES.items():
        x, y = a == label, b == label
        if x.sum() and y.sum():
            out[name] = float(2 * (x & y).sum() / (x.sum() + y.sum()))
    return out


def _subsample_grid(affine, resolution: float):
    """Integer steps, start voxels and affine of the ``resolution`` mm subgrid of a grid."""
    vox = np.sqrt((affine[:3, :3] ** 2).sum(0))
    k = [max(1, int(round(resolution / v))) for v in vox]
    start = [kk // 2 for kk in k]
    out = affine @ np.diag(k + [1]).astype(float)
    out[:3, 3] = affine[:3, :3] @ start + affine[:3, 3]
    return k, start, out


def _take(data, k, start):
    return data[start[0]::k[0], start[1]::k[1], start[2]::k[2]]


def subsample_labels(img: nib.Nifti1Image, resolution: float) -> nib.Nifti1Image:
    """Nearest-neighbour label subsampling by an integer factor (1 mm -> 2 mm)."""
    k, start, affine = _subsample_grid(img.affine, resolution)
    return nib.Nifti1Image(_take(np.asanyarray(img.dataobj).astype(np.int32), k, start), affine)


def synthesise(labels: np.ndarray, means: dict, rng) -> np.ndarray:
    """A SynthMorph-style image from a label map and a per-label intensity table."""
    img = np.zeros(labels.shape, np.float32)
    for lab, mu in means.items():
        sel = labels == lab
        img[sel] = mu + rng.uniform(-0.05, 0.05) + rng.normal(0, 0.03, sel.sum())
    img = ndimage.gaussian_filter(img, rng.uniform(0.3, 0.8))
    coarse = rng.normal(0, 0.15, (4, 4, 4))
    bias = np.exp(ndimage.zoom(coarse, np.array(labels.shape) / 4, order=3)[tuple(slice(0, s) for s in labels.shape)])
    img = np.clip(img * bias, 0, None)
    img = (img / max(np.percentile(img, 99.9), 1e-6)) ** np.exp(rng.normal(0, 0.2))
    return (img + rng.normal(0, 0.01, img.shape) * (labels > 0)).astype(np.float32)


def synth_pairs(labelmap_dir: Path, n_pairs: int, resolution: float, seed: int, out_dir: Path):
    files = sorted(Path(labelmap_dir).glob("*.nii*"))
    if len(files) < 2:
        raise FileNotFoundError(f"need at least two label maps in {labelmap_dir}")
    rng = np.random.default_rng(seed)
    pairs, seen = [], set()
    while len(pairs) < n_pairs:
        i, j = rng.choice(len(files), 2, replace=False)
        if (i, j) in seen and len(seen) < len(files) * (len(files) - 1):
            continue
        seen.add((i, j))
        maps = [subsample_labels(nib.load(files[k]), resolution) for k in (i, j)]
        # skull-stripped like a template: FreeSurfer brain labels (< 100) only
        means = {lab: rng.uniform(0.1, 1.0) for lab in np.union1d(*[np.unique(m.dataobj) for m in maps])
                 if 0 < lab < 100}
        paths = []
        for role, lab in zip(("moving", "fixed"), maps):
            stem = out_dir / f"pair{len(pairs):02d}_{role}"
            nib.save(nib.Nifti1Image(synthesise(np.asanyarray(lab.dataobj), means, rng), lab.affine),
                     f"{stem}.nii.gz")
            nib.save(lab, f"{stem}_dseg.nii.gz")
            paths += [f"{stem}.nii.gz", f"{stem}_dseg.nii.gz"]
        pairs.append((*paths, files[i].name, files[j].name, "synth"))
    return pairs


def subsample_image(img: nib.Nifti1Image, resolution: float) -> nib.Nifti1Image:
    """Anti-aliased subsampling on the same grid as ``subsample_labels``."""
    k, start, affine = _subsample_grid(img.affine, resolution)
    data = ndimage.gaussian_filter(np.asanyarray(img.dataobj, dtype=np.float32), [0.42 * kk for kk in k])
    return nib.Nifti1Image(_take(data, k, start), affine)


def t1w_pairs(t1w_path, labels_path, labelmap_dir: Path, n_pairs: int, resolution: float, seed: int,
              out_dir: Path):
    """The real T1w (moving) against label-map images at its own contrast (fixed)."""
    files = sorted(Path(labelmap_dir).glob("*.nii*"))
    rng = np.random.default_rng(seed + 1000)  # independent of the --synth-pairs stream
    t1w, labels = nib.load(t1w_path), nib.load(labels_path)
    t1_data, t1_labels = np.asanyarray(t1w.dataobj, dtype=np.float32), np.asanyarray(labels.dataobj)
    scale = np.percentile(t1_data[t1_labels > 0], 99.9)
    medians = {int(lab): float(np.median(t1_data[t1_labels == lab])) / scale
               for lab in np.unique(t1_labels) if 0 < lab < 100}
    mov, mov_lab = f"{out_dir}/t1w_moving.nii.gz", f"{out_dir}/t1w_moving_dseg.nii.gz"
    nib.save(subsample_image(t1w, resolution), mov)
    nib.save(subsample_labels(labels, resolution), mov_lab)
    pairs = []
    for j in rng.choice(len(files), min(n_pairs, len(files)), replace=False):
        lab = subsample_labels(nib.load(files[j]), resolution)
        data = np.asanyarray(lab.dataobj)
        means = {int(v): medians.get(int(v), rng.uniform(0.1, 1.0)) for v in np.unique(data) if 0 < v < 100}
        stem = out_dir / f"t1wpair{len(pairs):02d}_fixed"
        nib.save(nib.Nifti1Image(synthesise(data, means, rng), lab.affine), f"{stem}.nii.gz")
        nib.save(lab, f"{stem}_dseg.nii.gz")
        pairs.append((mov, mov_lab, f"{stem}.nii.gz", f"{stem}_dseg.nii.gz", Path(t1w_path).name,
                      files[j].name, "t1w"))
    return pairs


def run_ours(moving, fixed, moving_labels, fixed_labels, method="svf", sloppy=False) -> dict:
    from bids_boldsr.registration.linear import register_linear
    from bids_boldsr.registration.resample import resample
    from bids_boldsr.registration.svf import finest_spacing, register_diffeomorphic

    t0, c0 = time.perf_counter(), time.process_time()
    affine = register_linear(moving, fixed, dof=12, cost="mi", sloppy=sloppy)
    t_affine = time.perf_counter() - t0
    brain = nib.Nifti1Image((np.isin(np.asanyarray(fixed_labels.dataobj), list(STRUCTURES))).astype(np.uint8),
                            fixed_labels.affine)
    result = register_diffeomorphic(moving, fixed, affine, method=method, sloppy=sloppy,  # as the workflow
                                    spacing=None if sloppy else finest_spacing(moving, fixed))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    warped = resample(np.asanyarray(moving_labels.dataobj), moving_labels.affine, fixed_labels.shape,
                      fixed_labels.affine, result.chain, order=0)
    affine_only = resample(np.asanyarray(moving_labels.dataobj), moving_labels.affine, fixed_labels.shape,
                           fixed_labels.affine, [affine], order=0)
    fixed_l = np.asanyarray(fixed_labels.dataobj)
    det_mask = _jacobian_in_mask(result, brain)
    return {"dice": dice_per_structure(warped, fixed_l), "dice_affine": dice_per_structure(affine_only, fixed_l),
            "neg_jacobian_fraction": result.stats["jacobian_negative_fraction"],
            "neg_jacobian_fraction_brain": det_mask, "seconds": seconds, "cpu_seconds": cpu,
            "seconds_affine": t_affine,
            "lncc_before": result.stats["lncc_before"], "lncc_after": result.stats["lncc_after"]}


def _jacobian_in_mask(result, mask_img) -> float:
    from bids_boldsr.registration.field import jacobian_determinant
    from bids_boldsr.registration.resample import resample

    f = result.field
    det = jacobian_determinant(f.displacement, np.sqrt((f.affine[:3, :3] ** 2).sum(0)))
    inside = resample(np.asanyarray(mask_img.dataobj).astype(np.float32), mask_img.affine, det.shape,
                      f.affine, [], order=0) > 0
    return float((det[inside] <= 0).mean()) if inside.any() else 0.0


def run_ants(preset, moving_path, fixed_path, moving_labels_path, fixed_labels, seed=0) -> dict:
    import ants

    fixed = ants.image_read(str(fixed_path))
    moving = ants.image_read(str(moving_path))
    t0, c0 = time.perf_counter(), time.process_time()
    reg = ants.registration(fixed=fixed, moving=moving, type_of_transform=preset, random_seed=seed)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    labels = ants.image_read(str(moving_labels_path))
    warped = ants.apply_transforms(fixed, labels, reg["fwdtransforms"], interpolator="nearestNeighbor").numpy()
    warp = [t for t in reg["fwdtransforms"] if t.endswith((".nii.gz", ".nii"))][0]
    det = ants.create_jacobian_determinant_image(fixed, warp).numpy()
    fixed_l = np.asanyarray(fixed_labels.dataobj)
    brain = np.isin(fixed_l, list(STRUCTURES))
    return {"dice": dice_per_structure(np.rint(warped).astype(np.int32), fixed_l),
            "neg_jacobian_fraction": float((det <= 0).mean()),
            "neg_jacobian_fraction_brain": float((det[brain] <= 0).mean()), "seconds": seconds,
            "cpu_seconds": cpu}


def summarise(per_pair: list[dict]) -> dict:
    names = sorted({n for r in per_pair for n in r["dice"]})
    per_structure = {n: float(np.mean([r["dice"][n] for r in per_pair if n in r["dice"]])) for n in names}
    out = {"pairs": len(per_pair),
           "mean_dice": float(np.mean([np.mean(list(r["dice"].values())) for r in per_pair])),
           "std_dice": float(np.std([np.mean(list(r["dice"].values())) for r in per_pair])),
           "neg_jacobian_fraction": float(np.mean([r["neg_jacobian_fraction"] for r in per_pair])),
           "neg_jacobian_fraction_brain": float(np.mean([r["neg_jacobian_fraction_brain"] for r in per_pair])),
           "seconds": float(np.mean([r["seconds"] for r in per_pair])),
           "cpu_seconds": float(np.mean([r["cpu_seconds"] for r in per_pair])),
           "per_structure": per_structure, "per_pair": per_pair}
    if "dice_affine" in per_pair[0]:
        out["mean_dice_affine_only"] = float(np.mean([np.mean(list(r["dice_affine"].values())) for r in per_pair]))
    return out


def _report(results, args, command) -> dict:
    kinds = sorted({r["kind"] for rs in results.values() for r in rs})
    by_kind = {kind: {m: {k: v for k, v in summarise([r for r in rs if r["kind"] == kind]).items()
                          if k != "per_pair"} for m, rs in results.items()
                      if any(r["kind"] == kind for r in rs)} for kind in kinds}
    return {"methods": {m: summarise(r) for m, r in results.items() if r}, "by_pair_kind": by_kind,
            "settings": {"resolution_mm": args.resolution if args.synth_pairs or args.t1w_pairs else None, "threads": args.threads,
                         "sloppy": args.sloppy, "seed": args.seed, "command": command}}


def _earlier_results(paths) -> dict:
    """{(method, pair names): result} from earlier results JSONs (pairs are named by their label
    maps, unique within a run; the synthesis depends only on --seed and --resolution)."""
    out = {}
    for path in paths or []:
        report = json.loads(Path(path).read_text())
        for m, summary in report["methods"].items():
            for r in summary["per_pair"]:
                out[(m, tuple(r["pair"]))] = {**r, "reused_from": r.get("reused_from", str(path))}
    return out


def build_parser():
    p = argparse.ArgumentParser(prog="bids-boldsr-bench register", description=__doc__.split("\n")[0])
    p.add_argument("--moving"), p.add_argument("--moving-labels"), p.add_argument("--fixed")
    p.add_argument("--fixed-labels"), p.add_argument("--json", help="write the results here")
    p.add_argument("--synth-pairs", type=int, default=0, help="number of synthesised pairs")
    p.add_argument("--labelmaps", help="folder of label maps for --synth-pairs")
    p.add_argument("--t1w-pairs", type=int, default=0,
                   help="number of (real T1w, label-map image at T1w contrast) pairs")
    p.add_argument("--t1w"), p.add_argument("--t1w-labels")
    p.add_argument("--resolution", type=float, default=2.0, help="mm, synthesised pairs (default 2)")
    p.add_argument("--resume", nargs="+", metavar="JSON", help="results of earlier runs of the same "
                   "pairs (same --seed, --resolution, pair options): pairs and methods found there are "
                   "taken from them instead of being run again")
    p.add_argument("--methods", default="bids-boldsr,ants-SyN,ants-antsRegistrationSyN[s]",
                   help="comma-separated: bids-boldsr, bids-boldsr-nevf, ants-SyN, ants-antsRegistrationSyN[s]")
    p.add_argument("--sloppy", action="store_true", help="our fast settings (tests, smoke runs)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for every method (default 1)")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if any(m.startswith("ants-") for m in methods):
        try:
            import ants  # noqa: F401
        except ImportError:
            print("antspyx not installed: skipping ANTs methods (pip install antspyx)", file=sys.stderr)
            methods = [m for m in methods if not m.startswith("ants-")]
    with tempfile.TemporaryDirectory() as tmp:
        pairs = []
        if args.synth_pairs or args.t1w_pairs:
            if not args.labelmaps or (args.t1w_pairs and not (args.t1w and args.t1w_labels)):
                print("--synth-pairs needs --labelmaps; --t1w-pairs needs --labelmaps, --t1w and "
                      "--t1w-labels", file=sys.stderr)
                return 64
            if args.synth_pairs:
                pairs += synth_pairs(Path(args.labelmaps), args.synth_pairs, args.resolution, args.seed,
                                     Path(tmp))
            if args.t1w_pairs:
                pairs += t1w_pairs(args.t1w, args.t1w_labels, Path(args.labelmaps), args.t1w_pairs,
                                   args.resolution, args.seed, Path(tmp))
        elif all((args.moving, args.moving_labels, args.fixed, args.fixed_labels)):
            pairs = [(args.moving, args.moving_labels, args.fixed, args.fixed_labels, args.moving, args.fixed,
                      "given")]
        else:
            print("give --moving/--moving-labels/--fixed/--fixed-labels, --synth-pairs or --t1w-pairs",
                  file=sys.stderr)
            return 64
        earlier = _earlier_results(args.resume)
        results = {m: [] for m in methods}
        command = "bids-boldsr-bench register " + " ".join(argv if argv is not None else sys.argv[1:])
        for k, (mov, mov_lab, fix, fix_lab, *names, kind) in enumerate(pairs):
            imgs = [nib.load(p) for p in (mov, mov_lab, fix, fix_lab)]
            for m in methods:
                if (m, tuple(names)) in earlier:
                    r = earlier[(m, tuple(names))]
                elif m.startswith("bids-boldsr"):
                    r = run_ours(imgs[0], imgs[2], imgs[1], imgs[3], "nevf" if m.endswith("nevf") else "svf",
                                 args.sloppy)
                else:
                    r = run_ants(ANTS_PRESETS[m], mov, fix, mov_lab, imgs[3], args.seed)
                r["pair"], r["kind"] = names, kind
                results[m].append(r)
                print(f"pair {k} {names[0]} -> {names[1]} {m}: dice {np.mean(list(r['dice'].values())):.4f} "
                      f"negJ {r['neg_jacobian_fraction']:.2e} {r['seconds']:.1f}s (cpu {r['cpu_seconds']:.1f}s)",
                      flush=True)
            report = _report(results, args, command)
            if args.json:  # after every pair, so a long run leaves its partial results
                Path(args.json).write_text(json.dumps(report, indent=1))
    for m, s in report["methods"].items():
        print(f"{m:<32} mean Dice {s['mean_dice']:.4f} +- {s['std_dice']:.4f}  negJ {s['neg_jacobian_fraction']:.2e}"
              f"  {s['seconds']:.1f} s/pair wall, {s['cpu_seconds']:.1f} s cpu")
    return 0


if __name__ == "__main__":
    sys.exit(main())
