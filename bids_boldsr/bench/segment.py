"""``bids-boldsr-bench segment``: cerebellum Dice against a FreeSurfer aseg.

    bids-boldsr-bench segment --image T1w.nii.gz --labels aseg.nii.gz [--route cnn|atlas] [--json out.json]
    bids-boldsr-bench segment --labels training_seg_13.nii.gz --synth [--seed 0]
    bids-boldsr-bench segment --image sub-01_bold.nii.gz            # no labels: volumes only
    bids-boldsr-bench segment --image sub-01_bold.nii.gz --t1w sub-01_T1w.nii.gz   # real-EPI agreement

Without ``--labels`` (real BOLD has no manual labels) it reports the volume of each label in ml,
to compare with the usual adult cerebellum (about 110-160 ml). With ``--t1w`` it also segments the
participant's T1w with the CNN (0.91 Dice against FreeSurfer on the labelled T1w), carries that into
the BOLD grid through a rigid mutual-information coregistration of the mean BOLD, and reports the
agreement (Dice) there: real EPI has no manual labels, but the same cerebellum seen on the T1w is
the next best reference (it favours the cnn route, whose errors it shares).

``--synth`` builds a BOLD-like image from the label map (EPI contrast: CSF bright, skull kept,
bias field, noise, 3 mm isotropic voxels, a random rotation and an EPI-like distortion) and
scores on that 3 mm grid against the label map carried through the same deformation
(majority label per 3 mm voxel). Inputs: NIfTI or .mgz, any orientation.
"""
import argparse
import json
import sys
import time

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..segmentation.labels import CORTEX, LABELS, LEFT, N_CLASSES, RIGHT, WHITE_MATTER, from_aseg

REGIONS = {"cerebellum": LEFT + RIGHT, "left": LEFT, "right": RIGHT, "cortex": CORTEX,
           "white_matter": WHITE_MATTER}


