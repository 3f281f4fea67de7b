"""pybids queries, dataset checks, derivative naming and dataset_description.json."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .atomic import atomic_write_text
from .errors import InputMissing, NoDataSelected, UsageError, ValidationError

# BIDS entity order for derivative file names (BIDS specification, appendix "entity table").
ENTITY_ORDER = ("sub", "ses", "task", "acq", "ce", "rec", "dir", "run", "echo", "part",
                "from", "to", "mode", "hemi", "space", "cohort", "res", "den", "label", "desc")
PYBIDS_KEYS = {"subject": "sub", "session": "ses", "task": "task", "acquisition": "acq",
               "ceagent": "ce", "reconstruction": "rec", "direction": "dir", "run": "run",
               "echo": "echo", "part": "part"}


@dataclass(frozen=True)
class BoldRun:
    path: Path
    entities: dict           # BIDS short keys (sub, ses, task, run...) of the source file
    repetition_time: float
    task_name: str


def check_dataset(bids_dir: Path) -> None:
    """Fail with exit 66 when the dataset folder is missing or unreadable."""
    if not bids_dir.is_dir():
        raise InputMissing(f"BIDS dataset folder {bids_dir} does not exist")
    if not os.access(bids_dir, os.R_OK | os.X_OK):
        raise InputMissing(f"BIDS dataset folder {bids_dir} is not readable")


def validate_dataset(bids_dir: Path) -> list[str]:
    """Check the essentials of the BIDS layout; return warnings, raise ValidationError (exit 16).

    Uses the BIDS path validator (``bids_validator``) for file names; the full schema
    validator is a separate (node.js/deno) program, not needed to run.
    """
    from bids_validator import BIDSValidator

    desc = bids_dir / "dataset_description.json"
    problems = []
    if not desc.is_file():
        problems.append("dataset_description.json is missing")
    else:
        try:
            info = json.loads(desc.read_text())
            for key in ("Name", "BIDSVersion"):
                if key not in info:
                    problems.append(f"dataset_description.json lacks the required field {key}")
        except json.JSONDecodeError as exc:
            problems.append(f"dataset_description.json is not valid JSON ({exc})")
    subjects = sorted(p.name for p in bids_dir.glob("sub-*") if p.is_dir())
    if not subjects:
        problems.append("no sub-<label> folders")
    validator, ignored = BIDSValidator(), _bidsignore(bids_dir)
    bad = []
    for sub in subjects:
        for root, _, files in os.walk(bids_dir / sub):
            for name in files:
                rel = "/" + str(Path(root, name).relative_to(bids_dir))
                if not validator.is_bids(rel) and not any(Path(rel[1:]).match(g) for g in ignored):
                    bad.append(rel)
    if bad:
        problems.append(f"{len(bad)} file name(s) are not valid BIDS, e.g. {bad[0]}")
    if problems:
        raise ValidationError("BIDS validation failed: " + "; ".join(problems)
                              + " (use --skip-bids-validation to run anyway)")
    return []


def _bidsignore(bids_dir: Path) -> list[str]:
    f = bids_dir / ".bidsignore"
    if not f.is_file():
        return []
    return [line.strip().rstrip("/") + ("*" if line.strip().endswith("/") else "")
            for line in f.read_text().splitlines() if line.strip() and not line.startswith("#")]


def _dataset_fingerprint(bids_dir: Path) -> str:
    """Hash of file names, sizes and mtimes: a changed dataset gets a fresh pybids index."""
    h = hashlib.sha1()
    for root, dirs, files in os.walk(bids_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in ("derivatives",))
        for name in sorted(files):
            st = os.stat(Path(root, name))
            h.update(f"{Path(root, name).relative_to(bids_dir)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def load_layout(bids_dir: Path, work_dir: Path, db_root: Path | None = None):
    """A pybids layout whose index database lives in the work dir (never in the dataset).

    The index is ``<db_root or work_dir/bids_db>/<dataset fingerprint>/``. It is built in a
    temporary folder beside it and renamed into place when complete, so parallel runs (SLURM
    array tasks) sharing the folder never read or write a half-built index: a run that loses
    the race drops its own copy and opens the winner's.
    """
    import shutil
    import tempfile

    from bids import BIDSLayout
    from bids.layout import BIDSLayoutIndexer

    root = Path(db_root) if db_root is not None else Path(work_dir) / "bids_db"
    fingerprint = _dataset_fingerprint(bids_dir)
    db = root / fingerprint
    if not (db / "layout_index.sqlite").is_file():
        indexer = BIDSLayoutIndexer(validate=False, ignore=("code", "stimuli", "sourcedata",
                                                            "derivatives", "models"))
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{fingerprint}.", suffix=".part", dir=root))
        try:
            os.chmod(tmp, 0o755)  # as a plain mkdir would make it (mkdtemp: 0700)
            built = BIDSLayout(str(bids_dir), indexer=indexer, database_path=str(tmp),
                               reset_database=True, validate=False)
            built.connection_manager.engine.dispose()
            del built
            try:
                os.rename(tmp, db)
            except OSError:  # another run renamed its complete index into place first
                if not (db / "layout_index.sqlite").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    # validate=False: --skip-bids-validation must work without dataset_description.json (the
    # dataset is checked by validate_dataset unless skipped)
    return BIDSLayout(str(bids_dir), database_path=str(db), reset_database=False, validate=False)


def bold_query(subject: str, tasks=(), filters=None) -> dict:
    """The pybids query for a participant's BOLD runs (``--task``, ``--bids-filter-file``)."""
    query = {"subject": subject, "datatype": "func", "suffix": "bold",
             "extension": [".nii", ".nii.gz"], **(filters or {}).get("bold", {})}
    if tasks:
        query["task"] = list(tasks)
    return query


