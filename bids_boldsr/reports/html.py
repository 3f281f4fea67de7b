"""Participant and group HTML reports, built only from the QC files and figures on disk."""
from __future__ import annotations

import html
import json
from pathlib import Path

from ..atomic import atomic_write_text

STYLE = """body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em;color:#222}
table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:2px 6px}
th{background:#eee}h2{border-bottom:1px solid #ccc}img{max-width:100%}
.note{color:#555;font-size:90%}"""

KEY_METRICS = ("n_volumes", "input_voxel_size", "sr_voxel_size", "sr_method", "tsnr_input",
               "tsnr_sr", "fd_mean", "fd_max", "cerebellum_labels_present")


def _fmt(val) -> str:
    if isinstance(val, float):
        return f"{val:.4g}"
    if isinstance(val, list):
        return " x ".join(_fmt(v) for v in val)
    return html.escape(str(val))


def _table(rows: list[dict], columns) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def participant_report(output_dir, subject: str, qc_files, figures: dict, config: dict,
                       boilerplate: str) -> Path:
    """``<output_dir>/sub-<label>.html``; ``figures`` maps a run name to a list of PNG paths."""
    output_dir = Path(output_dir)
    runs = [json.loads(Path(f).read_text()) for f in qc_files]
    parts = [f"<h1>bids-boldsr: sub-{html.escape(subject)}</h1>",
             f"<p class=note>bids-boldsr {html.escape(str(config.get('version', '')))}, "
             f"run {html.escape(str(config.get('run_uuid', '')))}</p>", "<h2>Summary</h2>"]
    dice_cols = sorted({k for r in runs for k in r if k.startswith("dice_")})
    parts.append(_table(runs, ["run"] + list(KEY_METRICS) + dice_cols))
    for run in runs:
        name = run.get("run", "")
        parts.append(f"<h2>{html.escape(name)}</h2>")
        parts.append("<details><summary>all metrics</summary>"
                     + _table([run], list(run)) + "</details>")
        for png in figures.get(name, []):
            rel = Path(png).relative_to(output_dir)
            parts.append(f'<p><img src="{html.escape(str(rel))}" alt="{html.escape(rel.name)}"></p>')
    parts.append("<h2>Methods</h2><p>" + html.escape(boilerplate) + "</p>")
    parts.append("<h2>Settings</h2><pre>" + html.escape(json.dumps(config, indent=2)) + "</pre>")
    page = f"<!doctype html><html><head><meta charset=utf-8><title>sub-{html.escape(subject)}</title>" \
           f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    return atomic_write_text(output_dir / f"sub-{subject}.html", page)


def group_report(output_dir, table, out_name="group_bold.html") -> Path:
    """Group page from the concatenated participants' QC table (a pandas DataFrame)."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output_dir = Path(output_dir)
    numeric = [c for c in table.columns if table[c].dtype.kind in "if" and table[c].notna().any()]
    imgs = []
    for col in numeric:
        fig, ax = plt.subplots(figsize=(4, 2.2))
        ax.plot(table[col].to_numpy(), range(len(table)), "o")
        ax.set_yticks(range(len(table)), table["run"].tolist(), fontsize=6)
        ax.set_xlabel(col)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        plt.close(fig)
        imgs.append(f'<img alt="{col}" src="data:image/png;base64,'
                    f'{base64.b64encode(buf.getvalue()).decode()}">')
    rows = table.to_dict(orient="records")
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>bids-boldsr group</title>"
            f"<style>{STYLE}</style></head><body><h1>bids-boldsr group report</h1>"
            f"<p>{len(table)} run(s) from {table['subject'].nunique()} participant(s), "
            f"built from the participants' QC files only.</p>{_table(rows, list(table.columns))}"
            f"<h2>Distributions</h2>{''.join(imgs)}</body></html>")
    return atomic_write_text(output_dir / out_name, page)
