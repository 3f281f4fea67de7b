"""Out of GPU memory during SR inference (issue 15): smaller tiles, then the CPU, with warnings.
No GPU here: the out-of-memory error is raised by a stand-in forward pass; the fallback logic
(``sr/tvsr/oom.py``) is what is tested."""
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bids_boldsr.sr.tvsr.oom import MIN_VOXELS, forward_with_fallback


class _Net:
    def __init__(self):
        self.moved_to = []

    def to(self, device):
        self.moved_to.append(str(device))
        return self


def _model(device="cuda"):
    return SimpleNamespace(device=torch.device(device), max_voxels=4_000_000, net=_Net())


def _forward(fits_gpu):
    """A forward pass that runs out of GPU memory above ``fits_gpu`` voxels per block."""
    seen = []

    def forward(model, inp):
        seen.append((model.device.type, model.max_voxels))
        if model.device.type == "cuda" and model.max_voxels > fits_gpu:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return inp * 2
    return forward, seen


def test_smaller_tiles_then_success(caplog):
    model, (forward, seen) = _model(), _forward(fits_gpu=300_000)
    with caplog.at_level(logging.WARNING, logger="bids_boldsr"):
        out = forward_with_fallback(model, np.ones(3), forward)
    assert np.array_equal(out, np.full(3, 2.0))
    assert seen == [("cuda", 4_000_000), ("cuda", 1_000_000), ("cuda", 250_000)]
    assert model.device.type == "cuda" and model.net.moved_to == []
    assert [r.getMessage() for r in caplog.records] == [
        "super-resolution ran out of GPU memory: retrying with blocks of at most 1000000 voxels",
        "super-resolution ran out of GPU memory: retrying with blocks of at most 250000 voxels"]


def test_cpu_when_even_small_tiles_do_not_fit(caplog):
    model, (forward, seen) = _model(), _forward(fits_gpu=0)
    with caplog.at_level(logging.WARNING, logger="bids_boldsr"):
        out = forward_with_fallback(model, np.ones(2), forward)
    assert np.array_equal(out, np.full(2, 2.0)) and seen[-1] == ("cpu", MIN_VOXELS)
    assert model.device.type == "cpu" and model.net.moved_to == ["cpu"]
    assert caplog.records[-1].getMessage().endswith("continuing on the CPU (slower)")


def test_other_errors_and_cpu_oom_propagate():
    def boom(model, inp):
        raise RuntimeError("shape mismatch")
    with pytest.raises(RuntimeError, match="shape mismatch"):
        forward_with_fallback(_model(), None, boom)

    def cpu_oom(model, inp):
        raise RuntimeError("DefaultCPUAllocator: out of memory")
    with pytest.raises(RuntimeError, match="out of memory"):
        forward_with_fallback(_model("cpu"), None, cpu_oom)
