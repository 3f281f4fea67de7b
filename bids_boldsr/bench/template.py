"""``bids-boldsr-bench template``: the workflow's T1w -> template registration on one T1w, for
several negative-Jacobian penalty weights (or methods): LNCC before/after, the fraction of
non-positive Jacobian determinants (whole warp grid and inside the template brain mask), CPU seconds.

The affine stage (``register_to_template``, two-stage brain-masked MI) runs once; each setting then
runs the diffeomorphic stage from it, as the workflow's ``t1w_to_template_nonlinear`` node does.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import nibabel as nib


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bids-boldsr-bench template", description=__doc__.split("\n")[0])
    p.add_argument("--t1w", required=True, help="a T1w image (with or without skull)")
    p.add_argument("--lambda-jac", type=float, nargs="+", default=[1000.0],
                   help="negative-Jacobian penalty weights to compare (default: the workflow's 1000)")
    p.add_argument("--method", choices=("svf", "nevf"), default="svf")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--sloppy", action="store_true")
    p.add_argument("--json")
    args = p.parse_args(argv)
    import torch

    from .. import templates as tpl
    from ..registration.linear import brain_mask_from_template, register_to_template
    from ..registration.svf import register_diffeomorphic

    torch.set_num_threads(args.threads)
    template, mask = tpl.embedded_image(suffix="T1w"), tpl.embedded_image(desc="brain", suffix="mask")
    t1w = nib.load(args.t1w)
    c0 = time.process_time()
    affine = register_to_template(t1w, template, mask, sloppy=args.sloppy, head_atlas=tpl.head_atlas())
    report = {"t1w": args.t1w, "method": args.method, "affine_cpu_seconds": time.process_time() - c0,
              "settings": [], "command": "bids-boldsr-bench template " + " ".join(
                  argv if argv is not None else sys.argv[1:])}
    moving_mask = brain_mask_from_template(t1w, mask, affine)
    for weight in args.lambda_jac:
        c0 = time.process_time()
        result = register_diffeomorphic(t1w, template, affine, method=args.method, fixed_mask=mask,
                                        moving_mask=moving_mask, sloppy=args.sloppy, lambda_jac=weight)
        row = {"lambda_jac": weight, "cpu_seconds": time.process_time() - c0,
               **{k: v for k, v in result.stats.items() if k != "method"}}
        report["settings"].append(row)
        print(f"lambda_jac {weight:g}: LNCC {row['lncc_before']:.3f} -> {row['lncc_after']:.3f}, det J <= 0 "
              f"{100 * row['jacobian_negative_fraction']:.4f} % (in brain "
              f"{100 * row['jacobian_negative_fraction_mask']:.4f} %), {row['cpu_seconds']:.1f} CPU s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
