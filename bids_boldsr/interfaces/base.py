"""Helpers shared by the thin nipype interfaces."""
from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
from nipype.interfaces.base import BaseInterfaceInputSpec, SimpleInterface, traits


class ThreadsInputSpec(BaseInterfaceInputSpec):
    num_threads = traits.Int(1, usedefault=True,
                             desc="CPU threads for this step's torch and BLAS work (0: every CPU); Nipype sets it "
                                  "from the node's n_procs")


class ThreadLimited(SimpleInterface):
    """A step that computes with exactly the CPU threads its node declares to MultiProc (``n_procs``,
    1 unless set), as fMRIPrep's ``omp_nthreads`` does. Left alone, torch gives every worker one
    thread per core: two such steps side by side on 2 cores ran an SVF iteration 3.5x slower than
    with one thread each (``bids-boldsr-bench threads``). The caller's limits come back afterwards
    (tests run interfaces in-process)."""

    def run(self, cwd=None, ignore_exception=None, **inputs):
        import torch
        from threadpoolctl import threadpool_limits

        n = int(inputs.get("num_threads", self.inputs.num_threads)) or os.cpu_count() or 1
        previous = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            with threadpool_limits(limits=n):
                return super().run(cwd=cwd, ignore_exception=ignore_exception, **inputs)
        finally:
            torch.set_num_threads(previous)


def save_img(img: nib.Nifti1Image, cwd, name: str) -> str:
    path = Path(cwd) / name
    nib.save(img, path)
    return str(path)


def save_json(data: dict, cwd, name: str) -> str:
    path = Path(cwd) / name
    path.write_text(json.dumps(data, indent=2, default=_plain) + "\n")
    return str(path)


def _plain(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