def dice_scores(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Dice per region; both arrays hold :mod:`..segmentation.labels` indices on one grid."""
    out = {}
    for name, idx in REGIONS.items():
        p, t = np.isin(pred, idx), np.isin(truth, idx)
        denom = p.sum() + t.sum()
        out[name] = round(float(2 * (p & t).sum() / denom), 4) if denom else float("nan")
    return out


def on_grid(labels: nib.spatialimages.SpatialImage, ref: nib.spatialimages.SpatialImage) -> np.ndarray:
    """``labels`` (nearest neighbour) on the voxel grid of ``ref``."""
    data = np.asanyarray(labels.dataobj)
    if data.shape[:3] == ref.shape[:3] and np.allclose(labels.affine, ref.affine, atol=1e-3):
        return data
    m = np.linalg.inv(labels.affine) @ ref.affine
    return ndimage.affine_transform(data, m[:3, :3], m[:3, 3], output_shape=ref.shape[:3], order=0)


def volumes_ml(labels: np.ndarray, affine) -> dict:
    """ml per region (and per label) of a :mod:`..segmentation.labels` array."""
    ml = float(abs(np.linalg.det(affine[:3, :3]))) / 1000
    out = {name: round(float(np.isin(labels, idx).sum() * ml), 2) for name, idx in REGIONS.items()}
    out.update({lab.abbreviation: round(float((labels == lab.index).sum() * ml), 2) for lab in LABELS})
    return out


def t1w_reference(image, t1w, device="cpu", weights=None) -> np.ndarray:
    """CNN labels of ``t1w`` on the grid of ``image`` (a BOLD run: its temporal mean is registered)."""
    from ..registration.linear import register_linear
    from ..segmentation.atlas import labels_to_grid
    from ..segmentation.cnn import segment_cerebellum
    from ..segmentation.grids import as_3d

    ref = nib.Nifti1Image(as_3d(image), image.affine)
    pull = register_linear(ref, t1w, dof=6, cost="mi", device=device)  # T1w points -> image points
    labels = segment_cerebellum(t1w, device=device, weights=weights)
    return np.asarray(labels_to_grid(labels, ref.shape, ref.affine, [np.linalg.inv(pull)]).dataobj)


def synth_bold(label_img, seed=0, res_mm=3.0):
    """(BOLD-like image, truth labels on its grid) synthesised from an aseg label map."""
    from ..segmentation import synth

    gen = torch.Generator().manual_seed(seed)
    lm = synth.load_label_map(label_img.get_filename())
    shape = (192, 228, 192)  # 1 mm box (a multiple of 3 mm) around the brain: the whole head of these maps
    compact = synth.sample_geometry(lm, lm.brain, shape, 1.0, gen, max_deg=10, max_scale=0.05)
    image = synth.sample_intensities(compact, gen, "epi")
    lr, zooms = synth.acquire(image, 1.0, torch.full((3,), res_mm), gen, noise_max=0.04)
    onehot = F.one_hot(synth.COMPACT_TO_TARGET[compact], N_CLASSES).permute(3, 0, 1, 2).float()
    truth = F.adaptive_avg_pool3d(onehot[None], lr.shape)[0].argmax(0).numpy().astype(np.uint8)
    affine = np.diag([*zooms.tolist(), 1.0])
    affine[:3, 3] = lm.brain.numpy() - (np.array(shape) - 1) / 2 - 0.5 + zooms.numpy() / 2
    return nib.Nifti1Image(lr.numpy().astype(np.float32), affine), truth


def run_route(route, image, device="cpu", weights=None):
    if route == "cnn-prior":
        from ..segmentation.atlas import cnn_with_atlas_prior

        return cnn_with_atlas_prior(image, device=device, weights=weights)
    if route.startswith("atlas"):
        from ..segmentation import atlas  # the registration-based route (affine, or + SVF)

        out = atlas.atlas_route(image, device=device, nonlinear=route == "atlas-svf")
    else:
        from ..segmentation.cnn import segment_cerebellum

        out = segment_cerebellum(image, device=device, weights=weights)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="bids-boldsr-bench segment", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", help="image to segment (not needed with --synth)")
    ap.add_argument("--labels", help="FreeSurfer aseg (7/8 left, 46/47 right cerebellum); without it: volumes only")
    ap.add_argument("--route", choices=("cnn", "cnn-prior", "atlas", "atlas-svf"), default="cnn",
                    help="cnn: the learned route; atlas: AAL through the affine normalisation; "
                         "atlas-svf: through affine + diffeomorphic SVF (the workflow's default); "
                         "cnn-prior: the cnn centred and bounded by the atlas through the affine "
                         "(as the workflow does with its own normalisation)")
    ap.add_argument("--synth", action="store_true", help="segment a BOLD-like image synthesised from --labels")
    ap.add_argument("--seed", type=int, default=0, help="seed of the --synth image")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--weights", help="cnn checkpoint (default: the packaged one)")
    ap.add_argument("--t1w", help="the participant's T1w: agreement with its CNN segmentation on the image grid")
    ap.add_argument("--json", help="write the scores here")
    args = ap.parse_args(argv)
    if not args.synth and not args.image:
        ap.error("--image is required unless --synth")
    if args.synth and not args.labels:
        ap.error("--synth needs --labels")
    if args.t1w and (args.synth or args.labels):
        ap.error("--t1w compares with the T1w segmentation: leave out --labels/--synth")
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    labels = nib.load(args.labels) if args.labels else None
    if args.synth:
        image, truth = synth_bold(labels, args.seed)
    else:
        image = nib.load(args.image)
        truth = from_aseg(on_grid(labels, image)) if labels is not None else None
    if args.t1w:
        truth = t1w_reference(image, nib.load(args.t1w), args.device, args.weights)
    start = time.time()
    try:
        pred = run_route(args.route, image, args.device, args.weights)
    except (ImportError, AttributeError) as err:
        print(f"route {args.route} unavailable: {err}", file=sys.stderr)
        return 1
    seconds = round(time.time() - start, 2)
    pred = on_grid(pred, image)
    result = {"route": args.route, "dice": dice_scores(pred, truth) if truth is not None else None,
              "volumes_ml": volumes_ml(pred, image.affine), "seconds": seconds,
              "image": "synthetic BOLD-like (EPI contrast, 3 mm) from " + args.labels if args.synth else args.image,
              "labels": args.labels, "seed": args.seed if args.synth else None}
    if args.t1w:
        result["reference"] = f"cnn on {args.t1w}, coregistered (rigid, mutual information)"
        result["reference_volumes_ml"] = volumes_ml(truth, image.affine)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
