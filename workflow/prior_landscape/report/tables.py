"""Tables, built from artefact tables only."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from prior_landscape.io.artefacts import atomic_output

_KIND_SDE = {"ve": "VE SDE", "edm": "EDM"}


def prior_table(timing: pd.DataFrame, priors: dict) -> pd.DataFrame:
    """P Table 1: train dataset, SDE, resolution, parameters, and the seconds per image of a
    model evaluation and of a potential evaluation: median and range (min–max) over the
    repeats of one job (``timing``: the rows of :func:`prior_landscape.landscape.timing.measure_costs`)."""
    from prior_landscape.landscape.timing import cost_summary

    summary = cost_summary(timing).set_index(["prior", "measurement"])
    rows = []
    for name, t in timing.groupby("prior", sort=False):
        cfg = priors[name]
        model, pot = summary.loc[(name, "model")], summary.loc[(name, "potential")]
        rows.append(
            {
                "prior": name,
                "kind": cfg["kind"],
                "train dataset": cfg.get("dataset", ""),
                "SDE/ODE": _KIND_SDE[cfg["schedule"]["kind"]],
                "resolution": t["resolution"].iloc[0],
                "parameters": int(t["n_parameters"].iloc[0]),
                "model eval median (s/image)": model["median"],
                "model eval min (s/image)": model["min"],
                "model eval max (s/image)": model["max"],
                "potential eval median (s/image)": pot["median"],
                "potential eval min (s/image)": pot["min"],
                "potential eval max (s/image)": pot["max"],
                "potential NFE": pot["nfe_mean"],
                "repeats (model, potential)": f"{int(model['repeats'])}, {int(pot['repeats'])}",
                "device": t["device"].iloc[0] if "device" in t else "",
            }
        )
    return pd.DataFrame(rows)


_LATEX_SPECIALS = {c: "\\" + c for c in "&%$#_{}"}


def _latex_text(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(c, c) for c in text)


def table_paths(csv: str | Path) -> dict[str, Path]:
    """The files of one table: ``csv``, and beside it the same name in ``.md`` and ``.tex``."""
    csv = Path(csv)
    return {"csv": csv, "markdown": csv.with_suffix(".md"), "latex": csv.with_suffix(".tex")}


def write_table_files(
    table: pd.DataFrame,
    csv: str | Path,
    html: str | Path | None = None,
    caption: str = "",
    *,
    markdown: str | Path | None = None,
    latex: str | Path | None = None,
    index: bool = False,
    data: pd.DataFrame | None = None,
) -> None:
    """A table of the workflow in CSV (for machines), Markdown and LaTeX (for papers and READMEs;
    by default beside the CSV: :func:`table_paths`), and optionally a small styled HTML page; all
    written atomically. ``index``: write the frame's index as the leading column(s). ``data``: the
    machine-readable frame for the CSV where ``table`` is a rendering of it for reading (the
    benchmark's "value ± std ★" cells), one row per row of ``table``."""
    paths = table_paths(csv)
    if index:
        table = table.reset_index()
    if data is not None and len(data) != len(table):
        raise ValueError(f"{csv}: the CSV's frame has {len(data)} rows, its rendering {len(table)}")
    with atomic_output(paths["csv"]) as tmp:
        (table if data is None else data).to_csv(tmp, index=False, float_format="%.5g" if data is not None else "%.4g")
    md = table.to_markdown(index=False, floatfmt=".4g")
    with atomic_output(markdown or paths["markdown"]) as tmp:
        Path(tmp).write_text((f"{caption}\n\n" if caption else "") + md + "\n", encoding="utf-8")
    label = f"tab:{Path(csv).stem}"
    tex = table.to_latex(
        index=False, float_format="%.4g", escape=True, caption=_latex_text(caption) or None, label=label
    )
    with atomic_output(latex or paths["latex"]) as tmp:
        Path(tmp).write_text(tex, encoding="utf-8")
    if html is None:
        return
    body = table.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)
    page = (
        "<html><head><meta charset='utf-8'><style>"
        "body{font-family:sans-serif;font-size:13px} table{border-collapse:collapse}"
        "td,th{padding:4px 10px;border-bottom:1px solid #ccc;text-align:right}"
        "</style></head><body>"
        f"<p><b>{caption}</b></p>{body}</body></html>"
    )
    with atomic_output(html) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
