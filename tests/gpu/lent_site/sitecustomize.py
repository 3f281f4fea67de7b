"""For a GPU machine without pybids (docs/benchmarks.md, "On a GPU"): put this folder on PYTHONPATH and
the embedded template's files are read from a copy seeded on a full install (the folder
``$XDG_CACHE_HOME/bids-boldsr/templateflow``, copied to ``$BOLDSR_TEMPLATE_COPY``) instead of through
TemplateFlow's client, which needs pybids. Not used by the product or the tests."""
import os
from pathlib import Path

_TPL = Path(os.environ.get("BOLDSR_TEMPLATE_COPY", Path(__file__).resolve().parent / "tpl")) / "tpl-MNI152NLin2009aSym"


def _entities(name):
    parts = name.split(".")[0].split("_")
    ent = dict(p.split("-", 1) for p in parts[:-1] if "-" in p)
    ent["suffix"] = parts[-1]
    return ent


def _get_template_file(name, cache_dir, **query):
    query.setdefault("desc", None)
    hits = []
    for f in _TPL.glob("*.nii.gz"):
        e = _entities(f.name)
        want = {("res" if k == "resolution" else k): v for k, v in query.items()}
        if all((e.get(k) is None if v is None else str(e.get(k, "")).lstrip("0") == str(v).lstrip("0"))
               for k, v in want.items()):
            hits.append(f)
    if len(hits) != 1:
        raise RuntimeError(f"shim: {query} -> {hits}")
    return hits[0]


try:
    import bids_boldsr.templates as _t

    _t.get_template_file = _get_template_file
except Exception as exc:  # noqa: BLE001
    print("sitecustomize shim failed:", exc)
