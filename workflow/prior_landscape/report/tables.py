"""Tables, built from artefact tables only."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from prior_landscape.io.artefacts import atomic_output

_KIND_SDE = {"ve": "VE SDE", "edm": "EDM"}


def prior_table(timing: pd.DataFrame, priors: dict, crop_size: int) -> pd.DataFrame:
    """P Table 1: train dataset, SDE, resolution, parameters, model-eval and potential-eval seconds per image."""
    rows = []
    for _, t in timing.iterrows():
        cfg = priors[t["prior"]]
        rows.append(
            {
                "prior": t["prior"],
                "kind": cfg["kind"],
                "train dataset": cfg.get("dataset", ""),
                "SDE/ODE": _KIND_SDE[cfg["schedule"]["kind"]],
                "resolution": f"{crop_size}×{crop_size}×1",
                "parameters": int(t["n_parameters"]),
                "model eval (s/image)": float(t["model_eval_s_per_image"]),
                "potential eval (s/image)": float(t["potential_eval_s_per_image"]),
                "potential NFE": float(t["potential_nfe_mean"]),
                "device": t.get("device", ""),
            }
        )
    return pd.DataFrame(rows)


def write_table_files(table: pd.DataFrame, csv: str | Path, html: str | Path, caption: str = "") -> None:
    """CSV for machines, a small styled HTML for the report; both atomically."""
    with atomic_output(csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4g")
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
