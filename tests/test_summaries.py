import nibabel as nib
import numpy as np
import pandas as pd

from bids_boldsr.segmentation.summaries import label_timeseries, label_volumes


def test_label_timeseries_and_volumes():
    labels = np.zeros((4, 4, 2), np.uint8)
    labels[:2] = 1
    labels[2:, :2] = 3
    series = np.zeros((4, 4, 2, 3), np.float32)
    for t in range(3):
        series[..., t] = labels * 10 + t
    aff = np.diag([2.0, 2.0, 3.0, 1.0])
    lut = pd.DataFrame({"index": [1, 2, 3], "name": ["a", "b", "c"]})
    ts = label_timeseries(nib.Nifti1Image(series, aff), nib.Nifti1Image(labels, aff), lut)
    assert list(ts.columns) == ["a", "c"]
    assert np.allclose(ts["a"], [10, 11, 12]) and np.allclose(ts["c"], [30, 31, 32])
    vols = label_volumes(nib.Nifti1Image(labels, aff), lut)
    assert list(vols["name"]) == ["a", "c"]
    assert list(vols["voxels"]) == [16, 8] and list(vols["volume_mm3"]) == [192.0, 96.0]
