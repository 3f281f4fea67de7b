"""bids-boldsr: super-resolution, template registration and cerebellar segmentation of BOLD fMRI."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bids-boldsr")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.8.0"
