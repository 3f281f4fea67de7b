"""Jinja2 rendering of the report templates in ``bids_boldsr/data/reports`` (CSS inlined, so a
page needs nothing but its own figures folder)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[1] / "data" / "reports"


@lru_cache(maxsize=1)
def _env():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    # lenient undefined: a figure that could not be made is simply absent from the page
    return Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]),
                       trim_blocks=True, lstrip_blocks=True)


def render(template: str, **context) -> str:
    from .. import __version__

    css = (TEMPLATES / "report.css").read_text()
    return _env().get_template(template).render(css=css, version=__version__, **context)
