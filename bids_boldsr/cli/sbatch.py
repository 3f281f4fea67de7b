"""``--write-sbatch``: the participant level as a SLURM job array, one participant per task.

The script runs this command line once per participant: task ``N`` passes
``--participant-index $SLURM_ARRAY_TASK_ID`` (0-based, counted in the list ``--list-participants``
prints), works in its own work dir ``<work_dir>/array-N`` and shares the pybids index built here.
All tasks write into the one output folder (outputs and dataset-level files are written
atomically). The group level is a second job that depends on the whole array (printed).
"""
from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from pathlib import Path

from .. import __version__
from ..errors import EX_OK, InputMissing

DEFAULT_CPUS = 8
DEFAULT_MEM_GB = 32.0
GROUP_MEM = "4G"
# Options that describe the array itself, not what each task computes.
NOT_PASSED = {"bids_dir", "output_dir", "analysis_level", "work_dir", "participant_index",
              "list_participants", "write_sbatch", "container_image", "sbatch_option",
              "bids_database_dir", "nprocs", "mem_gb", "version", "help"}


class Shell(str):
    """A word written into the script as is (shell variables), not quoted."""


def _words(tokens) -> str:
    return " ".join(t if isinstance(t, Shell) else shlex.quote(str(t)) for t in tokens)


def slurm_mem(gb: float) -> str:
    """``--mem`` for ``--mem-gb``: whole gigabytes as ``NG``, otherwise megabytes rounded up."""
    return f"{int(gb)}G" if float(gb).is_integer() else f"{math.ceil(gb * 1024)}M"


def passed_options(opts) -> list[list[str]]:
    """The options of ``opts`` that differ from the defaults, as argument groups for the tasks."""
    from .parser import build_parser, parse_args

    defaults = parse_args([str(opts.bids_dir), str(opts.output_dir), "participant"])
    out = []
    for action in build_parser()._actions:
        if not action.option_strings or action.dest in NOT_PASSED:
            continue
        value, default = getattr(opts, action.dest, None), getattr(defaults, action.dest, None)
        if value is None or value == default:
            continue
        flag = next((o for o in action.option_strings if o.startswith("--")),
                    action.option_strings[0])
        if isinstance(action, argparse._StoreTrueAction):
            out.append([flag])
        elif action.dest == "output_spaces":  # spaces.SpatialReferences
            out.append([flag, *value.strings()])
        elif action.dest == "plugin_args":
            import json

            out.append([flag, json.dumps(value, separators=(",", ":"))])
        elif isinstance(value, (list, tuple)):
            out.append([flag, *[str(v) for v in value]])
        elif isinstance(value, Path):
            out.append([flag, str(value.absolute())])
        else:
            out.append([flag, f"{value:g}" if isinstance(value, float) else str(value)])
    return out


def _runner(opts, bids_dir: Path, output_dir: Path, work_dir: Path, db_root: Path) -> list[str]:
    """The program the tasks run: this Python's bids-boldsr, or the Apptainer image's."""
    if opts.container_image is None:
        return [sys.executable, "-m", "bids_boldsr.cli.run"]
    binds = [f"{bids_dir}:{bids_dir}:ro", str(output_dir), str(work_dir)]
    if not _below(db_root, work_dir):
        binds.append(str(db_root))
    if opts.bids_filter_file is not None:
        f = opts.bids_filter_file.absolute()
        binds.append(f"{f}:{f}:ro")
    return ["apptainer", "run", *(["--nv"] if opts.device != "cpu" else []), "--cleanenv",
            "-B", ",".join(binds), str(opts.container_image.absolute())]


def _below(path: Path, parent: Path) -> bool:
    try:
        Path(path).relative_to(parent)
        return True
    except ValueError:
        return False


