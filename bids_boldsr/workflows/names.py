"""Names shared by the workflow builders (node names, run keys)."""
from __future__ import annotations

import re


def run_name(entities: dict) -> str:
    """``sub-01_task-rest_run-1`` from a run's entities (report and QC key)."""
    from ..bids import derivative_name

    return derivative_name(entities, "", "").rstrip("_")


def node_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", text)
