"""Writing the reports after a participant run, and ``--reports-only`` (rebuild every report from
the outputs on disk, nothing recomputed)."""
from __future__ import annotations

import logging
from pathlib import Path

from ..errors import EX_OK, InputMissing

LOG = logging.getLogger("bids_boldsr")


def write_participant_reports(config, labels) -> list[Path]:
    """``sub-<label>.html`` for each label; a report that fails is logged, never raised (the
    outputs are what the run is for)."""
    from .participant import build_participant_report

    pages = []
    for label in labels:
        try:
            pages.append(build_participant_report(config.output_dir, label, config.bids_dir, config.work_dir))
        except Exception as exc:  # noqa: BLE001
            LOG.error("sub-%s: the report could not be written (%s: %s); rerun with --reports-only",
                      label, type(exc).__name__, exc)
    return pages


def participants_on_disk(output_dir, selection=()) -> list[str]:
    """Participants with outputs (a QC table or a log folder) in ``output_dir``."""
    labels = sorted(p.name.removeprefix("sub-") for p in Path(output_dir).glob("sub-*/")
                    if any(p.glob("sub-*_qc.tsv")) or (p / "log").is_dir())
    return [lab for lab in labels if not selection or lab in selection]


def reports_only(config) -> int:
    """Participant level: rebuild the selected participants' pages; group level: theirs and the
    group page."""
    labels = participants_on_disk(config.output_dir, config.participant_label)
    if not labels:
        raise InputMissing(f"--reports-only: no participant outputs in {config.output_dir}")
    pages = write_participant_reports(config, labels)
    LOG.info("--reports-only: %d participant report(s) rebuilt", len(pages))
    if config.analysis_level == "group":
        from .group import run_group

        return run_group(config)
    return EX_OK if len(pages) == len(labels) else 1
