"""Figures, drawn from artefact tables only (never from live computation)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .artefacts import atomic_output  # noqa: E402

# Okabe–Ito: distinguishable for colour-blind readers and in grayscale print.
FAMILY_COLOURS = {"gaussian": "#0072B2", "motion": "#D55E00", "airy": "#009E73", "defocus": "#CC79A7"}
FAMILY_LABELS = {"gaussian": "Gaussian", "motion": "motion", "airy": "Airy disk", "defocus": "defocus"}

plt.rcParams.update(
    {
        "font.size": 9,
        "axes.titlesize": 9,
        "axes.labelsize": 9,
        "legend.fontsize": 8,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "figure.dpi": 150,
        "savefig.bbox": "tight",
    }
)


def save_figure(fig, png: str | Path, pdf: str | Path | None = None) -> None:
    """Write the figure as PNG (for the report) and PDF (for a paper), atomically."""
    for path, fmt in ((png, "png"), (pdf, "pdf")):
        if path is None:
            continue
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=200 if fmt == "png" else None)
    plt.close(fig)


def plot_blur_families(kernels: pd.DataFrame, n_show: int = 6, zoom: int = 17):
    """P Fig. 5: each family (row) at a few θ (columns), central ``zoom``×``zoom`` pixels."""
    families = list(dict.fromkeys(kernels["family"]))
    thetas = np.sort(kernels["theta"].unique())
    shown = thetas[np.unique(np.linspace(0, len(thetas) - 1, min(n_show, len(thetas))).round().astype(int))]
    fig, axes = plt.subplots(len(families), len(shown), figsize=(1.2 * len(shown), 1.25 * len(families)), squeeze=False)
    for i, fam in enumerate(families):
        for j, th in enumerate(shown):
            row = kernels[(kernels.family == fam) & np.isclose(kernels.theta, th)].iloc[0]
            size = int(row["size"])
            h = np.asarray(row["kernel"]).reshape(size, size)
            c, r = size // 2, min(zoom, size) // 2
            ax = axes[i, j]
            ax.imshow(h[c - r : c + r + 1, c - r : c + r + 1], cmap="magma", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"θ = {th:g}")
            if j == 0:
                ax.set_ylabel(FAMILY_LABELS.get(fam, fam))
    fig.suptitle(f"Blur families h_θ (central {2 * r + 1}×{2 * r + 1} of {size}×{size}; h₀ = Dirac)", y=1.02)
    return fig


def _quantiles(g: pd.DataFrame, value: str) -> pd.DataFrame:
    return g.groupby("theta")[value].quantile([0.25, 0.5, 0.75]).unstack()


def plot_likelihood_sweeps(df: pd.DataFrame):
    """P Fig. 7: q(h_θ ⋆ x) − q(x) versus θ, one panel per prior, median and interquartile
    band over images for each family; the exact value dashed where the prior has one."""
    df = df.copy()
    base = df[df.theta == df.theta.min()].set_index(["prior", "family", "image_id"])
    key = list(zip(df.prior, df.family, df.image_id))
    df["dq"] = df.q.to_numpy() - base.loc[key, "q"].to_numpy()
    df["dq_exact"] = df.q_exact.to_numpy() - base.loc[key, "q_exact"].to_numpy()
    priors = list(dict.fromkeys(df.prior))
    fig, axes = plt.subplots(1, len(priors), figsize=(3.2 * len(priors), 2.8), squeeze=False, sharey=False)
    for ax, prior in zip(axes[0], priors):
        sub = df[df.prior == prior]
        n_img = sub.image_id.nunique()
        for fam in dict.fromkeys(sub.family):
            g = sub[sub.family == fam]
            qs = _quantiles(g, "dq")
            colour = FAMILY_COLOURS.get(fam)
            ax.plot(qs.index, qs[0.5], "-o", ms=2.5, color=colour, label=FAMILY_LABELS.get(fam, fam))
            ax.fill_between(qs.index, qs[0.25], qs[0.75], color=colour, alpha=0.18, lw=0)
            if g.dq_exact.notna().all():
                ex = _quantiles(g, "dq_exact")
                ax.plot(ex.index, ex[0.5], "--", color=colour, lw=0.9)
        ax.axhline(0, color="0.6", lw=0.6)
        ax.set_title(f"{prior}  ({n_img} images)")
        ax.set_xlabel("blur level θ [px]")
        ax.set_ylabel("q(h_θ ⋆ x) − q(x)  [nats]")
    axes[0, 0].legend(frameon=False, loc="lower left")
    if df.q_exact.notna().any():
        fig.text(0.01, -0.04, "solid: probability-flow estimate (median, IQR band); dashed: exact potential", fontsize=7)
    fig.tight_layout()
    return fig
