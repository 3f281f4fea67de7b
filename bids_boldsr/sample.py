"""``bids-boldsr-sample OUT``: write a tiny real BIDS dataset for trying bids-boldsr offline.

The BOLD run is the real EPI that nibabel ships in its test data (``example4d.nii.gz``:
128x96x24 voxels of 2x2x2.2 mm, 2 volumes, TR 2 s); no T1w, so it exercises the BOLD-only path.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def write_sample(out: Path) -> Path:
    import nibabel as nib

    # nibabel ships its test data inside the package; nibabel.testing would import pytest.
    src = nib.load(Path(nib.__file__).parent / "tests" / "data" / "example4d.nii.gz")
    out = Path(out)
    func = out / "sub-01" / "func"
    func.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(src.get_fdata(dtype="float32").astype("int16"), src.affine)
    img.header.set_zooms(src.header.get_zooms()[:3] + (2.0,))
    img.header.set_xyzt_units("mm", "sec")  # the source header says 2000 "sec"; TR is 2 s
    nib.save(img, func / "sub-01_task-rest_bold.nii.gz")
    (func / "sub-01_task-rest_bold.json").write_text(json.dumps(
        {"RepetitionTime": 2.0, "TaskName": "rest"}, indent=2))
    (out / "dataset_description.json").write_text(json.dumps(
        {"Name": "bids-boldsr sample (nibabel example4d EPI)", "BIDSVersion": "1.9.0",
         "DatasetType": "raw", "License": "MIT (nibabel test data)"}, indent=2))
    (out / "participants.tsv").write_text("participant_id\nsub-01\n")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bids-boldsr-sample", description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="folder to create the BIDS dataset in")
    opts = p.parse_args(argv)
    print(write_sample(opts.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
