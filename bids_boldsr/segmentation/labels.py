"""Cerebellar label table of the learned route (the rows of ``*_dseg.tsv``).

Indices are what the network predicts; ``aseg`` names the FreeSurfer aseg label each one is
trained from, so a FreeSurfer segmentation converts with :func:`from_aseg`.
Colours follow FreeSurferColorLUT.txt.
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Label:
    index: int
    name: str
    abbreviation: str
    color: str  # "#rrggbb", as BIDS dseg.tsv wants
    aseg: int   # FreeSurfer aseg value this class comes from (0: none)


LABELS = (
    Label(1, "Left-Cerebellum-Cortex", "L-CbCx", "#e69422", 8),
    Label(2, "Left-Cerebellum-White-Matter", "L-CbWM", "#dcf8a4", 7),
    Label(3, "Right-Cerebellum-Cortex", "R-CbCx", "#e69422", 47),
    Label(4, "Right-Cerebellum-White-Matter", "R-CbWM", "#dcf8a4", 46),
)
N_CLASSES = len(LABELS) + 1  # + background (index 0, not a row of dseg.tsv)
LEFT = (1, 2)
RIGHT = (3, 4)
CORTEX = (1, 3)
WHITE_MATTER = (2, 4)
# aseg values of the whole cerebellum (left WM/cortex, right WM/cortex)
ASEG_CEREBELLUM = tuple(lab.aseg for lab in LABELS)


def from_aseg(aseg: np.ndarray) -> np.ndarray:
    """Map a FreeSurfer aseg array onto this table's indices (everything else -> 0)."""
    out = np.zeros(aseg.shape, np.uint8)
    for lab in LABELS:
        out[aseg == lab.aseg] = lab.index
    return out


def dseg_tsv() -> str:
    """The BIDS ``dseg.tsv`` lookup table (tab-separated, header included)."""
    rows = ["index\tname\tabbreviation\tcolor"]
    rows += [f"{lab.index}\t{lab.name}\t{lab.abbreviation}\t{lab.color}" for lab in LABELS]
    return "\n".join(rows) + "\n"
