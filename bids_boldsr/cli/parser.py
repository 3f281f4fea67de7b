"""Command-line parsing: the BIDS-App contract. Nothing scientific happens here."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import __version__
from ..errors import EX_UNKNOWN_LEVEL, BoldSRError, UsageError

ANALYSIS_LEVELS = ("participant", "group")
SR_METHODS = ("tvsr", "tvsr-prior", "tvsr-published", "spline", "trilinear")


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


def _svf_level(text):
    val = _positive_float(text)
    if not 1.0 <= val <= 4.0:
        raise argparse.ArgumentTypeError(f"must be between 1 and 4 mm: {text!r}")
    return val


def _int_at_least(minimum, why=""):
    def check(text):
        try:
            val = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if val < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}{why}: {text!r}")
        return val
    return check


_positive_int = _int_at_least(1)
_index = _int_at_least(0, " (the first participant is 0)")


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
    g.add_argument("--omp-nthreads", type=_positive_int, default=None,
                   help="CPU threads of each heavy step (registration, SR, head motion, the cerebellum CNN); "
                        "default: 1 with --nprocs 2 or fewer, else min(nprocs - 1, 8), as in fMRIPrep. "
                        "Every other step computes with one thread")
    g.add_argument("--mem-gb", "--mem", type=_positive_float, default=None, help="memory limit (GB)")
    g.add_argument("--n-gpu-procs", type=_positive_int, default=1,
                   help="GPU nodes that may run at once (MultiProc)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="torch device; 'auto' uses CUDA when a GPU is visible")
    g = p.add_argument_group("super-resolution")
    g.add_argument("--sr-method", choices=SR_METHODS, default="tvsr-prior",
                   help="tvsr-prior (default): a residual 3-D CNN shipped with the app, trained on "
                        "synthetic BOLD-like images under many point-spread functions (no training per "
                        "participant, no PSF assumed); tvsr: self-supervised TV-regularised deep SR trained "
                        "on the participant's own LR data under an assumed PSF; tvsr-published: the faithful published variant; spline, "
                        "trilinear: interpolation baselines")
    g.add_argument("--sr-precision", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="arithmetic of the SR network (tvsr-prior, tvsr): auto (default) is bfloat16 on CUDA "
                        "and on CPUs with native bf16 instructions (AVX512-BF16, AMX; about 2x faster, "
                        "differences about 0.02 %% of the signal on average), float32 elsewhere; the "
                        "sidecar records which was used")
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
    g.add_argument("--svf-finest-mm", type=_svf_level, default=None, metavar="MM",
                   help="the SVF's finest working level in mm, 1 to 4 (default: the images' resolution "
                        "within 1-2 mm; 1.5 halves the T1w registration's time on a CPU for about "
                        "0.006 less tissue Dice: docs/benchmarks-registration.md)")
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
    g.add_argument("--reports-only", action="store_true",
                   help="rebuild the reports (sub-<label>.html; at the group level also "
                        "group_report.html) from the outputs already in output_dir, computing nothing "
                        "else; -w names the folder holding the template cache")
    g = p.add_argument_group("clusters (SLURM job arrays, Nipype plugins; docs/hpc.md)")
    g.add_argument("--participant-index", "--participant_index", type=_index, default=None,
                   metavar="N", help="process only the N-th participant (0-based) of the sorted "
                   "list --list-participants prints (after --participant-label/--task/"
                   "--bids-filter-file): --participant-index $SLURM_ARRAY_TASK_ID")
    g.add_argument("--list-participants", action="store_true",
                   help="print the selected participant labels, one a line, and exit")
    g.add_argument("--bids-database-dir", type=Path, metavar="DIR",
                   help="folder of the pybids index (default <work_dir>/bids_db); array tasks may "
                        "share it")
    g.add_argument("--plugin", default="MultiProc", metavar="NAME",
                   help="Nipype execution plugin (default MultiProc; e.g. Linear, SLURM, "
                        "SLURMGraph)")
    g.add_argument("--plugin-args", metavar="JSON|FILE",
                   help="the plugin's arguments as a JSON object or a JSON file; for MultiProc "
                        "they update n_procs/memory_gb/n_gpu_procs from --nprocs/--mem-gb/"
                        "--n-gpu-procs")
    g.add_argument("--write-sbatch", type=Path, metavar="FILE",
                   help="write a SLURM job-array script (one task per participant) for this "
                        "command line to FILE, print how to submit it and the group level, exit")
    g.add_argument("--container-image", type=Path, metavar="SIF",
                   help="with --write-sbatch: run the tasks in this Apptainer image")
    g.add_argument("--sbatch-option", action="append", default=[], metavar="OPT",
                   help="with --write-sbatch: an extra '#SBATCH' line, e.g. "
                        "--sbatch-option=--time=04:00:00 (repeatable)")
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
    _check_cluster_options(opts)
    return opts


def _check_cluster_options(opts) -> None:
    one_participant = {"--participant-index": opts.participant_index is not None,
                       "--list-participants": opts.list_participants,
                       "--write-sbatch": opts.write_sbatch is not None}
    if opts.analysis_level == "group":
        given = [name for name, on in one_participant.items() if on]
        if given:
            raise UsageError(f"{given[0]} is for the participant level, not group")
    if opts.write_sbatch is not None:
        if opts.list_participants:
            raise UsageError("--write-sbatch and --list-participants exclude each other")
        if opts.participant_index is not None:
            raise UsageError("--write-sbatch writes one task per participant: drop "
                             "--participant-index (the script passes $SLURM_ARRAY_TASK_ID)")
    else:
        for name, val in (("--container-image", opts.container_image),
                          ("--sbatch-option", opts.sbatch_option)):
            if val:
                raise UsageError(f"{name} only goes with --write-sbatch")
    opts.sbatch_option = [o if o.startswith("-") else "--" + o for o in opts.sbatch_option]
    opts.plugin = check_plugin(opts.plugin)
    opts.plugin_args = {} if opts.plugin_args is None else load_plugin_args(opts.plugin_args)


def nipype_plugins() -> list[str]:
    """Names ``wf.run(plugin=...)`` accepts (``<Name>Plugin`` classes of nipype)."""
    import nipype.pipeline.plugins as plugins

    return sorted(n[:-len("Plugin")] for n in dir(plugins)
                  if n.endswith("Plugin") and len(n) > len("Plugin"))


def check_plugin(name: str) -> str:
    """The Nipype plugin name, matched case-insensitively; exit 64 for an unknown one."""
    if name == "MultiProc":
        return name
    known = nipype_plugins()
    match = [k for k in known if k.lower() == name.lower()]
    if not match:
        raise UsageError(f"unknown --plugin {name!r}: choose from {', '.join(known)}")
    return match[0]


def load_plugin_args(text: str) -> dict:
    """``--plugin-args``: a JSON object, or the path of a file holding one (exit 64 otherwise)."""
    source, raw = "--plugin-args", text
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise UsageError(f"--plugin-args {text!r} is neither a JSON object nor a JSON file")
        source = f"--plugin-args {path}"
        try:
            raw = path.read_text()
        except OSError as exc:
            raise UsageError(f"{source} cannot be read: {exc.strerror or exc}") from None
    try:
        args = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(args, dict):
        raise UsageError(f"{source} must be a JSON object (the plugin's keyword arguments)")
    return args


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
