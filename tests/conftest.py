"""Shared fixtures: the real data beside the repository, a seeded template cache, tiny datasets."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("TEMPLATEFLOW_AUTOUPDATE", "0")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared(*parts) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is missing (tests read ../shared/data)")
    return path


@pytest.fixture(scope="session")
def xa30_run(tmp_path_factory):
    """One real participant run of ds-xa30 (sloppy), shared by the end-to-end and report tests."""
    from bids_boldsr.cli.run import main

    ds = shared("ds-xa30")
    root = tmp_path_factory.mktemp("xa30")
    out, work = root / "out", root / "work"
    argv = [str(ds), str(out), "participant", "-w", str(work), "--sloppy", "--nprocs", "2"]
    assert main(argv) == 0
    return ds, out, work, argv


@pytest.fixture(scope="session")
def template_cache(tmp_path_factory) -> Path:
    """A work dir with the embedded template seeded once for the whole test session."""
    from bids_boldsr.templates import seed_embedded

    cache = tmp_path_factory.mktemp("tplcache")
    seed_embedded(cache)
    return cache


def make_bids(root: Path, bold_img, t1w_img=None, sub="01", task="rest", tr=2.0, sidecar=True):
    """Write a minimal BIDS dataset from nibabel images."""
    import nibabel as nib

    func = root / f"sub-{sub}" / "func"
    func.mkdir(parents=True, exist_ok=True)
    nib.save(bold_img, func / f"sub-{sub}_task-{task}_bold.nii.gz")
    if sidecar:
        (func / f"sub-{sub}_task-{task}_bold.json").write_text(
            json.dumps({"RepetitionTime": tr, "TaskName": task}))
    if t1w_img is not None:
        anat = root / f"sub-{sub}" / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        nib.save(t1w_img, anat / f"sub-{sub}_T1w.nii.gz")
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "test", "BIDSVersion": "1.9.0"}))
    return root


def fake_suit(template_cache, resolution=2, warp_mm=0.0):
    """A 'SUIT' template cut from the embedded MNI template around the cerebellum, deformed by a
    smooth random warp of about ``warp_mm`` and moved to another world frame (7 degrees, 6 mm,
    4 % larger), with the AAL cerebellum as its lobules: the true answer on the template grid is
    the AAL atlas itself."""
    import nibabel as nib
    import numpy as np
    from scipy import ndimage

    from bids_boldsr import templates
    from bids_boldsr.registration.field import DisplacementField
    from bids_boldsr.registration.resample import resample

    t1w = templates.embedded_image(resolution, template_cache, suffix="T1w")
    atlas = templates.embedded_image(resolution, template_cache, atlas="AAL", desc="cerebellum", suffix="dseg")
    labels = np.asarray(atlas.dataobj)
    pts = np.argwhere(labels > 0)
    pad = int(round(15 / resolution))
    lo, hi = np.maximum(pts.min(0) - pad, 0), np.minimum(pts.max(0) + pad + 1, labels.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    crop_affine = atlas.affine.copy()
    crop_affine[:3, 3] = nib.affines.apply_affine(atlas.affine, lo)
    a = np.deg2rad(7)
    move = np.eye(4)
    move[:3, :3] = 1.04 * np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    move[:3, 3] = [6.0, -4.0, 3.0]
    image, lobules = np.asarray(t1w.dataobj, np.float32)[box], labels[box]
    if warp_mm:
        shape = image.shape
        rng = np.random.default_rng(1)
        coarse = rng.normal(0, warp_mm, (3, 4, 4, 4))
        disp = np.stack([ndimage.zoom(c, np.array(shape) / 4, order=3) for c in coarse], -1)
        field = DisplacementField(disp, crop_affine)
        image = resample(image, crop_affine, shape, crop_affine, [field], order=1)
        lobules = resample(lobules, crop_affine, shape, crop_affine, [field], order=0)
    suit_t1w = nib.Nifti1Image(image.astype(np.float32), move @ crop_affine)
    suit_dseg = nib.Nifti1Image(lobules.astype(np.uint8), move @ crop_affine)
    return suit_t1w, suit_dseg, t1w, atlas


def suit_home(home: Path, template_cache) -> Path:
    """A TEMPLATEFLOW_HOME holding a stand-in tpl-SUIT (:func:`fake_suit`, 2 mm, warped)."""
    import nibabel as nib

    tpl = home / "tpl-SUIT"
    tpl.mkdir(parents=True, exist_ok=True)
    (home / "dataset_description.json").write_text('{"Name": "tf", "BIDSVersion": "1.9.0"}')
    t1w, dseg, _, _ = fake_suit(template_cache, warp_mm=2.5)
    (tpl / "template_description.json").write_text(json.dumps({"Name": "SUIT stand-in"}))
    nib.save(t1w, tpl / "tpl-SUIT_T1w.nii.gz")
    nib.save(dseg, tpl / "tpl-SUIT_atlas-Diedrichsen2009_dseg.nii.gz")
    rows = ["index\tname\tabbreviation\tcolor"] + [f"{i}\tLobule-{i}\tL{i}\t#808080" for i in range(1, 27)]
    (tpl / "tpl-SUIT_atlas-Diedrichsen2009_dseg.tsv").write_text("\n".join(rows) + "\n")
    return home


MISALIGNED = "MNIMoved"


def misaligned_template_home(home: Path, template_cache, name=MISALIGNED, degrees=10.0, shift_mm=8.0,
                             scale=1.1, resolutions=(2,)) -> Path:
    """A TEMPLATEFLOW_HOME holding ``tpl-<name>``: the embedded MNI template (T1w and brain mask)
    rotated about z by ``degrees``, shifted by ``shift_mm`` along x and scaled by ``scale``, on the
    same world grid, so that a space that is really registered to it differs from the embedded one
    by that much. Returns ``home``; the similarity (world mm, embedded -> moved) is in
    ``tpl-<name>/moved_from_embedded.txt``."""
    import nibabel as nib
    import numpy as np
    from scipy import ndimage

    from bids_boldsr import templates

    th = np.deg2rad(degrees)
    move = np.eye(4)
    move[:3, :3] = scale * np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
    move[:3, 3] = (shift_mm, 0, 0)
    tpl = home / f"tpl-{name}"
    tpl.mkdir(parents=True, exist_ok=True)
    (home / "dataset_description.json").write_text('{"Name": "tf", "BIDSVersion": "1.9.0"}')
    (tpl / "template_description.json").write_text(json.dumps({"Name": f"{name}: moved MNI (test)"}))
    np.savetxt(tpl / "moved_from_embedded.txt", move)
    for res in resolutions:
        for query, suffix, order in (({"suffix": "T1w"}, "T1w", 1),
                                     ({"desc": "brain", "suffix": "mask"}, "desc-brain_mask", 0)):
            src = nib.load(templates.get_template_file(templates.EMBEDDED, template_cache, resolution=res,
                                                       **query))
            # output voxel -> world -> (moved^-1) world -> source voxel
            vox = np.linalg.inv(src.affine) @ np.linalg.inv(move) @ src.affine
            data = ndimage.affine_transform(np.asarray(src.dataobj, dtype=np.float32), vox[:3, :3], vox[:3, 3],
                                            order=order, mode="constant")
            dtype = np.uint8 if order == 0 else np.float32
            nib.save(nib.Nifti1Image(data.astype(dtype), src.affine),
                     tpl / f"tpl-{name}_res-{res:02d}_{suffix}.nii.gz")
    return home
