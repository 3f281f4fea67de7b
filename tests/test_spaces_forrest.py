"""The T1w output space on ds-forrest (0.7 mm T1w, oblique 3 mm EPI slab): the super-resolved BOLD
resampled into the T1w field of view sits on the T1w, i.e. its brain mask overlaps the T1w brain mask
(``dice_brain_mask_T1w`` in QC). The run is cut to its first 8 volumes: placement does not depend on
the run length."""
import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_boldsr.cli.run import main
from conftest import shared

RUN = "sub-02_task-oneback_run-1"


@pytest.fixture(scope="module")
def forrest_t1w_space(tmp_path_factory):
    src = shared("ds-forrest")
    root = tmp_path_factory.mktemp("forrest")
    ds = root / "ds"
    for rel in ("dataset_description.json", "sub-02/anat/sub-02_T1w.nii.gz", "sub-02/anat/sub-02_T1w.json",
                f"sub-02/func/{RUN}_bold.json"):
        (ds / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / rel, ds / rel)
    img = nib.load(src / f"sub-02/func/{RUN}_bold.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj[..., :8]), img.affine, img.header),
             ds / f"sub-02/func/{RUN}_bold.nii.gz")
    out = root / "out"
    assert main([str(ds), str(out), "participant", "-w", str(root / "work"), "--sloppy", "--nprocs", "2",
                 "--sr-method", "spline", "--cerebellum", "atlas", "--output-spaces", "T1w", "bold"]) == 0
    return ds, out


def test_t1w_space_sits_on_the_t1w(forrest_t1w_space):
    ds, out = forrest_t1w_space
    qc = pd.read_csv(out / "sub-02/sub-02_qc.tsv", sep="\t").iloc[0]
    assert qc["dice_brain_mask_T1w"] > 0.85, qc["dice_brain_mask_T1w"]
    bold = out / f"sub-02/func/{RUN}_space-T1w_desc-sr_bold.nii.gz"
    img = nib.load(bold)
    assert img.shape[3] == 8 and np.allclose(img.header.get_zooms()[:3], (1.5, 1.5, 1.65))
    t1w = nib.load(ds / "sub-02/anat/sub-02_T1w.nii.gz")
    # the T1w field of view: the grid's world box is the T1w's
    box = lambda im: np.array([im.affine @ np.r_[c, 1] for c in  # noqa: E731
                               ([-0.5] * 3, list(np.array(im.shape[:3]) - 0.5))])[:, :3]
    assert np.abs(box(img) - box(t1w)).max() < 1.6
    meta = json.loads(bold.with_name(bold.name.replace(".nii.gz", ".json")).read_text())
    assert meta["SpatialReference"].startswith("the participant's T1w")
    assert not list((out / "sub-02/func").glob("*space-MNI*"))  # no template requested: none written
