"""Software versions and the random seed of a run, for the sidecars and the log folder."""
from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

PACKAGES = ("bids-boldsr", "torch", "numpy", "scipy", "nibabel", "nipype", "pybids", "nitransforms",
            "templateflow")


def software_versions() -> dict:
    """``{package: version}`` of the packages that shape the outputs (and Python's)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_provenance(log_dir, seed: int) -> Path:
    """``<log_dir>/provenance.json``: the seed and the versions (atomic)."""
    from .atomic import atomic_write_text

    info = {"RandomSeed": int(seed), "SoftwareVersions": software_versions()}
    return atomic_write_text(Path(log_dir) / "provenance.json", json.dumps(info, indent=2) + "\n")
