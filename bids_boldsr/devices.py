"""The one place where ``--device`` (auto, cpu, cuda) becomes a torch device name."""
from __future__ import annotations

from .errors import BoldSRError

EX_NO_DEVICE = 75


def resolve_device(requested: str = "auto") -> str:
    """``cuda`` or ``cpu``; ``auto`` picks CUDA when a GPU is visible. ``cuda`` without one is a
    one-line error with exit 75 (in containers: ``--gpus all`` / ``apptainer --nv``)."""
    import torch

    if requested not in ("auto", "cpu", "cuda") and not requested.startswith("cuda:"):
        raise BoldSRError(f"unknown device {requested!r}: choose auto, cpu or cuda", 64)
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise BoldSRError("--device cuda was requested but no CUDA device is visible "
                          "(in containers use --gpus all / apptainer --nv)", EX_NO_DEVICE)
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested
