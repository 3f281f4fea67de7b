"""Out of GPU memory during inference: smaller tiles first, then the CPU, each with a warning."""
from __future__ import annotations

import logging

import torch

LOG = logging.getLogger("bids_boldsr")
MIN_VOXELS = 32 ** 3  # the smallest block tried on the GPU before moving to the CPU


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def forward_with_fallback(model, inp, forward):
    """``forward(model, inp)``; on out-of-memory, retry with blocks a quarter the size (the tiled
    result is identical), and below ``MIN_VOXELS`` on the CPU. Changes ``model`` for the rest of
    the run (later volumes start from the size that worked)."""
    while True:
        try:
            return forward(model, inp)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
            if not is_oom(exc):
                raise
            if model.device.type == "cuda":
                torch.cuda.empty_cache()
            if model.device.type != "cpu" and model.max_voxels > MIN_VOXELS:
                model.max_voxels = max(MIN_VOXELS, model.max_voxels // 4)
                LOG.warning("super-resolution ran out of GPU memory: retrying with blocks of at "
                            "most %d voxels", model.max_voxels)
            elif model.device.type != "cpu":
                LOG.warning("super-resolution ran out of GPU memory even with %d-voxel blocks: "
                            "continuing on the CPU (slower)", model.max_voxels)
                model.device = torch.device("cpu")
                model.net.to(model.device)
            else:
                raise
