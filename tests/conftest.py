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
