"""The benchmark's table and figures, from its artefacts only (runs, estimates, test set)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from prior_landscape.methods import METHODS  # noqa: E402

__all__ = ["benchmark_table", "plot_benchmark_grid", "plot_benchmark_kernels", "METRICS"]

#: the table's metrics: column → (label, higher is better)
METRICS = {
    "psnr": ("PSNR (dB)", True),
    "ssim": ("SSIM", True),
    "haarpsi": ("HaarPSI", True),
    "lpips_alex": ("LPIPS-Alex", False),  # paper scale (benchmark.perceptual)
    "lpips_vgg": ("LPIPS-VGG", False),
    "fid": ("FID", False),
    "kernel_error": ("kernel error", False),
    "mnc": ("MNC", True),
    "no_blur": ("no-blur rate", False),
    "wall_s": ("s / image", False),
    "nfe": ("NFE / image", False),
}


def _kind(entry: dict) -> str:
    return "reference" if METHODS[entry["method"]].reference else "blind"


def benchmark_table(runs: pd.DataFrame, methods: dict, reported: list[dict] | None = None) -> pd.DataFrame:
    """Methods × metrics: medians over the cases (the no-blur rate: the share of cases); for methods run with
    several seeds, the mean ± std over seeds of those medians (rates). Reference methods (they see the true
    kernel) are set apart and never marked best; the best blind method of each quality metric is marked ★.
    The numbers the source papers report are appended as rows labelled "reported", never mixed with
    measured ones."""
    rows = []
    metrics = [c for c in METRICS if c in runs]  # LPIPS and FID only where computed (paper scale)
    for name, entry in methods.items():
        r = runs[runs.method == name]
        # the median over cases; the no-blur flags' share of cases (a rate, as in the figure and the claims)
        per_seed = r.groupby("seed")[metrics].agg({c: "mean" if c == "no_blur" else "median" for c in metrics})
        row = {"method": name, "kind": _kind(entry), "runs": len(r), "seeds": len(per_seed)}
        for col in metrics:
            mean, std = per_seed[col].mean(), per_seed[col].std(ddof=1) if len(per_seed) > 1 else np.nan
            row[col], row[f"{col}_std"] = mean, std
        row["converged"] = "" if r.converged.isna().all() else f"{int(r.converged.fillna(False).sum())}/{len(r)}"
        rows.append(row)
    table = pd.DataFrame(rows)
    blind = table.kind == "blind"
    for col, (_, higher) in METRICS.items():
        if (
            col not in table
            or col in ("wall_s", "nfe", "no_blur")
            or not blind.any()
            or table.loc[blind, col].isna().all()
        ):
            continue
        values = table.loc[blind, col]
        best = values.idxmax() if higher else values.idxmin()
        table.loc[best, f"{col}_best"] = True
    table = pd.concat([table[table.kind == "blind"], table[table.kind == "reference"]], ignore_index=True)
    if reported:
        table = pd.concat([table, pd.DataFrame([{**r, "kind": "reported"} for r in reported])], ignore_index=True)
    return table


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """The table for reading (Markdown, LaTeX): value ± std, ★ on the best blind method."""
    out = table[["method", "kind"]].copy()
    for col, (label, _) in METRICS.items():
        if col not in table:
            continue
        cells = []
        for _, r in table.iterrows():
            v = r.get(col)
            if v is None or (isinstance(v, float) and np.isnan(v)):
                cells.append("")
                continue
            s = f"{v:.3g}" if col not in ("psnr",) else f"{v:.2f}"
            if np.isfinite(r.get(f"{col}_std", np.nan)):
                s += f" ± {r[f'{col}_std']:.2g}"
            cells.append(s + (" ★" if r.get(f"{col}_best") is True else ""))
        out[label] = cells
    out["converged"] = table.get("converged", "")
    return out


def _image(flat, shape):
    """An image for imshow: (H, W) grey, or (H, W, 3) colour."""
    img = np.asarray(flat, dtype=np.float64).reshape(shape)
    return img[0] if shape[0] == 1 else img.transpose(1, 2, 0)


def plot_benchmark_grid(testset: pd.DataFrame, estimates: pd.DataFrame, runs: pd.DataFrame, methods: dict):
    """One case per kernel family: blurry y (the true kernel inset), every method's x̂ (its PSNR; its kernel
    inset), the sharp x̄."""
    cases = testset.groupby("kernel_family", sort=False).head(1)
    C, H, W, k = (int(testset[c].iloc[0]) for c in ("channels", "height", "width", "kernel_size"))
    cols = ["blurry"] + [m for m, e in methods.items() if e["method"] != "blurry"] + ["sharp"]
    fig, axes = plt.subplots(len(cases), len(cols), figsize=(1.45 * len(cols), 1.65 * len(cases)), squeeze=False)
    for i, (_, case) in enumerate(cases.iterrows()):
        for j, col in enumerate(cols):
            ax = axes[i, j]
            if col in ("blurry", "sharp"):
                real = case["kernel"] is None  # real blur: no true kernel to inset
                title = ("y" if real else "y (h̄ inset)") if col == "blurry" else "x̄"
                img, kern = _image(case[col], (C, H, W)), case["kernel"] if col == "blurry" else None
            else:
                e = estimates[(estimates.method == col) & (estimates.case == case.case) & (estimates.seed == 0)].iloc[0]
                psnr = runs[(runs.method == col) & (runs.case == case.case) & (runs.seed == 0)].psnr.iloc[0]
                img, kern, title = _image(e.estimate, (C, H, W)), e.kernel_estimate, f"{col}\n{psnr:.1f} dB"
            ax.imshow(np.clip(img, 0, 1), cmap="gray", vmin=0, vmax=1)
            if kern is not None and not (isinstance(kern, float) and np.isnan(kern)):
                inset = ax.inset_axes([0.64, 0.64, 0.36, 0.36])
                inset.imshow(np.asarray(kern).reshape(k, k), cmap="magma")
                inset.set_axis_off()
            ax.set_axis_off()
            if i == 0 or col not in ("blurry", "sharp"):
                ax.set_title(title, fontsize=6)
        axes[i, 0].text(-0.08, 0.5, case.kernel_family, transform=axes[i, 0].transAxes, rotation=90,
                        ha="right", va="center", fontsize=6)  # fmt: skip
    fig.tight_layout(pad=0.3)
    return fig


def _kernel_size_px(flat, k: int) -> float:
    """The RMS radius of a kernel about its centroid, in pixels: how large the blur is."""
    h = np.asarray(flat, dtype=np.float64).reshape(k, k)
    yy, xx = np.mgrid[0:k, 0:k]
    cy, cx = (h * yy).sum(), (h * xx).sum()
    return float(np.sqrt((h * ((yy - cy) ** 2 + (xx - cx) ** 2)).sum()))


def plot_benchmark_kernels(testset: pd.DataFrame, runs: pd.DataFrame, methods: dict, estimates=None):
    """Left: kernel error against the true blur's size (RMS radius) per blind method — on real blur (no true
    kernel) the size of each estimated kernel instead (``estimates``); right: the no-blur rate per method (the
    share of runs whose kernel ends at the Dirac)."""
    k = int(testset.kernel_size.iloc[0])
    blind = [m for m, e in methods.items() if _kind(e) == "blind"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(8.5, 3.0), gridspec_kw={"width_ratios": [1.3, 1]})
    if testset.kernel.notna().all():
        size = testset.set_index("case").kernel.map(lambda f: _kernel_size_px(f, k))
        for i, m in enumerate(blind):
            r = runs[(runs.method == m) & runs.kernel_error.notna()].groupby("case").kernel_error.mean()
            if len(r):
                ax.plot(size.loc[r.index], r.to_numpy(), "o", ms=3.5, color=f"C{i % 10}", label=m, alpha=0.8)
        ax.set_xlabel("true kernel's RMS radius (px)")
        ax.set_ylabel("aligned kernel error ‖ĥ − h̄‖₂")
        ax.legend(frameon=False, fontsize=6, ncol=2)
    else:  # real blur: how large a blur each method finds (0 px: the Dirac, the no-blur solution)
        for i, m in enumerate(blind):
            est = [] if estimates is None else estimates[(estimates.method == m)].kernel_estimate.dropna()
            sizes = [_kernel_size_px(f, k) for f in est]
            jitter = np.random.default_rng(i).uniform(-0.15, 0.15, len(sizes))
            ax.plot(sizes, i + jitter, "o", ms=3.5, color=f"C{i % 10}", alpha=0.8)
        ax.set_yticks(range(len(blind)), blind, fontsize=6)
        ax.set_xlabel("estimated kernel's RMS radius (px; no true kernel: real blur)")
    rates = [runs[runs.method == m].no_blur.mean() for m in blind]
    ax2.barh(blind, rates, color=[f"C{i % 10}" for i in range(len(blind))])
    for j, (m, rate) in enumerate(zip(blind, rates)):  # the value, readable when it is 0
        n = int(runs[runs.method == m].no_blur.notna().sum())
        ax2.annotate(
            f"{rate:.0%} of {n}", (rate, j), xytext=(3, 0), textcoords="offset points", va="center", fontsize=6
        )
    ax2.set_xlim(0, 1)
    ax2.set_xlabel("no-blur rate (ĥ at the Dirac)")
    ax2.tick_params(axis="y", labelsize=6)
    fig.tight_layout()
    return fig
