"""Pieces shared by tvsr training and inference: the network input, data consistency, mixed
precision and the weights' hash (in their own module so that neither imports the other)."""
from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .acquisition import AcquisitionModel, separable as acq_separable
from .resample import upsample


def weights_sha256(state_dict) -> str:
    digest = hashlib.sha256()
    for name, tensor in state_dict.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def autocast(device, precision: str = "bfloat16"):
    """bf16 mixed precision on CUDA (unless ``precision`` is "float32"); a no-op context on CPU,
    where inference takes bf16 through ``fast_forward`` instead."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and precision == "bfloat16")


PRECISIONS = ("auto", "float32", "bfloat16")


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether the CPU has bfloat16 dot-product instructions (AVX512-BF16 or AMX-BF16). Only there
    are oneDNN's bf16 convolutions faster than float32 (about 2x for the SR network on 2 cores,
    docs/benchmarks-sr.md); elsewhere they are emulated and several times slower."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: stay in float32
        return False
    return torch.backends.mkldnn.is_available() and re.search(r"\b(avx512_bf16|amx_bf16)\b", cpuinfo) is not None


def resolve_precision(precision: str, device: torch.device) -> str:
    """The network's arithmetic for inference: ``auto`` is bfloat16 on CUDA and on CPUs with native
    bf16 (``cpu_has_native_bf16``), float32 elsewhere."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: choose from {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    return "bfloat16" if device.type == "cuda" or cpu_has_native_bf16() else "float32"


def network_input(x: np.ndarray, fine_shape, acq: AcquisitionModel, hyper: dict) -> np.ndarray:
    """What the tvsr network sees: the spline upsampling of ``x``, optionally made consistent
    with ``x`` under ``B`` first (``input_dc`` back-projection steps)."""
    return data_consistency(upsample(x, fine_shape, order=3), x, acq, hyper.get("input_dc", 0))


def data_consistency(y: np.ndarray, x: np.ndarray, acq: AcquisitionModel, iters: int) -> np.ndarray:
    """``iters`` Landweber steps ``y <- y + B^T (x - B y)`` pulling ``B y`` towards the acquired
    ``x``, computed in closed form (the cost of one step; equal to ``landweber_steps``).

    Landweber only ever adds vectors in the row space of ``B``, and there it acts on each singular
    value ``s`` of ``B`` alone: after ``K`` steps the residual's component along singular pair
    ``(u, v, s)`` has been added as ``v (1 - (1 - s^2)^K) / s (u . r)``. ``B`` is a Kronecker
    product of one matrix per axis, so its SVD is the Kronecker product of three small SVDs.
    """
    y = np.asarray(y, np.float32)
    if iters <= 0:
        return y
    x = np.asarray(x, np.float32)
    us, vs, gain = _landweber_svd(acq, y.shape, x.shape, int(iters))
    coeff = acq_separable(x - acq.apply(y, x.shape), us)
    return y + acq_separable(coeff * gain, vs)


def landweber_steps(y: np.ndarray, x: np.ndarray, acq: AcquisitionModel, iters: int) -> np.ndarray:
    """The same ``iters`` Landweber steps, one by one (the reference for ``data_consistency``).

    ``B``'s rows sum to 1 and its columns to about 1/factor^3, so a unit step is stable.
    """
    y_t, x_t = torch.from_numpy(np.asarray(y, np.float32)), torch.from_numpy(np.asarray(x, np.float32))
    for _ in range(iters):
        y_t = y_t + acq.adjoint(x_t - acq.apply(y_t, x_t.shape), y_t.shape)
    return y_t.numpy()


@lru_cache(maxsize=16)
def _landweber_svd(acq: AcquisitionModel, fine_shape, coarse_shape, iters):
    """Per-axis ``U^T`` and ``V`` (float32) and the ``K``-step gain on the coarse grid's singular values."""
    us, vs, sv = [], [], []
    for mat in acq.matrices(fine_shape, coarse_shape):
        u, s, vt = np.linalg.svd(mat.astype(np.float64), full_matrices=False)
        us.append(u.T.astype(np.float32))
        vs.append(vt.T.astype(np.float32))
        sv.append(s)
    s = sv[0][:, None, None] * sv[1][None, :, None] * sv[2][None, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where(s > 1e-12, (1.0 - (1.0 - s * s) ** iters) / s, iters * s)
    return us, vs, gain.astype(np.float32)
