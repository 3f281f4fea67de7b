"""``bids-boldsr-bench head-init``: the T1w -> template affine's first stage, before and since 0.8.

For each real T1w, ``register_to_template`` twice in one run: the first stage matching the T1w with
skull to the skull-stripped template (``template``, before 0.8) and the whole T1w to the shipped head
atlas (``head``, the default since 0.8); the second, brain-masked stage is the same. Scored by the
template brain mask pulled back through each affine: its volume (ml; the template's own mask holds
1887 ml at 1 mm), its Dice with the other stage's mask and, for ``--labelled`` T1w images, with the
FreeSurfer brain (aseg > 0 without the exterior CSF, label 24). CPU seconds per affine (1 thread).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from .brain import mask_ml as _ml
from .register_real import dice as _dice

STAGES = ("template", "head")


def one_t1w(path, labels, template, tmask, atlas, sloppy, seed) -> dict:
    from ..registration.linear import brain_mask_from_template, register_to_template

    t1w = nib.load(path)
    row, masks = {"t1w": Path(path).name}, {}
    for stage in STAGES:
        c0 = time.process_time()
        matrix = register_to_template(t1w, template, tmask, sloppy=sloppy, seed=seed,
                                      head_atlas=atlas if stage == "head" else None)
        row[f"{stage}_cpu_seconds"] = time.process_time() - c0
        masks[stage] = np.asanyarray(brain_mask_from_template(t1w, tmask, matrix).dataobj) > 0
        row[f"{stage}_pulled_ml"] = _ml(masks[stage], t1w.affine)
        row[f"{stage}_matrix"] = np.round(matrix, 5).tolist()
    row["dice_between_stages"] = _dice(masks["template"], masks["head"])
    if labels is not None:
        aseg = np.asanyarray(nib.load(labels).dataobj).astype(np.int32)
        truth = (aseg > 0) & (aseg != 24)
        row["truth_ml"] = _ml(truth, t1w.affine)
        for stage in STAGES:
            row[f"{stage}_dice_with_truth"] = _dice(masks[stage], truth)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bids-boldsr-bench head-init", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--t1w", action="append", default=[], help="a real T1w (repeatable)")
    p.add_argument("--labelled", nargs=2, action="append", default=[], metavar=("T1W", "DSEG"))
    p.add_argument("--template-res", type=int, default=1, choices=(1, 2))
    p.add_argument("--sloppy", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    if not (args.t1w or args.labelled):
        print("bids-boldsr-bench head-init: error: give --t1w T1W and/or --labelled T1W DSEG", file=sys.stderr)
        return 64
    for path in args.t1w + [x for pair in args.labelled for x in pair]:
        if not Path(path).is_file():
            print(f"bids-boldsr-bench head-init: error: {path}: no such file", file=sys.stderr)
            return 66
    import torch

    from .. import templates as tpl

    torch.set_num_threads(1)
    template = tpl.embedded_image(args.template_res, suffix="T1w")
    tmask = tpl.embedded_image(args.template_res, desc="brain", suffix="mask")
    atlas = tpl.head_atlas()
    rows = [one_t1w(t, None, template, tmask, atlas, args.sloppy, args.seed) for t in args.t1w]
    rows += [one_t1w(t, d, template, tmask, atlas, args.sloppy, args.seed) for t, d in args.labelled]
    report = {"template_mask_ml": _ml(np.asanyarray(tmask.dataobj) > 0, tmask.affine), "rows": rows,
              "command": "bids-boldsr-bench head-init " + " ".join(argv if argv is not None else sys.argv[1:])}
    for row in rows:
        print(f"{row['t1w']}: pulled brain mask {row['template_pulled_ml']:.0f} ml (template first stage) -> "
              f"{row['head_pulled_ml']:.0f} ml (head atlas), Dice between {row['dice_between_stages']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
