"""Figures, drawn from artefact tables only (never from live computation)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from prior_landscape.io.artefacts import atomic_output  # noqa: E402

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
        fig.text(
            0.01, -0.04, "solid: probability-flow estimate (median, IQR band); dashed: exact potential", fontsize=7
        )
    fig.tight_layout()
    return fig


GROUP_COLOURS = {"training set": "#D55E00", "unrelated images": "#0072B2", "white noise": "#999999"}
GROUP_LABELS = {"training set": "training set", "unrelated images": "unrelated", "white noise": "noise"}  # fig01 titles


def _img(row, col: str = "pixels") -> np.ndarray:
    C, H, W = int(row["channels"]), int(row["height"]), int(row["width"])
    a = np.asarray(row[col], dtype=np.float32).reshape(C, H, W)
    return a[0] if C == 1 else np.clip(a.transpose(1, 2, 0), 0, 1)


def _show(ax, img, title=None):
    ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():  # an image needs no axis lines
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=7)


def plot_critical_points(images: pd.DataFrame, summary: pd.DataFrame, n_show: int = 4):
    """P Fig. 1: starts x_i (top row of each prior) and critical points x̄_i (bottom), q in titles."""
    priors = list(dict.fromkeys(images.prior))
    groups = list(dict.fromkeys(images.group))
    per_group = max(1, n_show // len(groups))
    fig, axes = plt.subplots(
        2 * len(priors),
        per_group * len(groups),
        figsize=(1.15 * per_group * len(groups), 2.5 * len(priors)),
        squeeze=False,
    )
    for i, prior in enumerate(priors):
        im = images[images.prior == prior]
        sm = summary[summary.prior == prior].set_index("image")
        shown = pd.concat([im[im.group == g].head(per_group) for g in groups])
        for j, (_, row) in enumerate(shown.iterrows()):
            s = sm.loc[row["image"]]
            _show(
                axes[2 * i, j],
                _img(row, "start"),
                f"{GROUP_LABELS.get(row['group'], row['group'])}\nq = {s.q_start:.0f}",
            )
            _show(axes[2 * i + 1, j], _img(row, "end"), f"q = {s.q_end:.0f}")
        axes[2 * i, 0].set_ylabel(f"{prior}\nstart x", fontsize=7)
        axes[2 * i + 1, 0].set_ylabel("critical point x̄", fontsize=7)
    fig.suptitle("Starts x and critical points x̄ of q\n(q in nats)", y=1.0, fontsize=9)
    fig.tight_layout()
    return fig


def plot_descent_potential(trajectory: pd.DataFrame, summary: pd.DataFrame | None = None):
    """P Fig. 2: q along the descent (median and quartiles over the starts of each group, one column per
    prior) and, below, the convergence criterion ‖∇q(x_k)‖ / ‖∇q(x_0)‖ with its tolerance: a group whose
    curve ends above the line did not reach a critical point in the budget (the legend says how many did)."""
    priors = list(dict.fromkeys(trajectory.prior))
    fig, axes = plt.subplots(2, len(priors), figsize=(3.4 * len(priors), 5.0), squeeze=False, sharex="col")
    for j, prior in enumerate(priors):
        ax, ax_g = axes[0, j], axes[1, j]
        tp = trajectory[trajectory.prior == prior]
        for group, g in tp[tp.q.notna()].groupby("group", sort=False):
            qs = g.groupby("step").q.quantile([0.25, 0.5, 0.75]).unstack()
            c = GROUP_COLOURS.get(group)
            ax.plot(qs.index, qs[0.5], "-o", ms=3, color=c, label=group)
            ax.fill_between(qs.index, qs[0.25], qs[0.75], color=c, alpha=0.18, lw=0)
        exact = tp[tp.q_exact.notna()] if "q_exact" in tp else tp.iloc[:0]
        for group, g in exact.groupby("group", sort=False):  # an analytic prior: its exact q, dashed
            ax.plot(*zip(*g.groupby("step").q_exact.median().items()), "--", lw=1, color=GROUP_COLOURS.get(group))
        if len(exact):
            ax.text(0.98, 0.97, "dashed: exact q", transform=ax.transAxes, ha="right", va="top", fontsize=7)
        ax.set_title(prior)
        ax.set_ylabel("q(x_k)  [nats]")
        _gradient_panel(ax_g, tp, None if summary is None else summary[summary.prior == prior])
    axes[0, 0].legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


def _gradient_panel(ax, traj: pd.DataFrame, summary: pd.DataFrame | None) -> None:
    """‖∇q(x_k)‖/‖∇q(x_0)‖ along the descent per group (median, quartiles), with the tolerance."""
    g0 = traj[traj.step == 0].set_index("image").grad_norm
    rel = traj.assign(ratio=traj.grad_norm.to_numpy() / g0.reindex(traj.image).to_numpy())
    for group, g in rel[rel.grad_norm.notna()].groupby("group", sort=False):
        qs = g.groupby("step").ratio.quantile([0.25, 0.5, 0.75]).unstack()
        label = group
        if summary is not None and len(summary):
            s = summary[summary.group == group]
            label = f"{group}: {int(s.converged.sum())}/{len(s)} reached"
        c = GROUP_COLOURS.get(group)
        ax.semilogy(qs.index, qs[0.5], color=c, lw=1.2, label=label)
        ax.fill_between(qs.index, qs[0.25], qs[0.75], color=c, alpha=0.18, lw=0)
    if summary is not None and len(summary):
        ax.axhline(float(summary.grad_tol.iloc[0]), color="k", ls="--", lw=0.7)
        ax.legend(frameon=False, fontsize=6, title="critical point (‖∇q‖ ratio ≤ tol)", title_fontsize=6)
    ax.set_xlabel("descent step")
    ax.set_ylabel("‖∇q(x_k)‖ / ‖∇q(x_0)‖")


def plot_critical_point_statistics(summary: pd.DataFrame):
    """P Fig. 3: box-plots of ‖x − x̄‖/‖x̄‖ and q(x) − q(x̄) by start group and prior,
    the training-set group highlighted."""
    priors = list(dict.fromkeys(summary.prior))
    groups = list(dict.fromkeys(summary.group))
    fig, axes = plt.subplots(1, 2, figsize=(7, 2.8))
    for ax, col, label in ((axes[0], "relative_distance", "‖x − x̄‖ / ‖x̄‖"), (axes[1], "q_drop", "q(x) − q(x̄)  [nats]")):
        data, pos, colours = [], [], []
        for i, prior in enumerate(priors):
            for j, group in enumerate(groups):
                data.append(summary[(summary.prior == prior) & (summary.group == group)][col].to_numpy())
                pos.append(i * (len(groups) + 1) + j)
                colours.append(GROUP_COLOURS.get(group, "0.5"))
        bp = ax.boxplot(
            data,
            positions=pos,
            widths=0.8,
            patch_artist=True,
            showfliers=True,
            medianprops={"color": "black", "lw": 1.2},
        )
        for patch, c, group in zip(bp["boxes"], colours, groups * len(priors)):
            patch.set_facecolor(c)
            patch.set_alpha(0.9 if group == "training set" else 0.35)
            patch.set_linewidth(1.6 if group == "training set" else 0.8)
        ax.set_xticks([i * (len(groups) + 1) + (len(groups) - 1) / 2 for i in range(len(priors))], priors, fontsize=7)
        ax.set_ylabel(label)
        if col == "relative_distance":
            ax.set_yscale("log")
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=GROUP_COLOURS.get(g, "0.5"), alpha=0.9 if g == "training set" else 0.35)
        for g in groups
    ]
    fig.legend(handles, groups, loc="upper center", ncol=len(groups), frameon=False, bbox_to_anchor=(0.5, 1.06))
    fig.tight_layout()
    return fig


def plot_hessian_spectra(spectra: pd.DataFrame, threshold: float | None = None, relative: bool = False):
    """P Fig. 4: singular values of ∇²q at critical points (one curve each, log scale) with the
    intrinsic-dimension threshold drawn where it counts (``threshold`` × the largest value of each
    point when ``relative``), and below it the intrinsic dimension over a range of thresholds."""
    from prior_landscape.landscape.hessian import intrinsic_dimension

    priors = list(dict.fromkeys(spectra.prior))
    fig, axes = plt.subplots(2, len(priors), figsize=(3.2 * len(priors), 4.8), squeeze=False)
    cuts = np.logspace(-8, 0, 49)
    for j, prior in enumerate(priors):
        ax, ax_dim = axes[0, j], axes[1, j]
        s = spectra[spectra.prior == prior]
        dims = []
        for i, (point, g) in enumerate(s.groupby("point")):
            sv = g.sort_values("index")["singular_value"].to_numpy()
            colour = f"C{i % 10}"
            ax.semilogy(g["index"], g["singular_value"], lw=0.9, color=colour)
            dims.append(int(g["intrinsic_dimension"].iloc[0]))
            if threshold is not None:
                ax.axhline(threshold * sv.max() if relative else threshold, color=colour, ls="--", lw=0.6)
            counts = [intrinsic_dimension(sv, c, relative=True) for c in cuts]
            ax_dim.semilogx(cuts, counts, lw=0.9, color=colour, label=f"point {point}")
        what = f"threshold {threshold:g}" + (" × largest" if relative else "") if threshold is not None else ""
        ax.set_title(f"{prior}: intrinsic dim. {'/'.join(map(str, dims))}\n({what})", fontsize=8)
        ax.set_xlabel("index")
        ax.set_ylabel("singular value of ∇²q")
        if threshold is not None and relative:
            ax_dim.axvline(threshold, color="k", ls="--", lw=0.6)
        ax_dim.set_xlabel("threshold / largest singular value")
        ax_dim.set_ylabel("intrinsic dimension")
        ax_dim.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return fig


def plot_blurred_image_potential(sweep: pd.DataFrame, family: str = "gaussian"):
    """P Fig. 6: one image blurred along θ, each panel titled with its q."""
    rows = sweep[(sweep.family == family) & sweep.pixels.notna()].sort_values("theta")
    rows = rows[rows.image_id == rows.image_id.min()]
    side = int(round(np.sqrt(len(rows.pixels.iloc[0]))))
    fig, axes = plt.subplots(1, len(rows), figsize=(1.0 * len(rows), 1.4), squeeze=False)
    for ax, (_, r) in zip(axes[0], rows.iterrows()):
        _show(ax, np.asarray(r.pixels).reshape(side, -1), f"θ={r.theta:g}\nq={r.q:.0f}")
    fig.suptitle(f"{rows.prior.iloc[0]}: {FAMILY_LABELS.get(family, family)} blur of one image", y=1.12, fontsize=8)
    return fig


def plot_digit_prior(samples: pd.DataFrame, sweeps: pd.DataFrame, n_show: int = 8):
    """P Fig. 8: (a) true samples, (b) generated samples, (c) q(h_θ ⋆ x) − q(x) versus θ."""
    fig = plt.figure(figsize=(8.6, 2.6))
    # a spacer column between the samples and the curves leaves room for the curves' y label
    grid = fig.add_gridspec(2, n_show + 5, width_ratios=[1] * n_show + [1.4, 1, 1, 1, 1])
    for r, kind in enumerate(["true", "generated"]):
        sub = samples[samples.kind == kind].head(n_show)
        for j, (_, row) in enumerate(sub.iterrows()):
            ax = fig.add_subplot(grid[r, j])
            _show(ax, _img(row))
            if j == 0:
                ax.set_ylabel(kind, fontsize=8)
    ax = fig.add_subplot(grid[:, n_show + 1 :])
    _sweep_curves(ax, sweeps)
    ax.set_title("potential versus blur", fontsize=8)
    ax.yaxis.set_label_coords(-0.28, 0.5)
    return fig


def _sweep_curves(ax, df: pd.DataFrame) -> None:
    df = df.copy()
    base = df[df.theta == df.theta.min()].set_index(["prior", "family", "image_id"])
    df["dq"] = df.q.to_numpy() - base.loc[list(zip(df.prior, df.family, df.image_id)), "q"].to_numpy()
    for fam in dict.fromkeys(df.family):
        qs = _quantiles(df[df.family == fam], "dq")
        c = FAMILY_COLOURS.get(fam)
        ax.plot(qs.index, qs[0.5], "-o", ms=2.5, color=c, label=FAMILY_LABELS.get(fam, fam))
        ax.fill_between(qs.index, qs[0.25], qs[0.75], color=c, alpha=0.18, lw=0)
    ax.axhline(0, color="0.6", lw=0.6)
    ax.set_xlabel("blur level θ [px]")
    ax.set_ylabel(r"$q(h_\theta \star x) - q(x)$  [nats]")
    ax.legend(frameon=False, fontsize=7)
