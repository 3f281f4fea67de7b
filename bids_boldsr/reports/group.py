"""Group level: one table and page built only from the participants' QC files."""
from __future__ import annotations

import logging

from ..errors import EX_OK, InputMissing

LOG = logging.getLogger("bids_boldsr")


def run_group(config) -> int:
    import pandas as pd

    from ..atomic import atomic_write_text
    from .group_page import group_report

    out = config.output_dir
    files = sorted(out.glob("sub-*/sub-*_qc.tsv"))
    if config.participant_label:
        files = [f for f in files if f.parent.name.removeprefix("sub-") in config.participant_label]
    if not files:
        raise InputMissing(f"no participant QC files (sub-*/sub-*_qc.tsv) in {out}: "
                           "run the participant level first")
    table = pd.concat([pd.read_csv(f, sep="\t", na_values="n/a", dtype={"subject": str})
                       for f in files], ignore_index=True)
    atomic_write_text(out / "group_bold.tsv", table.to_csv(sep="\t", index=False, na_rep="n/a"))
    page = group_report(out, table)
    print(f"bids-boldsr: group table {out / 'group_bold.tsv'} ({len(table)} runs) and page {page}")
    return EX_OK
