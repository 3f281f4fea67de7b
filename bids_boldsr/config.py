"""One immutable settings object per run, saved beside the outputs (no mutable global)."""
from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from . import __version__
from .spaces import SpatialReferences


def default_omp_nthreads(nprocs: int) -> int:
    """fMRIPrep's rule: one core left for the light steps, at most 8 threads per step; one thread on
    2 cores, where two 1-thread steps side by side beat one 2-thread step beside another
    (``bids-boldsr-bench threads``)."""
    return 1 if nprocs <= 2 else min(nprocs - 1, 8)


@dataclass(frozen=True)
class Config:
    bids_dir: Path
    output_dir: Path
    analysis_level: str
    work_dir: Path
    participant_label: tuple[str, ...] = ()
    task: tuple[str, ...] = ()
    bids_filters: dict = field(default_factory=dict)
    nprocs: int = 1
    omp_nthreads: int = 1  # threads of each heavy step (its node's n_procs): default_omp_nthreads
    mem_gb: float = 8.0
    n_gpu_procs: int = 1
    device: str = "auto"
    sr_method: str = "tvsr-prior"
    sr_precision: str = "auto"
    sr_factor: float | None = 2.0
    sr_voxel_size: float | None = None
    output_spaces: SpatialReferences = field(default_factory=SpatialReferences.parse)
    registration: str = "svf"
    svf_finest_mm: float | None = None  # None: registration.svf.finest_spacing
    cerebellum: str = "cnn"
    cerebellar_atlas: str = "AAL"
    random_seed: int = 0
    skip_bids_validation: bool = False
    sloppy: bool = False
    run_uuid: str = ""
    version: str = __version__

    @classmethod
    def create(cls, **kwargs) -> "Config":
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        kwargs.setdefault("run_uuid", f"{stamp}_{uuid.uuid4().hex[:8]}")
        for key in ("bids_dir", "output_dir", "work_dir"):
            kwargs[key] = Path(kwargs[key]).absolute()
        spaces = kwargs.get("output_spaces")
        if spaces is not None and not isinstance(spaces, SpatialReferences):
            kwargs["output_spaces"] = SpatialReferences.parse(spaces)
        return cls(**kwargs)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["output_spaces"] = self.output_spaces.strings()
        for key, val in out.items():
            if isinstance(val, Path):
                out[key] = str(val)
            elif isinstance(val, tuple):
                out[key] = list(val)
        return out

    def to_json(self, path) -> Path:
        from .atomic import atomic_write_text

        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_json(cls, path) -> "Config":
        data = json.loads(Path(path).read_text())
        kinds = {f.name: f.type for f in fields(cls)}
        for key, val in list(data.items()):
            if key not in kinds:
                data.pop(key)
            elif key == "output_spaces":
                data[key] = SpatialReferences.parse(val)
            elif isinstance(val, list):
                data[key] = tuple(val)
            elif key in ("bids_dir", "output_dir", "work_dir"):
                data[key] = Path(val)
        return cls(**data)

    @property
    def sr_grid(self) -> dict:
        """The super-resolved grid as every SR node takes it: a factor, or an isotropic voxel size
        (``--sr-voxel-size`` wins; the parser sets the factor to 2 when neither is given)."""
        if self.sr_voxel_size is not None:
            return {"factor": None, "voxel_size": self.sr_voxel_size}
        return {"factor": self.sr_factor, "voxel_size": None}
