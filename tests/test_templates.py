import json

import nibabel as nib
import numpy as np
import pytest

from bids_boldsr import templates


def test_embedded_seed_is_a_templateflow_layout(template_cache):
    t1w = templates.get_template_file("MNI152NLin2009aSym", template_cache, resolution=1, suffix="T1w")
    mask = templates.get_template_file("MNI152NLin2009aSym", template_cache, resolution=1,
                                       desc="brain", suffix="mask")
    assert t1w.name == "tpl-MNI152NLin2009aSym_res-1_T1w.nii.gz"
    t1, m = nib.load(t1w), nib.load(mask)
    assert t1.shape == m.shape == (197, 233, 189)
    assert np.allclose(t1.header.get_zooms(), 1.0)
    brain_ml = np.asarray(m.dataobj).sum() / 1000.0
    assert 1200 < brain_ml < 2000  # an adult brain, in ml
    res2 = nib.load(templates.get_template_file("MNI152NLin2009aSym", template_cache,
                                                resolution=2, suffix="T1w"))
    assert np.allclose(res2.header.get_zooms(), 2.0)
    assert templates.template_resolutions("MNI152NLin2009aSym", template_cache)[2] == 2.0


def test_embedded_cerebellar_atlas(template_cache):
    atlas = nib.load(templates.get_template_file("MNI152NLin2009aSym", template_cache, resolution=1,
                                                 atlas="AAL", desc="cerebellum", suffix="dseg"))
    labels = np.asarray(atlas.dataobj)
    assert set(np.unique(labels)) == set(range(27))
    # cerebellum sits posterior and inferior in MNI space
    com = nib.affines.apply_affine(atlas.affine, np.argwhere(labels > 0).mean(axis=0))
    assert com[1] < -40 and com[2] < -20
    tsv = templates.aal_cerebellum_tsv().splitlines()
    assert tsv[0] == "index\tname\tabbreviation\tcolor" and len(tsv) == 27
    assert tsv[1].split("\t")[1] == "Cerebelum_Crus1_L"


def test_other_template_from_templateflow_home(tmp_path, template_cache, monkeypatch):
    """A template that is not embedded resolves from a pre-populated TEMPLATEFLOW_HOME."""
    home = tmp_path / "tf"
    tpl = home / "tpl-MyTpl"
    tpl.mkdir(parents=True)
    (home / "dataset_description.json").write_text('{"Name": "tf", "BIDSVersion": "1.9.0"}')
    (tpl / "template_description.json").write_text(json.dumps(
        {"Name": "t", "res": {"2": {"zooms": [2.0, 2.0, 2.0], "shape": [4, 4, 4], "origin": [0, 0, 0]}}}))
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.diag([2, 2, 2, 1.0]))
    nib.save(img, tpl / "tpl-MyTpl_res-2_T1w.nii.gz")
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(home))
    found = templates.get_template_file("MyTpl", template_cache, resolution=2, suffix="T1w")
    assert found == tpl / "tpl-MyTpl_res-2_T1w.nii.gz"
    with pytest.raises(templates.TemplateError, match="not available offline"):
        templates.get_template_file("MyTpl", template_cache, resolution=1, suffix="T1w")


def test_template_index_is_reused_and_sees_new_files(tmp_path):
    # the first query of a TemplateFlow root indexes it (seconds); later ones reuse the client,
    # and a file added to a template folder gets a fresh index
    import shutil

    from bids_boldsr import templates

    root = templates.seed_embedded(tmp_path)
    first = templates._client(root)
    assert templates._client(root) is first
    tpl = root / "tpl-MNI152NLin2009aSym"
    shutil.copy(tpl / "tpl-MNI152NLin2009aSym_res-2_desc-brain_mask.nii.gz",
                tpl / "tpl-MNI152NLin2009aSym_res-3_desc-brain_mask.nii.gz")
    assert templates._client(root) is not first
    hit = templates.get_template_file("MNI152NLin2009aSym", tmp_path, resolution=3, suffix="mask", desc="brain")
    assert hit.name == "tpl-MNI152NLin2009aSym_res-3_desc-brain_mask.nii.gz"
