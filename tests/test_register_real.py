"""``bids-boldsr-bench register-real``: scores, and one real T1w -> the embedded template."""
import json

import numpy as np
import pytest

from bids_boldsr.bench import register_real as rr
from conftest import shared


def test_dice_and_soft_dice():
    a = np.zeros((4, 4, 4), bool)
    b = a.copy()
    a[:2], b[:1] = True, True  # 32 vs 16 voxels, 16 shared
    assert rr.dice(a, b) == pytest.approx(2 * 16 / 48)
    assert rr.soft_dice(a.astype(float), b.astype(float)) == pytest.approx(2 * 16 / 48)
    half = np.full(a.shape, 0.5)
    assert rr.soft_dice(half, half) == pytest.approx(0.5)  # a soft map is not perfect against itself


def test_tissue_classes_from_labels_and_intensities():
    labels = np.array([0, 3, 42, 2, 41, 16, 4, 28])
    assert rr.tissue_from_labels(labels).tolist() == [0, 1, 1, 2, 2, 2, 0, 0]
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, (30, 30, 30))  # 0 CSF, 1 GM, 2 WM
    t1w = np.choose(truth, [0.2, 0.55, 0.9]) + rng.normal(0, 0.04, truth.shape)
    mask = np.zeros(truth.shape, bool)
    mask[5:25, 5:25, 5:25] = True
    t1w[5] = 3.0  # bright "scalp" at the mask's edge
    found = rr.tissue_from_intensities(t1w.astype(np.float32), mask, (1.0, 1.0, 1.0), erode_mm=2)
    core = np.zeros_like(mask)
    core[7:23, 7:23, 7:23] = True  # the mask eroded by 2 voxels (a ball: the cube's edges go too)
    assert not found[~mask].any() and not found[5:7].any()
    assert (found[core] == truth[core]).mean() > 0.99


def test_inverse_consistency_in_mm():
    import nibabel as nib

    mask = np.zeros((10, 10, 10), np.uint8)
    mask[2:8, 2:8, 2:8] = 1
    img = nib.Nifti1Image(mask, np.diag([2.0, 2.0, 2.0, 1.0]))
    shift = np.eye(4)
    shift[0, 3] = 1.5
    assert rr.inverse_consistency([shift], [np.linalg.inv(shift)], img)["ice_max_mm"] < 1e-9
    ice = rr.inverse_consistency([shift], [np.eye(4)], img)
    assert ice["ice_mean_mm"] == pytest.approx(1.5) and ice["ice_p95_mm"] == pytest.approx(1.5)


def test_usage_errors_exit_64(capsys):
    assert rr.main([]) == 64
    assert "--labelled" in capsys.readouterr().err
    assert rr.main(["--t1w", "x.nii.gz", "--methods", "elastix"]) == 64
    assert "unknown methods: elastix" in capsys.readouterr().err


def test_real_t1w_to_template_then_resume(tmp_path):
    t1w, dseg = shared("labelled", "vxm-subj_T1w.nii.gz"), shared("labelled", "vxm-subj_dseg.nii.gz")
    out, again = tmp_path / "real.json", tmp_path / "again.json"
    args = ["--labelled", str(t1w), str(dseg), "--template-res", "2", "--methods",
            "bids-boldsr,bids-boldsr-affine", "--sloppy"]
    assert rr.main(args + ["--json", str(out)]) == 0
    report = json.loads(out.read_text())
    ours, affine = (report["per_subject"][m][0] for m in ("bids-boldsr", "bids-boldsr-affine"))
    assert ours["subject"] == "vxm-subj_T1w.nii.gz" and ours["kind"] == "labelled"
    # the deformable stage improves tissue overlap and local similarity over its own affine
    assert ours["dice_tissue"] > affine["dice_tissue"] + 0.02 > 0.6
    assert ours["lncc"] > affine["lncc"]
    assert 0.5 < ours["soft_dice_tissue"] < 1 and ours["dice_cerebellum_native"] > 0.6
    assert affine["ice_max_mm"] < 1e-6 and 0 < ours["ice_p95_mm"] < 2.0
    assert ours["neg_jacobian_fraction"] < 1e-3 and ours["cpu_seconds"] > affine["cpu_seconds"] > 0
    assert report["methods"]["bids-boldsr"]["dice_tissue"] == ours["dice_tissue"]
    assert rr.main(args + ["--json", str(again), "--resume", str(out)]) == 0
    second = json.loads(again.read_text())["per_subject"]["bids-boldsr"][0]
    assert second["reused_from"] == str(out) and second["dice_tissue"] == ours["dice_tissue"]
