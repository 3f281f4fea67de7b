"""The brain-mask network's recipe (not shipped, not used by the workflow): its target, a seeded
training run that reproduces its hash, inference on any grid, the bench, and the affine's
``moving_brain`` path."""
import json

import nibabel as nib
import numpy as np
import pytest

from conftest import shared
from bids_boldsr.bench import brain as bench_brain
from bids_boldsr.segmentation import synth
from bids_boldsr.segmentation.brain import brain_mask
from bids_boldsr.segmentation.train_brain import main


def test_brain_target_is_brain_without_the_csf_around_it():
    target = synth.HEAD_TARGETS["brain"]
    compact = synth.ASEG_TO_COMPACT
    assert all(target[compact[v]] == 1 for v in (2, 3, 4, 7, 8, 10, 14, 16, 17, 41, 42, 43, 46, 47))
    assert all(target[compact[v]] == 0 for v in (0, 24, 507, 511, 515, 999))  # bg, CSF, extra-cerebral, unseen


@pytest.fixture(scope="module")
def two_step_weights(tmp_path_factory):
    maps = tmp_path_factory.mktemp("maps")
    for n in ("01", "13"):  # 13 is held out
        (maps / f"training_seg_{n}.nii.gz").symlink_to(shared("labelmaps", f"training_seg_{n}.nii.gz"))
    records = []
    for run in ("a", "b"):
        out = maps.parent / f"{maps.name}-{run}"
        assert main(["--labelmaps", str(maps), "--out", str(out), "--steps", "2", "--seed", "3",
                     "--workers", "0"]) == 0
        records.append(json.loads((out / "brain_unet.json").read_text()))
    return records, maps.parent / f"{maps.name}-a" / "brain_unet.pt", maps


def test_seeded_run_reproduces_weights_hash(two_step_weights):
    records, weights, _ = two_step_weights
    assert records[0]["weights_sha256"] == records[1]["weights_sha256"]
    assert records[0]["training_data"] == ["training_seg_01.nii.gz"] and records[0]["steps"] == 2
    assert weights.stat().st_size < 3e6


def test_mask_on_the_input_grid_any_orientation(two_step_weights):
    _, weights, _ = two_step_weights
    t1w = nib.load(shared("labelled", "vxm-subj_T1w.nii.gz"))  # LIA, 1 mm
    mask = brain_mask(t1w, weights)
    assert mask.shape == t1w.shape and mask.get_data_dtype() == np.uint8
    assert np.allclose(mask.affine, t1w.affine)
    data = np.asanyarray(mask.dataobj)
    assert set(np.unique(data)) <= {0, 1}


def test_bench_brain_reports_dice_and_exits_64_without_weights(two_step_weights, tmp_path, capsys):
    _, weights, maps = two_step_weights
    with pytest.raises(SystemExit) as exc:
        bench_brain.main(["--labelmaps", str(maps)])
    assert exc.value.code == 2 and "--weights" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_brain.main(["--weights", str(tmp_path / "none.pt"), "--labelmaps", str(maps)])
    assert "no such file" in capsys.readouterr().err
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(SystemExit):
        bench_brain.main(["--weights", str(junk), "--labelmaps", str(maps)])
    assert "not a brain_unet checkpoint" in capsys.readouterr().err
    out = tmp_path / "brain.json"
    assert bench_brain.main(["--weights", str(weights), "--labelmaps", str(maps), "--maps", "13",
                             "--synth", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert 0 <= report["synthetic"]["rows"][0]["dice"] <= 1 and report["synthetic"]["rows"][0]["map"] == "13"


def test_affine_with_a_moving_brain_mask_recovers_a_known_shift():
    """``register_to_template(moving_brain=...)``: the T1w skull-stripped by its mask, one stage."""
    from bids_boldsr.registration.linear import register_to_template
    from bids_boldsr.templates import embedded_image

    template, mask = embedded_image(2, suffix="T1w"), embedded_image(2, desc="brain", suffix="mask")
    shift = np.eye(4)
    shift[:3, 3] = [6.0, -4.0, 5.0]
    data = np.asanyarray(template.dataobj, dtype=np.float32)
    head = data + 0.8 * data.max() * (np.asanyarray(mask.dataobj) == 0) * (data > 0)  # bright "scalp"
    moved = nib.Nifti1Image(head, shift @ template.affine)
    brain = nib.Nifti1Image(np.asanyarray(mask.dataobj).astype(np.uint8), shift @ template.affine)
    matrix = register_to_template(moved, template, mask, sloppy=True, moving_brain=brain)
    centre = np.array([0.0, -18.0, 10.0, 1.0])
    assert np.linalg.norm((matrix @ centre)[:3] - (shift @ centre)[:3]) < 1.5
