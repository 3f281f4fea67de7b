import json

from bids_boldsr.bids import derivative_path, entities_of, write_dataset_description


def test_entities_keep_run_padding():
    ents = entities_of("/x/sub-01/ses-a/func/sub-01_ses-a_task-rest_acq-mb_run-01_bold.nii.gz")
    assert ents == {"sub": "01", "ses": "a", "task": "rest", "acq": "mb", "run": "01"}


def test_derivative_paths_follow_entity_order(tmp_path):
    ents = {"sub": "01", "ses": "a", "task": "rest", "run": "01"}
    p = derivative_path(tmp_path, ents, "func", "bold", ".nii.gz", space="MNI152NLin2009aSym",
                        res=2, desc="sr")
    assert p == tmp_path / "sub-01/ses-a/func/sub-01_ses-a_task-rest_run-01_space-MNI152NLin2009aSym_res-2_desc-sr_bold.nii.gz"
    x = derivative_path(tmp_path, {"sub": "01", "task": "rest"}, "func", "xfm", ".txt",
                        **{"from": "boldref", "to": "T1w", "mode": "image"})
    assert x.name == "sub-01_task-rest_from-boldref_to-T1w_mode-image_xfm.txt"


def test_dataset_description(tmp_path):
    src = tmp_path / "ds"
    src.mkdir()
    (src / "dataset_description.json").write_text('{"Name": "raw", "BIDSVersion": "1.9.0"}')
    write_dataset_description(tmp_path / "out", src)
    desc = json.loads((tmp_path / "out" / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Name"] == "bids-boldsr" and desc["GeneratedBy"][0]["Version"]
    assert desc["SourceDatasets"][0]["Name"] == "raw"
    assert "*.html" in (tmp_path / "out" / ".bidsignore").read_text()