def render(opts, labels: list[str], *, bids_dir: Path, output_dir: Path, work_dir: Path,
           db_root: Path, script: Path) -> tuple[str, list[str]]:
    """The job-array script and the shell lines that submit it and the group job after it."""
    cpus = opts.nprocs or DEFAULT_CPUS
    mem_gb = opts.mem_gb or DEFAULT_MEM_GB
    runner = _runner(opts, bids_dir, output_dir, work_dir, db_root)
    task = [[*runner, str(bids_dir), str(output_dir), "participant"],
            ["--participant-index", Shell('"$SLURM_ARRAY_TASK_ID"')],
            ["-w", Shell('"$work"')], ["--bids-database-dir", str(db_root)],
            ["--nprocs", str(cpus), "--mem-gb", f"{mem_gb:g}"], *passed_options(opts)]
    group = [*runner, str(bids_dir), str(output_dir), "group", "-w", str(work_dir / "group")]
    if opts.participant_label:
        group += ["--participant-label", *opts.participant_label]
    extra = list(opts.sbatch_option)
    submit = [f"jobid=$(sbatch --parsable {shlex.quote(str(script))})",
              _words(["sbatch", Shell("--dependency=afterok:$jobid"), "--kill-on-invalid-dep=yes",
                      "--job-name=bids-boldsr-group", "--cpus-per-task=1", f"--mem={GROUP_MEM}",
                      *extra, "--wrap", _words(group)])]
    n = len(labels)
    lines = ["#!/bin/bash",
             f"# bids-boldsr {__version__}: the participant level of {bids_dir}",
             f"# as a SLURM job array, one participant per task, all writing into {output_dir}.",
             "# Task N runs --participant-index N (0-based) of this selection "
             "(--list-participants):",
             *[f"#   {i}  sub-{label}" for i, label in enumerate(labels)],
             f"# Task N works in {work_dir}/array-N (resubmitting a task resumes it: "
             f"sbatch --array=N {script.name});",
             f"# the pybids index is shared: {db_root}.",
             "# Logs: slurm-<jobid>_<N>.out in the folder sbatch is run from.",
             "# Submit, then the group level once every task has succeeded:",
             *[f"#   {line}" for line in submit],
             "#SBATCH --job-name=bids-boldsr",
             f"#SBATCH --array=0-{n - 1}",
             f"#SBATCH --cpus-per-task={cpus}",
             f"#SBATCH --mem={slurm_mem(mem_gb)}",
             *(["#SBATCH --gres=gpu:1"] if opts.device != "cpu" else []),
             *[f"#SBATCH {o}" for o in extra],
             "set -euo pipefail",
             ': "${SLURM_ARRAY_TASK_ID:?submit this script with sbatch (it is a job array)}"',
             f'work={shlex.quote(str(work_dir))}/array-"$SLURM_ARRAY_TASK_ID"',
             'mkdir -p "$work"' + (f" {shlex.quote(str(output_dir))}"
                                   if opts.container_image is not None else ""),
             "exec " + " \\\n    ".join(_words(g) for g in task)]
    return "\n".join(lines) + "\n", submit


def write_sbatch(opts, labels: list[str], *, bids_dir: Path, output_dir: Path, work_dir: Path,
                 db_root: Path) -> int:
    from ..atomic import atomic_write_text

    if opts.container_image is not None and not opts.container_image.is_file():
        raise InputMissing(f"--container-image {opts.container_image} does not exist")
    script = opts.write_sbatch.absolute()
    text, submit = render(opts, labels, bids_dir=bids_dir, output_dir=output_dir,
                          work_dir=work_dir, db_root=db_root, script=script)
    try:
        atomic_write_text(script, text)
    except OSError as exc:
        from ..errors import CannotCreateOutput

        raise CannotCreateOutput(f"cannot write --write-sbatch {script}: "
                                 f"{exc.strerror or exc}") from None
    os.chmod(script, 0o755)
    shown = " ".join(f"sub-{x}" for x in labels[:5]) + (" ..." if len(labels) > 5 else "")
    print(f"bids-boldsr: wrote {script}: a job array of {len(labels)} task(s), "
          f"--participant-index 0-{len(labels) - 1} = {shown}\n"
          "submit it, then the group level once every task has succeeded:\n"
          + "\n".join(f"  {line}" for line in submit), flush=True)
    return EX_OK
