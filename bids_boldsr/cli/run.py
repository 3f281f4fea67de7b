"""Entry point ``bids-boldsr``: checks, builds and runs the workflow; maps failures to exit codes."""
from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from ..errors import (EX_IOERR, EX_OK, BoldSRError, CannotCreateOutput,
                      InputMissing, NoDataSelected, UsageError)

LOG = logging.getLogger("bids_boldsr")


def main(argv=None) -> int:
    if not LOG.handlers:  # our own messages; nipype logs through its own handler
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s bids-boldsr: %(message)s", "%H:%M:%S"))
        LOG.addHandler(handler)
        LOG.setLevel(logging.INFO)
    previous = _on_sigterm()
    try:
        code = _main(argv)
    except Terminated:
        print("bids-boldsr: terminated (SIGTERM); finished steps are kept in the work directory, "
              "rerun the same command to resume", file=sys.stderr)
        _stop_descendants()
        code = 143
    except BoldSRError as exc:
        print(f"bids-boldsr: error: {exc}", file=sys.stderr)
        code = exc.code
    except KeyboardInterrupt:
        print("bids-boldsr: interrupted", file=sys.stderr)
        _stop_descendants()
        code = 130
    except OSError as exc:
        print(f"bids-boldsr: error: I/O error: {exc}", file=sys.stderr)
        code = EX_IOERR
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if __name__ == "__main__" or argv is None:
        sys.exit(code)
    return code


class Terminated(BaseException):
    """SIGTERM (kill, scancel, docker stop) reached the main process (a BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` inside nipype swallows it)."""


def _on_sigterm():
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise Terminated()
    return signal.signal(signal.SIGTERM, handler)


def _stop_descendants() -> None:
    """Stop the MultiProc workers too: orphaned, they would go on writing into the work directory.
    stderr is closed first: the broken pool's threads would print tracebacks after our one line."""
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    from ..profile import descendants

    for pid in reversed(descendants(os.getpid())):
        try:  # the resource tracker cleans up after the others and exits by itself
            if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _main(argv) -> int:
    from ..config import Config, default_omp_nthreads
    from .parser import parse_args

    opts = parse_args(argv)
    bids_dir, output_dir = opts.bids_dir.absolute(), opts.output_dir.absolute()
    work_dir = (opts.work_dir or Path.cwd() / "work").absolute()
    db_root = opts.bids_database_dir.absolute() if opts.bids_database_dir else None
    if opts.list_participants or opts.write_sbatch is not None:
        return _list_or_write_sbatch(opts, bids_dir, output_dir, work_dir, db_root)
    nprocs = opts.nprocs or os.cpu_count() or 1
    omp_nthreads = opts.omp_nthreads or default_omp_nthreads(nprocs)
    if omp_nthreads > nprocs:
        raise UsageError(f"--omp-nthreads {omp_nthreads} is more than --nprocs {nprocs}: a step could never start")
    _check_paths(bids_dir, output_dir, work_dir, db_root)
    _writable_scratch(work_dir)
    config = Config.create(
        bids_dir=bids_dir, output_dir=output_dir, analysis_level=opts.analysis_level,
        work_dir=work_dir, participant_label=tuple(opts.participant_label),
        task=tuple(opts.task), bids_filters=opts.bids_filters,
        nprocs=nprocs, omp_nthreads=omp_nthreads, mem_gb=opts.mem_gb or _available_mem_gb(),
        n_gpu_procs=opts.n_gpu_procs, device=opts.device, sr_method=opts.sr_method,
        sr_precision=opts.sr_precision,
        sr_factor=opts.sr_factor, sr_voxel_size=opts.sr_voxel_size,
        output_spaces=opts.output_spaces, registration=opts.registration, svf_finest_mm=opts.svf_finest_mm,
        cerebellum=opts.cerebellum, cerebellar_atlas=opts.cerebellar_atlas,
        random_seed=opts.random_seed,
        skip_bids_validation=opts.skip_bids_validation, sloppy=opts.sloppy)
    if opts.reports_only:
        from ..reports.build import reports_only

        return reports_only(config)
    if config.analysis_level == "group":
        from ..reports.group import run_group

        return run_group(config)
    _check_sr_prior(config.sr_method)
    return run_participant(config, plugin=opts.plugin, plugin_args=opts.plugin_args,
                           participant_index=opts.participant_index, db_root=db_root)