def participants_with_bold(layout, labels=(), tasks=(), filters=None) -> list[str]:
    """The sorted participants (all, or ``labels``) with at least one BOLD run matching the
    selection: the list ``--participant-index`` counts in and ``--list-participants`` prints."""
    from .validate import check_filters

    check_filters(layout, filters)
    selected = [s for s in select_participants(layout, labels)
                if _get(layout, bold_query(s, tasks, filters))]
    if not selected:
        raise NoDataSelected("no BOLD runs match the participant/task/filter selection")
    return selected


def select_participants(layout, labels) -> list[str]:
    available = sorted(layout.get_subjects())
    if not labels:
        if not available:
            raise NoDataSelected(f"no sub-<label> folders with data in {layout.root}: is it a BIDS "
                                 "dataset? (give the folder holding dataset_description.json)")
        return available
    missing = sorted(set(labels) - set(available))
    if missing:
        raise NoDataSelected(f"participant(s) {', '.join(missing)} not found in the dataset "
                             f"(available: {', '.join(available) or 'none'})")
    return sorted(labels)


def collect_data(layout, subject: str, tasks=(), filters=None) -> dict:
    """BOLD runs and the T1w (or None) of one participant, each read and checked (exit 65)."""
    from .validate import check_filters, check_t1w

    filters = filters or {}
    check_filters(layout, filters)
    bold_files = sorted(_get(layout, bold_query(subject, tasks, filters)))
    t1w_query = {"subject": subject, "datatype": "anat", "suffix": "T1w",
                 "extension": [".nii", ".nii.gz"], **filters.get("t1w", {})}
    t1w_files = sorted(_get(layout, t1w_query))
    runs = [bold_run(layout, f) for f in bold_files]
    if t1w_files:
        check_t1w(t1w_files[0], root=Path(layout.root))
    return {"bold": runs, "t1w": Path(t1w_files[0]) if t1w_files else None}


def _get(layout, query: dict) -> list:
    """``layout.get`` (files) with pybids' errors on bad filter values as one line (exit 64)."""
    try:
        return layout.get(return_type="file", **query)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"the BIDS query {query} failed: {exc} (check --bids-filter-file)") from None


def bold_run(layout, path) -> BoldRun:
    """Read and check one BOLD run's data and metadata (``validate.check_bold``; exit 65)."""
    from .validate import check_bold

    path = Path(path)
    meta = layout.get_metadata(str(path)) if layout is not None else {}
    tr = check_bold(path, meta, root=Path(layout.root) if layout is not None else None)
    ents = entities_of(path)
    return BoldRun(path=path, entities=ents, repetition_time=tr,
                   task_name=meta.get("TaskName", ents.get("task", "")))


def entities_of(path) -> dict:
    """BIDS short-key entities of a file name (``sub-01_task-x_run-1_bold.nii.gz``)."""
    from bids.layout import parse_file_entities

    parsed = parse_file_entities(str(path))
    out = {PYBIDS_KEYS[k]: str(v) for k, v in parsed.items() if k in PYBIDS_KEYS}
    if "run" in out:  # keep the source's zero padding
        for part in Path(path).name.split("_"):
            if part.startswith("run-"):
                out["run"] = part[4:]
    return out


def derivative_name(entities: dict, suffix: str, extension: str, **extra) -> str:
    ents = {**entities, **{k: v for k, v in extra.items() if v is not None}}
    parts = [f"{k}-{ents[k]}" for k in ENTITY_ORDER if ents.get(k) not in (None, "")]
    return "_".join(parts + [suffix]) + extension


def derivative_path(output_dir: Path, entities: dict, datatype: str, suffix: str,
                    extension: str, **extra) -> Path:
    """``<out>/sub-X[/ses-Y]/<datatype>/<name>`` for the given entities."""
    folder = Path(output_dir) / f"sub-{entities['sub']}"
    if entities.get("ses"):
        folder /= f"ses-{entities['ses']}"
    return folder / datatype / derivative_name(entities, suffix, extension, **extra)


BIDSIGNORE = ["*.html", "logs/", "figures/", "sub-*/figures/", "sub-*/log/",
              "*_timeseries.tsv", "*_morph.tsv", "*_qc.json", "*_qc.tsv", "group_*"]


def write_dataset_description(output_dir: Path, bids_dir: Path, container: str | None = None):
    """dataset_description.json and .bidsignore for the derivatives (atomic; parallel-safe)."""
    desc = {
        "Name": "bids-boldsr: super-resolved BOLD, template registration and cerebellar labels",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "bids-boldsr", "Version": __version__,
                         "CodeURL": "https://github.com/bids-boldsr/bids-boldsr"}],
        "SourceDatasets": [{"URL": Path(bids_dir).absolute().as_uri()}],
    }
    src = Path(bids_dir) / "dataset_description.json"
    if src.is_file():
        try:
            info = json.loads(src.read_text())
            if info.get("DatasetDOI"):
                desc["SourceDatasets"][0]["DOI"] = info["DatasetDOI"]
            if info.get("Name"):
                desc["SourceDatasets"][0]["Name"] = info["Name"]
        except json.JSONDecodeError:
            pass
    if container:
        desc["GeneratedBy"][0]["Container"] = {"Type": container}
    atomic_write_text(Path(output_dir) / "dataset_description.json", json.dumps(desc, indent=2) + "\n")
    atomic_write_text(Path(output_dir) / ".bidsignore", "\n".join(BIDSIGNORE) + "\n")
