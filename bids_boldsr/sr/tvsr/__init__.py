"""TV-regularised self-supervised super-resolution of BOLD (``tvsr``) and the published variant."""
from .acquisition import AcquisitionModel, acquisition_from_image
from .infer import load_tvsr, super_resolve_volume, tvsr_metadata
from .model import ResidualCNN, total_variation
from .train import train_tvsr

__all__ = ["AcquisitionModel", "acquisition_from_image", "train_tvsr", "load_tvsr",
           "super_resolve_volume", "tvsr_metadata", "ResidualCNN", "total_variation"]