def _check_sr_prior(sr_method) -> None:
    """The shipped SR prior must be there and intact before any participant starts."""
    if sr_method != "tvsr-prior":
        return
    from ..sr.tvsr.train import load_prior

    try:
        load_prior("prior")
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise InputMissing(f"--sr-method tvsr-prior: {exc}; reinstall bids-boldsr, or choose another "
                           "--sr-method") from None


def _list_or_write_sbatch(opts, bids_dir, output_dir, work_dir, db_root) -> int:
    """``--list-participants`` / ``--write-sbatch``: the selection, nothing processed. Only the
    folder of the pybids index is created (the output folder is left to the jobs)."""
    from .. import bids

    _check_paths(bids_dir, output_dir, work_dir, db_root, index_only=True)
    if opts.write_sbatch is not None and not opts.skip_bids_validation:
        bids.validate_dataset(bids_dir)
    layout = bids.load_layout(bids_dir, work_dir, db_root)
    labels = bids.participants_with_bold(layout, opts.participant_label, opts.task,
                                         opts.bids_filters)
    if opts.list_participants:
        if opts.participant_index is not None:
            labels = [pick_participant(labels, opts.participant_index)]
        print("\n".join(labels), flush=True)
        return EX_OK
    from .sbatch import write_sbatch

    return write_sbatch(opts, labels, bids_dir=bids_dir, output_dir=output_dir,
                        work_dir=work_dir, db_root=db_root or work_dir / "bids_db")


def pick_participant(labels: list[str], index: int) -> str:
    """The ``index``-th (0-based) label of the selection; exit 18 when out of range."""
    if index >= len(labels):
        raise NoDataSelected(f"--participant-index {index} is out of range: the selection has "
                             f"{len(labels)} participant(s), indices 0-{len(labels) - 1} "
                             "(see --list-participants)")
    return labels[index]


