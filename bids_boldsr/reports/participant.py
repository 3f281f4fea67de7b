"""The participant report ``sub-<label>.html``: figures made from the outputs on disk (so
``--reports-only`` rebuilds it without recomputing), rendered through a Jinja2 template."""
from __future__ import annotations

import json
import logging
import math
import traceback
from pathlib import Path

import nibabel as nib

from . import collect

LOG = logging.getLogger("bids_boldsr")

# (QC key, label, what a good value looks like); "{space}" expands over the template spaces
METRICS = {
    "sr": (("n_volumes", "volumes", ""),
           ("input_voxel_size", "input voxel size (mm)", ""),
           ("sr_voxel_size", "SR voxel size (mm)", ""),
           ("tsnr_input", "median tSNR, input", "> 40 at 3 mm, 3 T"),
           ("tsnr_sr", "median tSNR, SR", "most of the input's; far lower = noise amplified")),
    "reg": (("dice_brain_mask_{space}", "Dice, warped BOLD mask vs template mask (in FOV)", "> 0.8 good, < 0.6 check"),
            ("dice_brain_mask_whole_{space}", "Dice, whole template mask", "lower for partial slabs"),
            ("brain_coverage_{space}", "template brain inside the BOLD FOV", "1 = whole brain"),
            ("template_warp_lncc_before", "LNCC before the warp", ""),
            ("template_warp_lncc_after", "LNCC after the warp", "> before"),
            ("template_warp_jacobian_min", "min Jacobian determinant", "> 0 (no folding)"),
            ("template_warp_jacobian_max", "max Jacobian determinant", "< 5"),
            ("template_warp_jacobian_negative_fraction", "fraction of folded voxels", "< 0.001"),
            ("fd_mean", "mean FD (mm)", "< 0.2 good, > 0.5 poor"),
            ("fd_max", "max FD (mm)", "< 1")),
    "cb": (("cerebellum_labels_present", "lobule labels present", "all of the atlas's when covered"),
           ("cerebellum_voxels", "labelled voxels (SR grid)", ""),
           ("cerebellum_volume_ml", "cerebellum volume (ml)", "120-160 in adults when fully covered"),
           ("cerebellum_cortex_ml", "cerebellar cortex (ml)", ""),
           ("cerebellum_white_matter_ml", "cerebellar white matter (ml)", ""),
           ("cerebellum_atlas_dice", "Dice with the normalised atlas", "> 0.5; near 0 = failure"),
           ("cerebellum_atlas_volume_ratio", "volume / atlas volume", "0.8-1.2")),
}


def fmt(val) -> str:
    """How a QC value is printed (4 significant digits; lists joined with 'x')."""
    if isinstance(val, bool):
        return str(val)
    if isinstance(val, float):
        return "n/a" if math.isnan(val) else f"{val:.4g}"
    if isinstance(val, (list, tuple)):
        return " x ".join(fmt(v) for v in val)
    return str(val)


def metric_rows(qc: dict, section: str) -> list[dict]:
    spaces = sorted(k.removeprefix("dice_brain_mask_") for k in qc
                    if k.startswith("dice_brain_mask_") and not k.startswith("dice_brain_mask_whole_"))
    rows = []
    for key, label, hint in METRICS[section]:
        for k, lab in ([(key.format(space=s), f"{label} ({s})") for s in spaces] if "{space}" in key
                       else [(key, label)]):
            if k in qc and not (isinstance(qc[k], float) and math.isnan(qc[k])):
                rows.append({"key": k, "label": lab, "text": fmt(qc[k]), "hint": hint})
    return rows


