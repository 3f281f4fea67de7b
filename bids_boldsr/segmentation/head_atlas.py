"""A whole-head label atlas in MNI152NLin2009aSym space, built from the SynthSeg label maps.

The embedded template is skull-stripped, so a T1w with a bright scalp (ds-xa30) can be matched to it
by spreading the template brain over the head (docs/benchmarks-registration.md). The first affine
stage (``registration.linear.register_to_template(head_atlas=...)``) therefore matches the whole
T1w to a whole head instead: this atlas of tissue classes (brain tissues and the label maps'
extra-cerebral labels), compared with the T1w by mutual information, which needs no intensity model
of scalp, skull or fat. Built once by committed, deterministic code and shipped in
``bids_boldsr/data/registration/``:

    python -m bids_boldsr.segmentation.head_atlas --labelmaps ../shared/data/labelmaps \
        --out bids_boldsr/data/registration

Each label map (01-12; 13 and 14 held back as for the networks) is rendered as a skull-stripped
T1-like image (WM 0.8, GM 0.55, CSF 0.15), registered to the embedded template (12 dof, MI, seed 0),
and its classes are pulled onto a 2 mm grid covering the head; the atlas is the per-voxel majority.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from .synth import CSF, GM, WM
from .train import HOLDOUT, training_files

# extra-cerebral labels of the SynthSeg maps, the five largest apart, the rest together
EXTRA_GROUPS = ((507,), (511,), (515,), (516,), (509,))
CLASSES = ("background", "CSF", "GM", "WM", "extra-507", "extra-511", "extra-515", "extra-516",
           "extra-509", "other")
RENDER = (0.0, 0.15, 0.55, 0.8)  # background, CSF, GM, WM of the T1-like rendering
STEP_MM = 2.0
BOUNDS_MM = ((-100.0, 100.0), (-140.0, 110.0), (-90.0, 120.0))  # the head around the template


def tissue_classes(labels: np.ndarray) -> np.ndarray:
    """Class index (``CLASSES``) of every voxel of an aseg-style label map."""
    out = np.where(labels > 0, len(CLASSES) - 1, 0).astype(np.uint8)
    for index, values in enumerate(((*CSF,), GM, WM) + EXTRA_GROUPS, start=1):
        out[np.isin(labels, values)] = index
    return out


def atlas_grid():
    """(shape, affine) of the atlas grid: RAS, ``STEP_MM``, ``BOUNDS_MM``."""
    lo = np.array([b[0] for b in BOUNDS_MM])
    shape = tuple(int(round((b[1] - b[0]) / STEP_MM)) + 1 for b in BOUNDS_MM)
    affine = np.diag([STEP_MM] * 3 + [1.0])
    affine[:3, 3] = lo
    return shape, affine


def build(labelmaps, out, holdout=HOLDOUT, seed=0, cache_dir=None) -> dict:
    """Build the atlas from ``labelmaps``; write it and its record (JSON) to ``out``."""
    import torch

    from .. import templates as tpl
    from ..registration.linear import dilate_mask, register_linear

    start = time.time()
    torch.set_num_threads(1)
    template = tpl.embedded_image(1, cache_dir, suffix="T1w")
    tmask = tpl.embedded_image(1, cache_dir, desc="brain", suffix="mask")
    wide = nib.Nifti1Image(dilate_mask(np.asarray(tmask.dataobj) > 0, tmask.affine, 10.0).astype(np.uint8),
                           tmask.affine)
    shape, grid = atlas_grid()
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    world = np.c_[ijk @ grid[:3, :3].T + grid[:3, 3], np.ones(len(ijk))]
    votes = np.zeros((len(CLASSES),) + shape, np.uint16)
    files, matrices = training_files(labelmaps, holdout), {}
    for path in files:
        img = nib.load(path)
        classes = tissue_classes(np.asarray(img.dataobj).astype(np.int32))
        render = np.asarray(RENDER + (0.0,) * (len(CLASSES) - len(RENDER)), np.float32)[classes]
        matrix = register_linear(nib.Nifti1Image(render, img.affine), template, dof=12, cost="mi",
                                 fixed_mask=wide, seed=seed)  # template points -> label-map points
        vox = (world @ (np.linalg.inv(img.affine) @ matrix).T)[:, :3]
        pulled = ndimage.map_coordinates(classes, vox.T, order=0, mode="constant", cval=0).reshape(shape)
        for index in range(len(CLASSES)):
            votes[index] += pulled == index
        matrices[path.name] = np.round(matrix, 6).tolist()
        print(f"{path.name}: {time.time() - start:.0f}s", flush=True)
    atlas = votes.argmax(0).astype(np.uint8)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.uint8)
    image = nib.Nifti1Image(atlas, grid, hdr)
    image.header.set_xyzt_units("mm")
    image.set_qform(grid, 1)
    image.set_sform(grid, 1)
    path = out / tpl.head_atlas_file().name
    tmp = path.with_name("tmp_" + path.name)
    nib.save(image, tmp)
    tmp.replace(path)
    record = {
        "atlas": path.name, "data_sha256": hashlib.sha256(atlas.tobytes()).hexdigest(),
        "classes": list(CLASSES), "voxels_per_class": {c: int((atlas == i).sum()) for i, c in enumerate(CLASSES)},
        "extra_cerebral_groups": [list(g) for g in EXTRA_GROUPS], "render_t1": list(RENDER),
        "grid": {"shape": list(shape), "affine": grid.tolist()}, "label_maps": [p.name for p in files],
        "held_out": list(holdout), "source": "BBillot/SynthSeg data/training_label_maps (Apache-2.0)",
        "registration": "registration.linear.register_linear, 12 dof, MI, template brain mask dilated 10 mm",
        "seed": seed, "matrices_template_to_map": matrices, "seconds": round(time.time() - start, 1),
        "numpy": np.__version__, "torch": torch.__version__, "python": platform.python_version(),
        "command": "python -m bids_boldsr.segmentation.head_atlas " + " ".join(sys.argv[1:]),
    }
    path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(record, indent=1) + "\n")
    return record


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bids_boldsr.segmentation.head_atlas", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labelmaps", required=True, help="folder of training_seg_*.nii.gz")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    record = build(args.labelmaps, args.out, seed=args.seed)
    print(json.dumps({k: record[k] for k in ("atlas", "data_sha256", "seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
