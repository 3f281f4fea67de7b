"""The cerebellum label table: indices, aseg mapping and the dseg.tsv it writes."""
import numpy as np
import torch

from bids_boldsr.segmentation.labels import (ASEG_CEREBELLUM, CORTEX, LABELS, LEFT, N_CLASSES, RIGHT,
                                             WHITE_MATTER, dseg_tsv, from_aseg)
from bids_boldsr.segmentation.synth import COMPACT_TO_TARGET, N_COMPACT, TISSUE, T_GM, T_WM, ASEG_TO_COMPACT


def test_table_indices_and_groups():
    assert [lab.index for lab in LABELS] == [1, 2, 3, 4] and N_CLASSES == 5
    assert ASEG_CEREBELLUM == (8, 7, 47, 46)
    assert sorted(LEFT + RIGHT) == sorted(CORTEX + WHITE_MATTER) == [1, 2, 3, 4]
    assert all(lab.name.startswith("Left") for lab in LABELS if lab.index in LEFT)
    assert all(lab.name.endswith("Cortex") for lab in LABELS if lab.index in CORTEX)
    assert len({lab.abbreviation for lab in LABELS}) == 4
    assert all(len(lab.color) == 7 and lab.color[0] == "#" for lab in LABELS)


def test_dseg_tsv_rows_match_table():
    rows = [line.split("\t") for line in dseg_tsv().splitlines()]
    assert rows[0] == ["index", "name", "abbreviation", "color"]
    assert rows[1:] == [[str(l.index), l.name, l.abbreviation, l.color] for l in LABELS]


def test_from_aseg_and_synthesis_targets_agree():
    aseg = np.array([0, 2, 7, 8, 46, 47, 16, 530])
    assert from_aseg(aseg).tolist() == [0, 0, 2, 1, 4, 3, 0, 0]
    # the synthesiser's aseg -> target path gives the same classes
    compact = torch.from_numpy(ASEG_TO_COMPACT[aseg]).long()
    assert COMPACT_TO_TARGET[compact].tolist() == [0, 0, 2, 1, 4, 3, 0, 0]
    assert TISSUE[ASEG_TO_COMPACT[8]] == T_GM and TISSUE[ASEG_TO_COMPACT[46]] == T_WM
    assert ASEG_TO_COMPACT[999] == N_COMPACT - 1  # unseen labels get their own intensity
