"""Pieces shared by tvsr training and inference: the network input, data consistency, mixed
precision and the weights' hash (in their own module so that neither imports the other)."""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from .acquisition import AcquisitionModel
from .resample import upsample


def weights_sha256(state_dict) -> str:
    digest = hashlib.sha256()
    for name, tensor in state_dict.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def autocast(device):
    """bf16 mixed precision on CUDA; a no-op context on CPU (keeps CPU runs deterministic)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def network_input(x: np.ndarray, fine_shape, acq: AcquisitionModel, hyper: dict) -> np.ndarray:
    """What the tvsr network sees: the spline upsampling of ``x``, optionally made consistent
    with ``x`` under ``B`` first (``input_dc`` back-projection steps)."""
    return data_consistency(upsample(x, fine_shape, order=3), x, acq, hyper.get("input_dc", 0))


def data_consistency(y: np.ndarray, x: np.ndarray, acq: AcquisitionModel, iters: int) -> np.ndarray:
    """Landweber steps ``y <- y + B^T (x - B y)`` pulling ``B y`` towards the acquired ``x``.

    ``B``'s rows sum to 1 and its columns to about 1/factor^3, so a unit step is stable.
    """
    y_t, x_t = torch.from_numpy(np.asarray(y, np.float32)), torch.from_numpy(np.asarray(x, np.float32))
    for _ in range(iters):
        y_t = y_t + acq.adjoint(x_t - acq.apply(y_t, x_t.shape), y_t.shape)
    return y_t.numpy()