def template_files(label: str, entities: str, cache_dir) -> dict:
    """The template's T1w, brain mask, GM/WM probabilities and cerebellar atlas (None when absent),
    found by name in TEMPLATEFLOW_HOME and the embedded copy (a TemplateFlow query indexes the whole
    home folder, ~10 s per file)."""
    from ..templates import EMBEDDED, seed_embedded, user_home

    res = next((int(e.removeprefix("res-")) for e in entities.split("_") if e.startswith("res-")
                and e.removeprefix("res-").isdigit()), 2)
    roots = [user_home()] + ([seed_embedded(cache_dir)] if label == EMBEDDED else [])
    suffixes = {"t1w": "T1w", "mask": "desc-brain_mask", "gm": "label-GM_probseg", "wm": "label-WM_probseg",
                "cerebellum": "atlas-AAL_desc-cerebellum_dseg"}
    out = dict.fromkeys(suffixes)
    for key, suffix in suffixes.items():
        for root in roots:
            folder = Path(root) / f"tpl-{label}"
            hits = [p for r in dict.fromkeys((res, 2, 1)) for fmt_ in (f"{r}", f"{r:02d}")
                    for p in sorted(folder.glob(f"tpl-{label}_res-{fmt_}_{suffix}.nii.gz"))
                    if p.stat().st_size > 0]  # TemplateFlow skeletons hold empty placeholders
            if hits:
                out[key] = hits[0]
                break
    return out


