"""``bids-boldsr-bench brain``: a learned brain mask (``--weights``, from ``segmentation.train_brain``),
scored where a truth exists, sized where not.

* ``--synth N`` held-out synthetic heads per label map (``--labelmaps``, maps 13 and 14 by default,
  never trained on): T1 and EPI contrast, skull kept, seeded; Dice against the label map's brain;
* ``--labelled T1W DSEG``: a real skull-stripped T1w against its FreeSurfer aseg (> 0);
* ``--t1w T1W`` (repeatable): real heads with skull and no labels: the mask's volume (ml), and the
  brain mask the T1w -> template affine pulls back with and without the learned mask (ml, and its
  Dice with the learned mask): the ds-xa30 affine failure shows as a pulled mask far larger than
  the template's own.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np


def _dice(a, b) -> float:
    return float(2 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum()))


def mask_ml(mask, affine) -> float:
    """Volume of a boolean mask in ml."""
    return float(np.count_nonzero(mask) * abs(np.linalg.det(affine[:3, :3])) / 1000)


def synthetic(labelmaps: Path, maps, n: int, seed: int, weights) -> list[dict]:
    import torch

    from ..segmentation import synth
    from ..segmentation.brain import BRAIN_NET, brain_mask

    rows, affine = [], np.diag([BRAIN_NET["work_mm"]] * 3 + [1.0])
    for number in maps:
        lm = synth.load_label_map(labelmaps / f"training_seg_{number}.nii.gz")
        for i in range(n):
            contrast = ("t1", "epi")[i % 2]
            gen = torch.Generator().manual_seed(seed * 1000 + i)
            image, target = synth.synth_head(lm, gen, contrast=contrast, target="brain",
                                             work_mm=BRAIN_NET["work_mm"], skull_strip_p=0, cut_p=0)
            mask = np.asanyarray(brain_mask(nib.Nifti1Image(image[0].numpy(), affine), weights).dataobj) > 0
            rows.append({"map": number, "sample": i, "contrast": contrast,
                         "dice": _dice(mask, target[1].numpy() > 0.5)})
    return rows


def real_head(path: str, template_res: int, seed: int, weights) -> dict:
    from .. import templates as tpl
    from ..registration.linear import brain_mask_from_template, register_to_template
    from ..segmentation.brain import brain_mask

    t1w = nib.load(path)
    template = tpl.embedded_image(template_res, suffix="T1w")
    tmask = tpl.embedded_image(template_res, desc="brain", suffix="mask")
    c0 = time.process_time()
    learned = brain_mask(t1w, weights)
    cpu = time.process_time() - c0
    mask = np.asanyarray(learned.dataobj) > 0
    row = {"t1w": Path(path).name, "learned_ml": mask_ml(mask, t1w.affine), "learned_cpu_seconds": cpu,
           "template_mask_ml": mask_ml(np.asanyarray(tmask.dataobj) > 0, tmask.affine)}
    for name, brain in (("without", None), ("with", learned)):
        matrix = register_to_template(t1w, template, tmask, seed=seed, moving_brain=brain)
        pulled = np.asanyarray(brain_mask_from_template(t1w, tmask, matrix).dataobj) > 0
        row[f"pulled_ml_{name}_learned_mask"] = mask_ml(pulled, t1w.affine)
        row[f"pulled_dice_with_learned_{name}_learned_mask"] = _dice(pulled, mask)
    return row


def _weights_hash(path) -> str:
    import torch

    from ..segmentation.train import state_sha256

    return state_sha256(torch.load(path, map_location="cpu", weights_only=True)["net"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bids-boldsr-bench brain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, type=Path, help="brain_unet.pt written by "
                   "python -m bids_boldsr.segmentation.train_brain")
    p.add_argument("--labelmaps", type=Path, help="folder with training_seg_XX.nii.gz")
    p.add_argument("--maps", nargs="+", default=["13", "14"], help="label maps to synthesise from")
    p.add_argument("--synth", type=int, default=4, help="synthetic heads per map (alternating T1 / EPI)")
    p.add_argument("--labelled", nargs=2, action="append", default=[], metavar=("T1W", "DSEG"))
    p.add_argument("--t1w", action="append", default=[], help="a real head with skull (repeatable)")
    p.add_argument("--template-res", type=int, default=2, choices=(1, 2))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    if not (args.labelmaps or args.labelled or args.t1w):
        p.error("give --labelmaps, --labelled or --t1w")
    if not args.weights.is_file():
        p.error(f"--weights {args.weights}: no such file")
    import torch

    from ..segmentation.brain import brain_mask

    torch.set_num_threads(args.threads)
    try:
        digest = _weights_hash(args.weights)
    except Exception as exc:  # not a checkpoint written by train_brain
        p.error(f"--weights {args.weights}: not a brain_unet checkpoint ({type(exc).__name__})")
    command = "bids-boldsr-bench brain " + " ".join(argv if argv is not None else sys.argv[1:])
    report = {"weights_sha256": digest, "command": command}
    if args.labelmaps:
        rows = synthetic(args.labelmaps, args.maps, args.synth, args.seed, args.weights)
        report["synthetic"] = {"rows": rows, "mean_dice": float(np.mean([r["dice"] for r in rows])),
                               "min_dice": float(np.min([r["dice"] for r in rows]))}
    report["labelled"] = []
    for t1w, dseg in args.labelled:
        img = nib.load(t1w)
        mask = np.asanyarray(brain_mask(img, args.weights).dataobj) > 0
        truth = np.asanyarray(nib.load(dseg).dataobj) > 0
        report["labelled"].append({"t1w": Path(t1w).name, "dice": _dice(mask, truth),
                                   "ml": mask_ml(mask, img.affine), "truth_ml": mask_ml(truth, img.affine)})
    report["heads"] = [real_head(t, args.template_res, args.seed, args.weights) for t in args.t1w]
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
