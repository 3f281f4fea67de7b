"""Find what a report shows, on disk only: the QC table, each run's derivatives, the raw inputs,
the saved settings and the crash files (so reports can be rebuilt without recomputing)."""
from __future__ import annotations

import json
from pathlib import Path


def qc_rows(output_dir, subject) -> list[dict]:
    """Rows of ``sub-<label>/sub-<label>_qc.tsv`` (lists decoded from their JSON text)."""
    import pandas as pd

    tsv = Path(output_dir) / f"sub-{subject}" / f"sub-{subject}_qc.tsv"
    if not tsv.is_file():
        return []
    table = pd.read_csv(tsv, sep="\t", na_values="n/a", dtype={"subject": str})
    rows = []
    for rec in table.to_dict(orient="records"):
        for key, val in rec.items():
            if isinstance(val, str) and val.startswith("["):
                try:
                    rec[key] = json.loads(val)
                except ValueError:
                    pass
        rows.append(rec)
    return rows


def _one(folder: Path, pattern: str):
    hits = sorted(folder.rglob(pattern)) if folder.is_dir() else []
    return hits[0] if hits else None


def run_files(output_dir, bids_dir, subject, run) -> dict:
    """Paths (those that exist) of one run's inputs and derivatives; ``run`` is the run's name
    (its entities, e.g. ``sub-01_task-rest_run-1``)."""
    out = Path(output_dir) / f"sub-{subject}"
    files = {
        "input": _one(Path(bids_dir) / f"sub-{subject}", f"{run}_bold.nii*") if bids_dir else None,
        "sr": _one(out, f"{run}_desc-sr_bold.nii.gz"),
        "sr_json": _one(out, f"{run}_desc-sr_bold.json"),
        "mask": _one(out, f"{run}_desc-brain_mask.nii.gz"),
        "boldref": _one(out, f"{run}_boldref.nii.gz"),
        "confounds": _one(out, f"{run}_desc-confounds_timeseries.tsv"),
        "dseg": _one(out, f"{run}_desc-cerebellum_dseg.nii.gz"),
        "morph": _one(out, f"{run}_desc-cerebellum_morph.tsv"),
        "t1w": _one(Path(bids_dir) / f"sub-{subject}", f"sub-{subject}*_T1w.nii*") if bids_dir else None,
        "t1w_mask": _one(out / "anat", f"sub-{subject}*_desc-brain_mask.nii.gz"),
        "t1w_dseg": _one(out / "anat", f"sub-{subject}*_desc-cerebellum_dseg.nii.gz"),
        "t1w_morph": _one(out / "anat", f"sub-{subject}*_desc-cerebellum_morph.tsv"),
    }
    spaces = {}
    for path in sorted(out.rglob(f"{run}_space-*_desc-sr_bold.nii.gz")):
        space = path.name[len(run) + 1:].split("_desc-sr_bold")[0]  # e.g. space-X or space-X_res-2
        label = space.split("_")[0].removeprefix("space-")
        if label != "T1w":
            spaces[label] = {"bold": path, "entities": space}
    files["template_spaces"] = spaces
    files["coreg"] = {p.name.split("_from-boldref_to-")[1].split("_")[0]: p
                      for p in sorted(out.rglob(f"{run}_from-boldref_to-*_mode-image_xfm.txt"))}
    files["normalisation"] = {}
    for label in spaces:
        anat = out / "anat"
        files["normalisation"][label] = {
            "affine": _one(anat, f"sub-{subject}*_from-T1w_to-{label}_mode-image_desc-affine_xfm.txt")
            or _one(anat, f"sub-{subject}*_from-T1w_to-{label}_mode-image_xfm.txt"),
            "warp": _one(anat, f"sub-{subject}*_from-T1w_to-{label}_mode-image_desc-warp_xfm.nii.gz")}
    return files


def saved_config(output_dir, subject):
    """The settings of the participant's latest run (``sub-<label>/log/<run_uuid>/config.json``)."""
    from ..config import Config

    logs = sorted((Path(output_dir) / f"sub-{subject}" / "log").glob("*/config.json"))
    return Config.from_json(logs[-1]) if logs else None


def crash_files(output_dir, subject) -> list[Path]:
    """Nipype crash files of the participant's runs (its log folders, and the shared ``logs/``
    folder of runs that processed several participants, when the crash names its workflow)."""
    out = Path(output_dir)
    hits = sorted((out / f"sub-{subject}" / "log").glob("*/crash-*"))
    for path in sorted((out / "logs").glob("*/crash-*")):
        try:
            if f"sub_{subject}_wf" in path.read_text(errors="replace"):
                hits.append(path)
        except OSError:
            continue
    return hits


def parse_crash(path) -> dict:
    """Node name, last line of the error and the working directory of a text crash file."""
    text = Path(path).read_text(errors="replace")
    node = workdir = ""
    for line in text.splitlines():
        if line.startswith("Node:") and not node:
            node = line.split(":", 1)[1].strip()
        elif line.startswith("Working directory:") and not workdir:
            workdir = line.split(":", 1)[1].strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.split(":")[0].endswith(("Error", "Exception", "Interrupt"))]
    message = errors[-1] if errors else (lines[-1] if lines else "(empty crash file)")
    return {"file": Path(path), "node": node or Path(path).name, "message": message, "workdir": workdir}