class _Figures:
    """Runs figure functions, recording the ones that fail (shown in the Errors section)."""

    def __init__(self, output_dir):
        self.output_dir, self.failed = Path(output_dir), []

    def rel(self, path) -> str:
        return Path(path).relative_to(self.output_dir).as_posix()

    def __call__(self, what, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - one broken figure must not hide the report
            LOG.warning("report figure '%s' failed: %s", what, exc)
            self.failed.append({"node": f"report figure: {what}", "message": f"{type(exc).__name__}: {exc}",
                                "file": "", "workdir": traceback.format_exc(limit=3)})
            return None


def run_section(output_dir, bids_dir, subject, qc, cache_dir, figs: _Figures) -> dict:
    """Figures and numbers of one run (paths relative to the output root)."""
    import pandas as pd

    from ..nifti import load_series
    from . import carpet, fig_cb, fig_reg, fig_sr
    from .plotting import resample_like

    name = qc["run"]
    f = collect.run_files(output_dir, bids_dir, subject, name)
    figdir = Path(output_dir) / f"sub-{subject}" / "figures"
    sidecar = json.loads(f["sr_json"].read_text()) if f["sr_json"] else {}
    sec = {"name": name, "task": name.split("task-")[1].split("_")[0] if "task-" in name else "",
           "metrics": {k: metric_rows(qc, k) for k in METRICS}, "sr_settings": [], "flickers": {},
           "images": {}, "notes": [], "lobules": []}
    from .fig_sr import sr_settings

    sec["sr_settings"] = sr_settings(sidecar)
    rel = figs.rel
    # super-resolution
    if f["input"] and f["sr"] and f["mask"]:
        pair = figs("SR before/after", fig_sr.sr_flicker, f["input"], f["sr"], f["mask"], figdir, name)
        if pair:
            sec["flickers"]["sr"] = {k: rel(v) for k, v in pair.items() if k != "volume"}
            sec["sr_volume"] = pair["volume"]
        tsnr = figs("tSNR maps", fig_sr.tsnr_maps, f["input"], f["sr"], f["mask"], figdir / f"{name}_desc-tsnr_bold.png")
        if tsnr:
            sec["images"]["tsnr"] = rel(tsnr["file"])
        dc = figs("data consistency", fig_sr.consistency_map, f["input"], f["sr"], f["mask"], sidecar,
                  figdir / f"{name}_desc-consistency_bold.png")
        if dc:
            sec["images"]["consistency"] = rel(dc["file"])
            sec["consistency"] = {"model": dc["model"], "median": fmt(dc["median_pct"]), "p95": fmt(dc["p95_pct"])}
    else:
        sec["notes"].append("The native super-resolved series is not in the outputs (add 'bold' to "
                            "--output-spaces) or the input run is not found: no SR figures.")
    # registration
    space, tpl = next(iter(f["template_spaces"].items()), (None, None))
    tfiles = template_files(space, tpl["entities"], cache_dir) if space else {}
    from ..registration.io import load_affine, load_field

    for target, xfm in f["coreg"].items():
        if target == "T1w":
            ref, ref_mask = f["t1w"], f["t1w_mask"]
        else:
            ref, ref_mask = tfiles.get("t1w"), tfiles.get("mask")
        if f["boldref"] and ref and ref_mask:
            pair = figs(f"coregistration to {target}", fig_reg.flicker, nib.load(f["boldref"]), nib.load(ref),
                        nib.load(ref_mask), [], [load_affine(xfm)], figdir, f"{name}_desc-coreg{target}",
                        ("BOLD reference, before (scanner coordinates)", f"BOLD reference, after (on {target})"))
            if pair:
                sec["flickers"]["coreg"] = {k: rel(v) for k, v in pair.items()}
                sec["coreg_target"] = target
            break
    if space:
        norm = f["normalisation"].get(space, {})
        if f["t1w"] and norm.get("affine") and tfiles.get("t1w") and tfiles.get("mask"):
            after = ([load_field(norm["warp"])] if norm.get("warp") else []) + [load_affine(norm["affine"])]
            pair = figs("normalisation", fig_reg.flicker, nib.load(f["t1w"]), nib.load(tfiles["t1w"]),
                        nib.load(tfiles["mask"]), [load_affine(norm["affine"])], after, figdir,
                        f"{name}_space-{space}_desc-norm",
                        (f"T1w on {space}, affine only", f"T1w on {space}, affine + warp" if norm.get("warp")
                         else f"T1w on {space}"))
            if pair:
                sec["flickers"]["norm"] = {k: rel(v) for k, v in pair.items()}
        if tfiles.get("mask"):
            img = figs("template outline", fig_reg.template_outline, tpl["bold"], tfiles["mask"],
                       figdir / f"{name}_space-{space}_desc-outline_bold.png",
                       f"mean SR BOLD on {space}, {space} brain outline (red)")
            if img:
                sec["images"]["outline"] = rel(img)
            if norm.get("warp"):
                jac = figs("Jacobian", fig_reg.jacobian_map, norm["warp"], tfiles["mask"],
                           figdir / f"sub-{subject}_space-{space}_desc-jacobian_xfm.png")
                if jac:
                    sec["images"]["jacobian"] = rel(jac["file"])
        sec["space"] = space
    # motion, DVARS, carpet
    if f["confounds"]:
        conf = pd.read_csv(f["confounds"], sep="\t", na_values="n/a")
        series = f["sr"] or (tpl["bold"] if tpl else None)
        dv = None
        if series and f["mask"]:
            img = load_series(series)
            mask = resample_like(nib.load(f["mask"]), img.shape[:3], img.affine, (), order=0) > 0
            dv = figs("DVARS", carpet.dvars, img, mask)
        if dv is not None:
            svg = figs("FD/DVARS", carpet.motion_plot, conf, dv, figdir / f"{name}_desc-motion_bold.svg")
            if svg:
                sec["images"]["motion"] = rel(svg)
            fd = conf["framewise_displacement"].to_numpy(dtype=float)
            if tpl and tfiles.get("mask") and tfiles.get("gm") and tfiles.get("wm"):
                bold_img = load_series(tpl["bold"])
                groups = figs("tissue groups", carpet.tissue_groups, bold_img, tfiles)
                carpet_src = tpl["bold"]
            else:
                groups, carpet_src = {"brain": mask}, series
            if groups:
                png = figs("carpet", carpet.carpet_plot, carpet_src, groups, fd, dv,
                           figdir / f"{name}_desc-carpet_bold.png", qc.get("repetition_time"))
                if png:
                    sec["images"]["carpet"] = rel(png)
                    sec["carpet_groups"] = list(groups)
    # cerebellum
    if f["dseg"] and f["sr"]:
        png = figs("lobules on SR BOLD", fig_cb.lobule_overlay, load_series(f["sr"]), f["dseg"],
                   figdir / f"{name}_desc-cerebellum_dseg.png", "cerebellar lobules on the mean SR BOLD")
        if png:
            sec["images"]["lobules_bold"] = rel(png)
    if f["t1w_dseg"] and f["t1w"]:
        png = figs("lobules on T1w", fig_cb.lobule_overlay, nib.load(f["t1w"]), f["t1w_dseg"],
                   figdir / f"sub-{subject}_desc-cerebellum_dseg.png", "cerebellar lobules on the T1w")
        if png:
            sec["images"]["lobules_t1w"] = rel(png)
    tables = {label: pd.read_csv(path, sep="\t") for label, path in
              (("BOLD (SR grid)", f["morph"]), ("T1w", f["t1w_morph"])) if path}
    if tables:
        svg = figs("lobule volumes", fig_cb.volume_bars, tables, figdir / f"{name}_desc-cerebellum_morph.svg")
        if svg:
            sec["images"]["volumes"] = rel(svg)
        names = list(dict.fromkeys(n for t in tables.values() for n in t["name"]))
        vols = {label: dict(zip(t["name"], t["volume_mm3"])) for label, t in tables.items()}
        sec["lobule_columns"] = list(tables)
        sec["lobules"] = [{"name": n, "values": [fmt(float(vols[c][n])) if n in vols[c] else "" for c in tables]}
                          for n in names]
    return sec


def build_participant_report(output_dir, subject: str, bids_dir=None, cache_dir=None) -> Path:
    """Write ``<output_dir>/sub-<subject>.html`` (and its figures) from the files on disk."""
    from ..atomic import atomic_write_text
    from ..boilerplate import methods_text
    from . import methods
    from .render import render

    output_dir = Path(output_dir)
    config = collect.saved_config(output_dir, subject)
    bids_dir = Path(bids_dir) if bids_dir else (config.bids_dir if config else None)
    cache_dir = cache_dir or (config.work_dir if config else output_dir / ".report-cache")
    figs = _Figures(output_dir)
    runs = [run_section(output_dir, bids_dir, subject, qc, cache_dir, figs)
            for qc in collect.qc_rows(output_dir, subject)]
    crashes = [collect.parse_crash(p) for p in collect.crash_files(output_dir, subject)]
    for c in crashes:
        c["file"] = figs.rel(c["file"])
    has_t1w = any(collect.run_files(output_dir, bids_dir, subject, r["name"])["t1w"] for r in runs[:1])
    boiler = methods_text(config, has_t1w) if config else "The settings of the run were not found."
    sidecar_json = collect.run_files(output_dir, bids_dir, subject, runs[0]["name"])["sr_json"] if runs else None
    profile = _profile(output_dir, subject, config.run_uuid if config else None, figs)
    page = render("participant.html.j2", subject=subject, runs=runs, errors=crashes, figure_errors=figs.failed,
                  profile=profile,
                  boilerplate=boiler, references=methods.references(boiler),
                  versions=methods.versions(config.version if config else None,
                                            json.loads(sidecar_json.read_text()) if sidecar_json else None),
                  config=json.dumps(config.to_dict(), indent=2, default=str) if config else "",
                  run_uuid=config.run_uuid if config else "")
    return atomic_write_text(output_dir / f"sub-{subject}.html", page)


def _profile(output_dir, subject, run_uuid, figs: _Figures) -> dict | None:
    """The Profile section (``fig_profile``) from this run's ``profile.tsv``; None without one."""
    from . import fig_profile

    tsv = fig_profile.latest_profile(output_dir, subject, run_uuid)
    if tsv is None:
        return None
    section = figs("processing timeline", fig_profile.profile_section, tsv,
                   Path(output_dir) / f"sub-{subject}" / "figures")
    if section:
        section["timeline"], section["tsv"] = figs.rel(section["timeline"]), figs.rel(section["tsv"])
    return section
