"""``bids-boldsr-bench``: benchmarks users can rerun on their own data.

Each sub-command lives in its own module (``sr``, ``register``, ``segment``) exposing
``main(argv) -> int``.
"""
import importlib
import sys

import nibabel as nib

COMMANDS = {"sr": "super-resolution vs. interpolation baselines",
            "register": "registration vs. ANTs SyN on labelled pairs",
            "register-real": "real T1w -> the embedded template vs. ANTs: tissue overlap, LNCC, inverse consistency",
            "register-sr": "BOLD -> T1w coregistration from super-resolved vs. interpolated references",
            "coreg": "BOLD -> T1w rigid coregistration spread from perturbed starts, single vs multi-start",
            "template": "the workflow's T1w -> template registration on one T1w (penalty weights)",
            "mappings": "distance between two runs' template -> BOLD mappings (e.g. with vs without T1w)",
            "segment": "cerebellar segmentation Dice against FreeSurfer aseg",
            "head-init": "the T1w -> template affine's first stage: skull-stripped template (before 0.8) vs head atlas",
            "brain": "a learned brain mask: Dice on held-out synthetic heads and a real T1w, the affine with and without it",
            "sr-infer": "tvsr inference per volume: today's path against 0.4.0's, with their difference",
            "interp": "separable SR interpolation and streamed reading vs. the naive way",
            "resample": "template-space series resampling: all-core and torch engines vs. one-thread scipy",
            "pipeline": "the participant level on a dataset, with its per-stage profile table",
            "threads": "an SVF iteration in one or two processes of one or two threads (why steps limit threads)",
            "gpu": "CUDA paths of every engine against their CPU results, with timings (JSON)"}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = [f"  {name:<12} {what}" for name, what in COMMANDS.items()]
        print(f"usage: bids-boldsr-bench {{{','.join(COMMANDS)}}} [options]\n" + "\n".join(lines))
        return 0 if argv and argv[0] in ("-h", "--help") else 64
    module = importlib.import_module(f"bids_boldsr.bench.{argv[0].replace('-', '_')}")
    try:
        return int(module.main(argv[1:]) or 0)
    except (OSError, nib.filebasedimages.ImageFileError) as exc:  # missing or unreadable input
        print(f"bids-boldsr-bench {argv[0]}: error: {exc}", file=sys.stderr)
        return 66


if __name__ == "__main__":
    sys.exit(main())