def _inside(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def _check_paths(bids_dir: Path, output_dir: Path, work_dir: Path, db_root: Path | None = None,
                 index_only: bool = False) -> None:
    """Refuse folders inside the dataset; create the output, work (and pybids index) folders, or
    with ``index_only`` just the one that will hold the pybids index."""
    from ..bids import check_dataset
    from ..validate import check_writable

    check_dataset(bids_dir)
    folders = {"output": output_dir, "work": work_dir, "bids database": db_root}
    folders = {label: path for label, path in folders.items() if path is not None}
    for label, path in folders.items():
        if _inside(path, bids_dir):
            raise UsageError(f"the {label} directory {path} is inside the input dataset; "
                             "bids-boldsr never writes into bids_dir (choose another folder)")
    if index_only:
        folders = {"bids database": db_root} if db_root is not None else {"work": work_dir}
    for label, path in folders.items():
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CannotCreateOutput(f"cannot create the {label} directory {path}: "
                                     f"{exc.strerror or exc}") from None
        check_writable(path, label)  # a real probe: os.access is always True for root


def _writable_scratch(work_dir: Path) -> None:
    """Temporary files (the forkserver socket, matplotlib's cache) go under the work dir when
    ``TMPDIR``/``MPLCONFIGDIR`` (or their defaults, the system temp folder and the home folder)
    are not writable: containers may run with a read-only root file system, ``/tmp`` and home,
    with only the output and work folders writable."""
    import tempfile

    try:
        tmp = tempfile.gettempdir()
    except FileNotFoundError:  # "No usable temporary directory found"
        tmp = None
    defaults = {"TMPDIR": tmp, "MPLCONFIGDIR": os.path.expanduser("~")}
    for var, sub in (("TMPDIR", "tmp"), ("MPLCONFIGDIR", "matplotlib")):
        current = os.environ.get(var) or defaults[var]
        if current and os.access(current, os.W_OK):
            continue
        path = work_dir / ".runtime" / sub
        path.mkdir(parents=True, exist_ok=True)
        os.environ[var] = str(path)
    tempfile.tempdir = None  # re-read TMPDIR


def _available_mem_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3 * 0.9
    except (ValueError, OSError):
        return 8.0


def run_participant(config, plugin: str = "MultiProc", plugin_args: dict | None = None,
                    participant_index: int | None = None, db_root: Path | None = None) -> int:
    from .. import bids
    from ..atomic import remove_stale_temporaries
    from ..provenance import write_provenance
    from ..validate import check_run, check_sr_options
    from ..workflows.base import init_bids_boldsr_wf

    check_sr_options(config.sr_factor, config.sr_voxel_size)
    if not config.skip_bids_validation:
        bids.validate_dataset(config.bids_dir)
    layout = bids.load_layout(config.bids_dir, config.work_dir, db_root)
    if participant_index is not None:
        selection = bids.participants_with_bold(layout, config.participant_label, config.task,
                                                config.bids_filters)
        label = pick_participant(selection, participant_index)
        LOG.info("--participant-index %d: sub-%s (%d of %d participants)", participant_index,
                 label, participant_index + 1, len(selection))
        config = dataclasses.replace(config, participant_label=(label,))
    subjects = {}
    for label in bids.select_participants(layout, config.participant_label):
        data = bids.collect_data(layout, label, config.task, config.bids_filters)
        if data["bold"]:
            subjects[label] = data
        else:
            LOG.warning("sub-%s: no BOLD runs match the filters; skipped", label)
    if not subjects:
        raise NoDataSelected("no BOLD runs match the participant/task/filter selection")
    check_run(config, subjects)  # SR grid size, writable folders, free space: before anything
    from ..devices import resolve_device
    from ..spaces import resolve

    device = resolve_device(config.device)
    spaces = resolve(config.output_spaces, config.work_dir, config.sloppy, config.cerebellar_atlas)
    bids.write_dataset_description(config.output_dir, config.bids_dir,
                                   container=os.environ.get("BIDS_BOLDSR_CONTAINER"))
    config_files, log_dirs = {}, {}
    for label in subjects:  # a killed earlier run of these participants may have left temporaries
        remove_stale_temporaries(config.output_dir / f"sub-{label}")
        log_dirs[label] = config.output_dir / f"sub-{label}" / "log" / config.run_uuid
        config_files[label] = config.to_json(log_dirs[label] / "config.json")
        write_provenance(log_dirs[label], config.random_seed)  # seed and software versions
    n_runs = sum(len(d["bold"]) for d in subjects.values())
    LOG.info("%d participant(s), %d BOLD run(s); device %s; work dir %s", len(subjects), n_runs,
             device, config.work_dir)
    wf = init_bids_boldsr_wf(config, subjects, spaces, device, config_files)
    crash_dir = next(iter(log_dirs.values())) if len(log_dirs) == 1 else (
        config.output_dir / "logs" / config.run_uuid)
    wf.config["execution"].update({"crashdump_dir": str(crash_dir), "crashfile_format": "txt",
                                   "remove_unnecessary_outputs": False})
    try:
        code = _execute(wf, config, crash_dir, sorted(subjects), plugin, plugin_args)
    except BoldSRError:  # failed steps: the reports list them
        _reports(config, sorted(subjects), plugin)
        raise
    _reports(config, sorted(subjects), plugin)
    return code


def _reports(config, labels, plugin) -> None:
    """Participant reports from the outputs on disk (graph plugins return before the jobs ran)."""
    if plugin in GRAPH_PLUGINS:
        LOG.info("reports: run the same command with --reports-only once the jobs have finished")
        return
    from ..reports.build import write_participant_reports

    write_participant_reports(config, labels)


# Plugins that submit the whole graph as dependent batch jobs and return at once.
GRAPH_PLUGINS = ("SLURMGraph", "SGEGraph", "PBSGraph", "CondorDAGMan")


def plugin_settings(config, plugin: str = "MultiProc", plugin_args: dict | None = None) -> dict:
    """``wf.run`` arguments: MultiProc gets the resources of the command line (``--plugin-args``
    update them); any other plugin gets ``--plugin-args`` alone."""
    if plugin != "MultiProc":
        return dict(plugin_args or {})
    return {"n_procs": config.nprocs, "memory_gb": config.mem_gb,
            "n_gpu_procs": config.n_gpu_procs, "raise_insufficient": False,
            # fork after torch/BLAS threads started can deadlock the pool (seen here): forkserver
            "mp_context": "forkserver", **(plugin_args or {})}


def _execute(wf, config, crash_dir, subjects, plugin="MultiProc", plugin_args=None) -> int:
    from ..crashes import install_short_crash_log
    from ..profile import Sampler
    from ..workflows.names import node_safe

    install_short_crash_log()
    t0 = time.time()
    try:
        with Sampler() as sampler:  # per-node CPU and memory for profile.tsv
            try:
                wf.run(plugin=plugin, plugin_args=plugin_settings(config, plugin, plugin_args))
            finally:
                _write_profiles(wf, config, subjects, t0, sampler, plugin)
    except Exception as exc:  # noqa: BLE001 - nipype re-raises a failed node's error as is
        if list(Path(crash_dir).glob("crash-*")):
            raise _crashed(config, crash_dir, subjects) from None
        if isinstance(exc, OSError):
            raise  # one line and exit 74 in main
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        raise BoldSRError(f"the Nipype {plugin} plugin failed: {first}") from None
    if plugin in GRAPH_PLUGINS:
        LOG.info("the %s plugin submitted the processing steps as dependent batch jobs and "
                 "returned: outputs appear as they finish (crash reports in %s); run the group "
                 "level after them", plugin, crash_dir)
        return EX_OK
    computed, reused = _reuse_counts(
        [Path(wf.base_dir) / wf.name / f"sub_{node_safe(s)}_wf" for s in subjects], t0)
    msg = (f"finished in {time.time() - t0:.1f} s: {computed} processing step(s) computed, "
           f"{reused} reused from the work directory {config.work_dir}")
    LOG.info(msg)
    return EX_OK


def _crashed(config, crash_dir, subjects) -> BoldSRError:
    """File the crash reports under ``sub-<label>/log/<run_uuid>/``, print the one-screen
    summary; the error to raise: exit 1 (74 when a step ran out of disk space)."""
    from ..crashes import file_crashes, summary
    from ..workflows.names import node_safe

    log_dirs = {f"sub_{node_safe(s)}_wf": config.output_dir / f"sub-{s}" / "log" / config.run_uuid
                for s in subjects}
    crashes = file_crashes(crash_dir, log_dirs)
    for folder in (Path(crash_dir), Path(crash_dir).parent):
        if folder.name in (config.run_uuid, "logs") and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # the shared crash folder, emptied by filing
    print("\n".join(summary(crashes)), file=sys.stderr, flush=True)
    where = ", ".join(sorted({str(c.path.parent) for c in crashes}))
    full = any(c.no_space for c in crashes)
    return BoldSRError(f"{len(crashes)} processing step(s) failed"
                       f"{' (no space left on device)' if full else ''}; crash reports in {where}; "
                       "finished steps are kept: fix the cause and rerun the same command",
                       EX_IOERR if full else None)


def _write_profiles(wf, config, subjects, t0, sampler, plugin) -> None:
    """``sub-<label>/log/<run_uuid>/profile.tsv`` per participant (not for graph plugins: their
    nodes run later, in batch jobs)."""
    if plugin in GRAPH_PLUGINS:
        return
    from ..profile import write_profile
    from ..workflows.names import node_safe

    for s in subjects:
        try:
            write_profile(config.output_dir / f"sub-{s}" / "log" / config.run_uuid,
                          Path(wf.base_dir) / wf.name / f"sub_{node_safe(s)}_wf", t0, sampler)
        except OSError as exc:  # a profile never fails a run
            LOG.warning("sub-%s: profile not written: %s", s, exc)


def _reuse_counts(wf_dirs, since: float) -> tuple[int, int]:
    """Steps whose cached result predates this run were reused (sinks and reports always run)."""
    computed = reused = 0
    for result in (r for d in wf_dirs for r in d.rglob("result_*.pklz")):
        name = result.parent.name
        if name.startswith("ds_") or name == "report":
            continue
        if result.stat().st_mtime >= since:
            computed += 1
        else:
            reused += 1
    return computed, reused


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
