"""Command-line parsing: the BIDS-App contract. Nothing scientific happens here."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import __version__
from ..errors import EX_UNKNOWN_LEVEL, BoldSRError, UsageError

ANALYSIS_LEVELS = ("participant", "group")
SR_METHODS = ("tvsr", "tvsr-published", "spline", "trilinear")


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting with code 2."""

    def error(self, message):
        raise UsageError(message)


def _positive_float(text):
    try:
        val = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not val > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return val


def _positive_int(text):
    try:
        val = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if val < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text!r}")
    return val


def _space(text):
    from ..spaces import parse_reference

    try:
        return str(parse_reference(text))
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="bids-boldsr",
                description="Super-resolve BOLD runs of a BIDS dataset, register them to templates, "
                            "segment the cerebellum, and write BIDS-Derivatives with QC reports.")
    p.add_argument("bids_dir", type=Path, help="root of the input BIDS dataset (read only)")
    p.add_argument("output_dir", type=Path, help="derivatives output folder")
    p.add_argument("analysis_level", help="participant or group")
    p.add_argument("--version", action="version", version=f"bids-boldsr {__version__}")
    g = p.add_argument_group("selecting data")
    g.add_argument("--participant-label", "--participant_label", nargs="+", default=[],
                   metavar="LABEL", help="participants to process (with or without 'sub-')")
    g.add_argument("--task", nargs="+", default=[], metavar="TASK", help="only these tasks")
    g.add_argument("--bids-filter-file", type=Path, metavar="FILE",
                   help="JSON of pybids filters per query ('bold', 't1w'), as in fMRIPrep")
    g.add_argument("--skip-bids-validation", action="store_true",
                   help="do not check the dataset before running")
    g = p.add_argument_group("resources")
    g.add_argument("-w", "--work-dir", type=Path, metavar="DIR",
                   help="working directory (intermediate results are cached and reused here); "
                        "default: ./work in the current directory")
    g.add_argument("--nprocs", "--n-cpus", type=_positive_int, default=None, help="CPU processes")
    g.add_argument("--mem-gb", "--mem", type=_positive_float, default=None, help="memory limit (GB)")
    g.add_argument("--n-gpu-procs", type=_positive_int, default=1,
                   help="GPU nodes that may run at once (MultiProc)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="torch device; 'auto' uses CUDA when a GPU is visible")
    g = p.add_argument_group("super-resolution")
    g.add_argument("--sr-method", choices=SR_METHODS, default="tvsr",
                   help="tvsr: self-supervised TV-regularised deep SR trained on the participant's own "
                        "LR data (default); tvsr-published: the faithful published variant; spline, "
                        "trilinear: interpolation baselines")
    size = g.add_mutually_exclusive_group()
    size.add_argument("--sr-factor", type=_positive_float, default=None,
                      help="voxel size divisor (default 2; non-integers such as 1.5 allowed)")
    size.add_argument("--sr-voxel-size", type=_positive_float, default=None, metavar="MM",
                      help="isotropic output voxel size in mm (instead of --sr-factor)")
    g = p.add_argument_group("registration")
    g.add_argument("--registration", choices=("svf", "nevf", "affine"), default="svf",
                   help="T1w -> template: affine followed by a diffeomorphic stationary velocity "
                        "field (svf, default), the neural velocity field variant (nevf), or the "
                        "affine alone; runs without a T1w use the affine")
    g = p.add_argument_group("cerebellum")
    g.add_argument("--cerebellum", choices=("cnn", "atlas"), default="cnn",
                   help="cnn (default): the packaged network finds the cerebellum in the image and "
                        "the atlas lobules are kept inside it; atlas: the atlas labels alone, "
                        "pulled through the inverse normalisation")
    g.add_argument("--cerebellar-atlas", choices=("AAL", "SUIT"), default="AAL",
                   help="lobules from the embedded AAL cerebellar regions (default, offline) or from "
                        "TemplateFlow's tpl-SUIT atlas-Diedrichsen2009 (must be in TEMPLATEFLOW_HOME; "
                        "brought onto the MNI template by a cerebellum-masked registration)")
    g = p.add_argument_group("outputs")
    g.add_argument("--output-spaces", nargs="+", type=_space, metavar="SPACE",
                   default=["bold", "MNI152NLin2009aSym"],
                   help="'bold' (the native super-resolved grid), 'T1w' (the T1w field of view at "
                        "the super-resolved voxel size) and/or TemplateFlow templates with optional "
                        "':cohort-X' and ':res-N', each registered on its own (default: bold "
                        "MNI152NLin2009aSym, the embedded offline template)")
    g = p.add_argument_group("other")
    g.add_argument("--random-seed", type=int, default=0)
    g.add_argument("--sloppy", action="store_true", help="fast, low-quality settings (testing only)")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """Parse and check the arguments; raise ``BoldSRError`` with the right exit code."""
    opts = build_parser().parse_args(argv)
    if opts.analysis_level not in ANALYSIS_LEVELS:
        raise BoldSRError(f"unknown analysis level {opts.analysis_level!r}: "
                          f"choose from {', '.join(ANALYSIS_LEVELS)}", EX_UNKNOWN_LEVEL)
    if opts.sr_factor is None and opts.sr_voxel_size is None:
        opts.sr_factor = 2.0
    from ..spaces import SpatialReferences

    opts.output_spaces = SpatialReferences.parse(opts.output_spaces)
    opts.participant_label = sorted({lab.removeprefix("sub-") for lab in opts.participant_label})
    opts.bids_filters = {}
    if opts.bids_filter_file is not None:
        opts.bids_filters = load_filter_file(opts.bids_filter_file)
    return opts


def load_filter_file(path: Path) -> dict:
    from ..errors import InputMissing

    try:
        filters = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputMissing(f"--bids-filter-file {path} does not exist") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"--bids-filter-file {path} is not valid JSON: {exc}") from None
    if not isinstance(filters, dict) or not all(isinstance(v, dict) for v in filters.values()):
        raise UsageError(f"--bids-filter-file {path} must map query names ('bold', 't1w') to "
                         "objects of BIDS entities")
    unknown = set(filters) - {"bold", "t1w"}
    if unknown:
        raise UsageError(f"--bids-filter-file {path}: unknown queries {sorted(unknown)}; "
                         "use 'bold' and/or 't1w'")
    return filters
