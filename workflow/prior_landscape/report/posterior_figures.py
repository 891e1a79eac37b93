"""Figures of the posterior landscape and of blind deconvolution (P §4–5, Appendix B, Figs. 9–15),
drawn from the artefact tables of the ``posterior_profiles`` and ``deblur_runs`` rules only.

Tables read here:

* profiles (``posterior/<prior>/{noiseless,noisy}.parquet``): one row per prior, family,
  x̄ ("dataset" / "critical point"), [σ_y,] image and θ, with ℓ^opt(θ) in ``ell``;
* deblurring (``deblur/<case>/{metrics,images,trajectory}.parquet``): one row per run
  (init × image), the images and kernels flattened, and the trajectory every few iterations.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prior_landscape.report.landscape_figures import FAMILY_COLOURS, FAMILY_LABELS, _show, plt, save_figure  # noqa: F401 - style + re-export

__all__ = [
    "save_figure",
    "profile_minima",
    "plot_noiseless_profiles",
    "plot_noisy_profiles",
    "plot_zernike_example",
    "plot_zernike_cases",
    "plot_simplex_initialisations",
    "plot_simplex_cases",
    "plot_kohler",
    "deblur_summary",
]

# Okabe–Ito, for the noise levels of Fig. 10 and the initialisations of Figs. 11–15
LEVEL_COLOURS = ["#56B4E9", "#E69F00", "#009E73", "#CC79A7", "#0072B2", "#D55E00", "#F0E442"]
INIT_COLOURS = {"large": "#0072B2", "small": "#D55E00"}
X_BAR_LABELS = {"dataset": "x̄ from the data", "critical point": "x̄ a critical point of q"}


# ------------------------------------------------------------------ profiles
def _relative_to_theta_bar(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """ℓ(θ) − ℓ(θ̄) per profile (θ̄ is on every grid)."""
    df = df.copy()
    at_bar = df[np.isclose(df.theta, df.theta_bar)].set_index(keys).ell
    df["dell"] = df.ell.to_numpy() - at_bar.loc[list(df[keys].itertuples(index=False, name=None))].to_numpy()
    return df


def _median_band(ax, g: pd.DataFrame, value: str, colour, label) -> None:
    """Median and IQR over images; a star at the median curve's argmin, a cross over θ points where some
    image's inner minimisation did not meet its tolerance (noisy profiles: never drawn as a plain value)."""
    g = g[np.isfinite(g[value])]
    if g.empty:  # e.g. a noise level this prior was not profiled at (posterior.by_prior)
        return
    qs = g.groupby("theta")[value].quantile([0.25, 0.5, 0.75]).unstack()
    ax.plot(qs.index, qs[0.5], "-o", ms=2.5, color=colour, label=label)
    ax.fill_between(qs.index, qs[0.25], qs[0.75], color=colour, alpha=0.18, lw=0)
    best = qs[0.5].idxmin()
    ax.plot([best], [qs[0.5][best]], "*", ms=9, color=colour, mec="k", mew=0.5, zorder=5)
    if "converged" in g:
        bad = g.groupby("theta").converged.all()
        bad = bad[~bad].index
        ax.plot(bad, qs[0.5].reindex(bad), "x", ms=6, color="k", zorder=6)


def _symlog_ticks(ax, min_gap: float = 0.09) -> None:
    """Decade ticks (±10^n and 0) on a symlog axis (linthresh 1), thinned so that no two are closer
    than ``min_gap`` of the axis height: huge ranges stay legible."""
    lo, hi = ax.get_ylim()
    pos = lambda v: np.sign(v) * (np.log10(abs(v)) + 1) if abs(v) > 1 else v  # noqa: E731 - symlog coordinate
    span = pos(hi) - pos(lo)
    candidates = [0.0]
    for sign, end in ((1, hi), (-1, lo)):
        if sign * end >= 1:
            top = int(np.floor(np.log10(sign * end)))
            candidates += [sign * 10.0**e for e in range(top, -1, -1)]  # the extreme decades first
    ticks: list[float] = []
    for t in candidates:
        if lo <= t <= hi and all(abs(pos(t) - pos(u)) >= min_gap * span for u in ticks):
            ticks.append(t)
    ticks.sort()
    ax.set_yticks(ticks)
    ax.set_yticklabels(
        ["0" if t == 0 else f"{'−' if t < 0 else ''}10$^{{{int(round(np.log10(abs(t))))}}}$" for t in ticks]
    )
    ax.set_ylim(lo, hi)


def _profile_axes(ax, theta_bar: float, ylabel: str) -> None:
    ax.set_yscale("symlog", linthresh=1.0)
    _symlog_ticks(ax)
    ax.axvline(theta_bar, color="0.4", ls="--", lw=0.7)
    ax.axhline(0, color="0.7", lw=0.5)
    ax.set_xlabel("blur level θ [px]")
    ax.set_ylabel(ylabel)


def profile_minima(profiles: pd.DataFrame) -> pd.DataFrame:
    """Where the profiles are minimal: per prior, family, x̄ and σ_y (0 for a noiseless table), the
    share of images whose minimiser over the θ grid is its smallest θ (0: the no-blur solution) and
    θ̄, and the medians of ℓ(θ̄) − ℓ(0) and of the margin min_{θ ≠ θ̄} ℓ(θ) − ℓ(θ̄) (> 0: θ̄ is the
    grid minimum), in nats (noisy profiles: in units of σ_y² too, ``…_per_sigma2``)."""
    df = profiles if "sigma_y" in profiles else profiles.assign(sigma_y=0.0)
    keys = ["prior", "family", "x_bar", "sigma_y"]
    rows = []
    for key, g in df.groupby(keys + ["image"], sort=False):
        ell = g.ell.where(np.isfinite(g.ell), np.inf).to_numpy()
        th = g.theta.to_numpy()
        i_bar = int(np.argmin(np.abs(th - g.theta_bar.iloc[0])))
        i_min = int(np.argmin(ell))
        rows.append(
            (
                *key,
                th[i_min],
                i_min == i_bar,
                th[i_min] == th.min(),
                ell[i_bar] - ell[int(np.argmin(th))],
                np.delete(ell, i_bar).min() - ell[i_bar],
            )
        )
    per = pd.DataFrame(rows, columns=keys + ["image", "argmin_theta", "at_theta_bar", "at_0", "bar_minus_0", "margin"])
    g = per.groupby(keys, sort=False)
    out = pd.DataFrame(
        {
            "n_images": g.size(),
            "share_min_at_0": g.at_0.mean(),
            "share_min_at_theta_bar": g.at_theta_bar.mean(),
            "median_ell_theta_bar_minus_ell_0": g.bar_minus_0.median(),
            "median_margin_at_theta_bar": g.margin.median(),
        }
    ).reset_index()
    noisy = out.sigma_y > 0
    for col in ("median_ell_theta_bar_minus_ell_0", "median_margin_at_theta_bar"):
        out[f"{col}_per_sigma2"] = np.where(noisy, out[col] / out.sigma_y.where(noisy, 1.0) ** 2, np.nan)
    return out


def plot_noiseless_profiles(df: pd.DataFrame):
    """P Fig. 9: ℓ^opt(θ) − ℓ^opt(θ̄) = q(H̃_θ⁻¹ȳ) − q(x̄) versus θ, per family (colour); left x̄
    from the data, right x̄ a critical point; one row per prior; median and IQR over images."""
    priors = list(dict.fromkeys(df.prior))
    kinds = [k for k in X_BAR_LABELS if k in set(df.x_bar)]
    df = _relative_to_theta_bar(df, ["prior", "family", "x_bar", "image"])
    fig, axes = plt.subplots(
        len(priors), len(kinds), figsize=(3.4 * len(kinds), 2.7 * len(priors)), squeeze=False, sharex=True
    )
    for i, prior in enumerate(priors):
        for j, kind in enumerate(kinds):
            ax = axes[i, j]
            sub = df[(df.prior == prior) & (df.x_bar == kind)]
            for fam, g in sub.groupby("family", sort=False):
                _median_band(ax, g, "dell", FAMILY_COLOURS.get(fam), FAMILY_LABELS.get(fam, fam))
            _profile_axes(ax, float(sub.theta_bar.iloc[0]), "ℓ^opt(θ) − ℓ^opt(θ̄)  [nats]" if j == 0 else "")
            ax.set_title(f"{prior}: {X_BAR_LABELS[kind]}")
    axes[0, -1].legend(frameon=False, fontsize=7)
    fig.suptitle("Noiseless profile ℓ^opt(θ) = q(H̃_θ⁻¹ ȳ), ȳ = H̃_θ̄ x̄ (dashed: θ̄; ★: argmin; symlog scale)", y=1.01)
    fig.tight_layout()
    return fig


def plot_noisy_profiles(df: pd.DataFrame):
    """P Fig. 10: (ℓ^opt(θ) − ℓ^opt(θ̄))/σ_y² versus θ for several σ_y (colour); one row per
    prior and family, columns x̄ from the data / a critical point; median and IQR over images."""
    df = _relative_to_theta_bar(df, ["prior", "family", "x_bar", "sigma_y", "image"])
    df["dell"] = df.dell / df.sigma_y**2
    rows = list(dict.fromkeys(zip(df.prior, df.family)))
    kinds = [k for k in X_BAR_LABELS if k in set(df.x_bar)]
    levels = sorted(df.sigma_y.unique())
    fig, axes = plt.subplots(
        len(rows), len(kinds), figsize=(3.4 * len(kinds), 2.3 * len(rows)), squeeze=False, sharex=True
    )
    for i, (prior, fam) in enumerate(rows):
        for j, kind in enumerate(kinds):
            ax = axes[i, j]
            sub = df[(df.prior == prior) & (df.family == fam) & (df.x_bar == kind)]
            for n, s in enumerate(levels):
                _median_band(ax, sub[sub.sigma_y == s], "dell", LEVEL_COLOURS[n % len(LEVEL_COLOURS)], f"σ_y = {s:g}")
            _profile_axes(ax, float(sub.theta_bar.iloc[0]), "Δℓ^opt / σ_y²  [nats]" if j == 0 else "")
            ax.set_title(f"{prior}, {FAMILY_LABELS.get(fam, fam)}: {X_BAR_LABELS[kind]}", fontsize=8)
            if i < len(rows) - 1:
                ax.set_xlabel("")
    axes[0, -1].legend(frameon=False, fontsize=7)
    fig.suptitle(
        "Noisy profile ℓ^opt(θ) = min over starts of inf_x ℓ_y(x, θ), relative to θ̄ (dashed), per σ_y²"
        " (★: argmin; ×: not minimised to tolerance)",
        y=1.0,
    )
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------- deblurring
def _arr(row, col: str) -> np.ndarray:
    a = np.asarray(row[col], dtype=np.float32)
    side = int(round(np.sqrt(a.size)))
    return a.reshape(side, side)


def _kernel(ax, h, title=None):
    """A kernel, scaled to its own maximum (magma, black = 0)."""
    ax.imshow(h, cmap="magma", vmin=0, vmax=max(float(h.max()), 1e-12), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)


def _runs(images: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    keep = [c for c in metrics.columns if c not in images.columns or c in ("case", "run")]
    return images.merge(metrics[keep], on=["case", "run"])


def _metric_title(r) -> str:
    return f"PSNR {r.psnr:.1f} dB\nKE {r.kernel_error:.3f}, MNC {r.mnc:.2f}"


def _psnr_along(ax, trajectory: pd.DataFrame, psnr_blurry: float, by: str = "init") -> None:
    """PSNR of the image iterate along the iterations (one line per ``by`` group), the blurry input's
    PSNR drawn as the reference it has to beat."""
    for name, g in trajectory.groupby(by, sort=False):
        ax.plot(g.iteration, g.psnr, "-", color=INIT_COLOURS.get(name), label=f"{name}")
    ax.axhline(psnr_blurry, color="0.4", lw=0.8, ls="--", label="y")
    ax.set_xlabel("iteration k")
    ax.set_ylabel("PSNR of x (dB)")
    ax.legend(frameon=False, fontsize=6)


def plot_zernike_example(metrics: pd.DataFrame, images: pd.DataFrame, trajectory: pd.DataFrame, image: int = 0):
    """P Fig. 11: one image blurred by a diffraction PSF: x̄, y, x̂ from the large and the small
    initialisation (top), h̄, the initial and final kernels and the Airy pattern (bottom), and
    along the iterations (right) the kernel error and distance to the Airy pattern (the start's
    kernel error dashed) and the PSNR of the image iterate (the blurry input's dashed)."""
    runs = _runs(images, metrics)
    runs = runs[runs.image == image].set_index("init")
    names = list(runs.index)
    first = runs.iloc[0]
    fig = plt.figure(figsize=(2.0 + 1.3 * (2 + len(names)) + 2.8, 3.0))
    grid = fig.add_gridspec(2, 2 + len(names) + 2, width_ratios=[1] * (2 + len(names)) + [0.25, 2.6])
    _show(fig.add_subplot(grid[0, 0]), _arr(first, "sharp"), "x̄")
    _show(
        fig.add_subplot(grid[0, 1]),
        _arr(first, "blurry"),
        f"y (σ_y = {first.sigma_y:g})\nPSNR {first.psnr_blurry:.1f} dB",
    )
    _kernel(fig.add_subplot(grid[1, 0]), _arr(first, "h_true"), "h̄")
    _kernel(fig.add_subplot(grid[1, 1]), _arr(first, "h_small"), "Airy h(0)\n(no blur)")
    for j, name in enumerate(names):
        r = runs.loc[name]
        _show(fig.add_subplot(grid[0, 2 + j]), _arr(r, "estimate"), f"x̂ ({name} init)\n{_metric_title(r)}")
        sub = grid[1, 2 + j].subgridspec(1, 2, wspace=0.05)
        _kernel(fig.add_subplot(sub[0]), _arr(r, "h_init"), "h_init")
        flag = " → no blur" if r.no_blur else ""
        _kernel(fig.add_subplot(sub[1]), _arr(r, "h_hat"), f"ĥ{flag}")
    ax = fig.add_subplot(grid[0, -1])
    tr = trajectory[trajectory.image == image]
    for name, g in tr.groupby("init", sort=False):
        c = INIT_COLOURS.get(name)
        ax.plot(g.iteration, g.kernel_error, "-", color=c, label=f"{name}: KE to h̄")
        ax.plot(g.iteration, g.collapse_distance, ":", color=c, label=f"{name}: distance to Airy")
        ax.axhline(g.kernel_error.iloc[0], color=c, lw=0.5, ls="--")  # the start's kernel error
    ax.set_ylabel("aligned ℓ² distance")
    ax.tick_params(labelbottom=False)
    ax.legend(frameon=False, fontsize=6)
    _psnr_along(fig.add_subplot(grid[1, -1], sharex=ax), tr, first.psnr_blurry)
    fig.suptitle(f"Algorithm 1, diffraction-limited blur ({first.case}, image {image})", y=1.12)
    return fig


def plot_zernike_cases(metrics: pd.DataFrame, images: pd.DataFrame):
    """P Fig. 14: every image and noise level: x̄, y, x̂ and ĥ per initialisation, with h̄ and
    the initial kernels; one row per case (σ_y) and image."""
    runs = _runs(images, metrics).sort_values(["sigma_y", "image"], ascending=[False, True])
    names = list(dict.fromkeys(runs.init))
    keys = list(dict.fromkeys(zip(runs.case, runs.image)))
    ncol = 3 + 3 * len(names)
    fig, axes = plt.subplots(len(keys), ncol, figsize=(0.95 * ncol, 1.25 * len(keys)), squeeze=False)
    for i, (case, img) in enumerate(keys):
        g = runs[(runs.case == case) & (runs.image == img)].set_index("init")
        r0 = g.iloc[0]
        _show(axes[i, 0], _arr(r0, "sharp"), "x̄" if i == 0 else None)
        _show(axes[i, 1], _arr(r0, "blurry"), "y" if i == 0 else None)
        _kernel(axes[i, 2], _arr(r0, "h_true"), "h̄" if i == 0 else None)
        axes[i, 0].set_ylabel(f"σ_y={r0.sigma_y:g}\nimage {img}", fontsize=7)
        for j, name in enumerate(names):
            r = g.loc[name]
            c = 3 + 3 * j
            _kernel(axes[i, c], _arr(r, "h_init"), f"h_init ({name})" if i == 0 else None)
            head = lambda what, name=name, i=i: f"{what} ({name})\n" if i == 0 else ""  # noqa: E731
            _show(axes[i, c + 1], _arr(r, "estimate"))
            axes[i, c + 1].set_title(f"{head('x̂')}{r.psnr:.1f} dB", fontsize=6)
            _kernel(axes[i, c + 2], _arr(r, "h_hat"), None)
            axes[i, c + 2].set_title(f"{head('ĥ')}KE {r.kernel_error:.2f}" + (" ⊘" if r.no_blur else ""), fontsize=6)
    fig.suptitle(
        "Algorithm 1 on diffraction PSFs: x̂ and ĥ from each initialisation (⊘: collapsed to the Airy pattern)", y=1.0
    )
    fig.tight_layout()
    return fig


def _kernel_strip(trajectory: pd.DataFrame, run: int, n_show: int) -> list[tuple[int, np.ndarray]]:
    tr = trajectory[trajectory.run == run].sort_values("iteration")
    its = tr.iteration.to_numpy()
    pick = np.unique(np.linspace(0, len(its) - 1, min(n_show, len(its))).round().astype(int))
    return [(int(its[i]), _arr(tr.iloc[i], "kernel")) for i in pick]


def plot_simplex_initialisations(
    metrics: pd.DataFrame, images: pd.DataFrame, trajectory: pd.DataFrame, n_images: int = 2, n_show: int = 7
):
    """P Fig. 12: for a few images and each initialisation, y, the kernel along the iterations,
    x̂ and, at the end, h̄ and x̄ (large = uniform init first, then small = Gaussian)."""
    runs = _runs(images, metrics)
    shown = sorted(runs.image.unique())[:n_images]
    names = list(dict.fromkeys(runs.init))
    rows = [(img, n) for n in names for img in shown]
    ncol = 1 + n_show + 3
    fig, axes = plt.subplots(len(rows), ncol, figsize=(0.95 * ncol, 1.2 * len(rows)), squeeze=False)
    for i, (img, name) in enumerate(rows):
        r = runs[(runs.image == img) & (runs.init == name)].iloc[0]
        _show(axes[i, 0], _arr(r, "blurry"), "y" if i == 0 else None)
        axes[i, 0].set_ylabel(f"{name} init\nimage {img}", fontsize=7)
        strip = _kernel_strip(trajectory, int(r.run), n_show)
        for j in range(n_show):
            ax = axes[i, 1 + j]
            if j < len(strip):
                it, h = strip[j]
                _kernel(ax, h, None)
                ax.set_title(f"k = {it}", fontsize=6)
            else:
                ax.axis("off")
        _show(axes[i, 1 + n_show], _arr(r, "estimate"))
        axes[i, 1 + n_show].set_title(f"x̂ {r.psnr:.1f} dB\nMNC {r.mnc:.2f}", fontsize=6)
        _kernel(axes[i, 2 + n_show], _arr(r, "h_true"), "h̄")
        _show(axes[i, 3 + n_show], _arr(r, "sharp"), "x̄")
    fig.suptitle(
        "Algorithm 1 with simplex kernels: the kernel along the iterations from the "
        "uniform (large) and Gaussian σ = 1.5 (small) initialisations",
        y=1.0,
    )
    fig.tight_layout()
    return fig


def plot_simplex_cases(metrics: pd.DataFrame, images: pd.DataFrame, init: str = "large"):
    """P Fig. 15: for every image and true kernel, from the uniform initialisation: x̄, h̄, y, x̂, ĥ (rows)."""
    runs = _runs(images, metrics)
    runs = runs[runs.init == init].sort_values("image")
    labels = ["x̄", "h̄", "y", "x̂", "ĥ"]
    fig, axes = plt.subplots(len(labels), len(runs), figsize=(1.2 * len(runs) + 0.4, 1.15 * len(labels)), squeeze=False)
    for j, (_, r) in enumerate(runs.iterrows()):
        _show(axes[0, j], _arr(r, "sharp"))
        _kernel(axes[1, j], _arr(r, "h_true"), None)
        _show(axes[2, j], _arr(r, "blurry"), f"{r.psnr_blurry:.1f} dB")
        _show(axes[3, j], _arr(r, "estimate"), f"{r.psnr:.1f} dB")
        _kernel(axes[4, j], _arr(r, "h_hat"), f"MNC {r.mnc:.2f}")
    for i, lab in enumerate(labels):
        axes[i, 0].set_ylabel(lab)
    fig.suptitle(
        f"Algorithm 1 with simplex kernels, {init} (uniform) initialisation, σ_y = {runs.sigma_y.iloc[0]:g}", y=1.0
    )
    fig.tight_layout()
    return fig


def _image(row, col: str) -> np.ndarray:
    """An image of the images table, grey (H, W) or colour (H, W, 3) clipped to [0, 1]."""
    a = np.asarray(row[col], dtype=np.float32)
    h, w = int(row.height), int(row.width)
    c = a.size // (h * w)
    img = a.reshape(c, h, w)
    return img[0] if c == 1 else np.clip(img.transpose(1, 2, 0), 0.0, 1.0)


def plot_kohler(
    metrics: pd.DataFrame, images: pd.DataFrame, trajectory: pd.DataFrame, n_show: int = 8, title: str | None = None
):
    """P Fig. 13: blurry images and true kernels (top), deblurred images and estimated kernels
    (middle), the estimated kernel along the iterations, then the kernel error and the PSNR of the
    image iterate along the iterations (dashed: the start's kernel error and y's PSNR). Grey or colour images;
    without ground-truth kernels (real shots, kohler2012-kernels absent) h̄ is left blank and
    no MNC is shown."""
    runs = _runs(images, metrics).sort_values("image")
    n = len(runs)
    fig = plt.figure(figsize=(max(2.6 * n, 0.8 * n_show), 3.5 + 0.85 * n + 1.8))
    top, bottom, curves = fig.subfigures(3, 1, height_ratios=[3.5, 0.85 * n, 1.8])
    axes = top.subplots(2, 2 * n, gridspec_kw={"width_ratios": [2, 1] * n})
    for j, (_, r) in enumerate(runs.iterrows()):
        _show(
            axes[0, 2 * j],
            _image(r, "blurry"),
            f"y: {r.source}\nPSNR {r.psnr_blurry:.1f} dB (aligned {r.psnr_blurry_aligned:.1f})",
        )
        h_true = _arr(r, "h_true")
        if np.isfinite(h_true).all():
            _kernel(axes[0, 2 * j + 1], h_true, "h̄")
        else:
            axes[0, 2 * j + 1].axis("off")
            axes[0, 2 * j + 1].set_title("h̄ unknown", fontsize=7)
        _show(
            axes[1, 2 * j],
            _image(r, "estimate"),
            f"x̂: PSNR {r.psnr:.1f} dB (aligned {r.psnr_aligned:.1f})\nSSIM {r.ssim:.2f}",
        )
        _kernel(axes[1, 2 * j + 1], _arr(r, "h_hat"), f"ĥ: MNC {r.mnc:.2f}" if np.isfinite(r.mnc) else "ĥ")
    strip_axes = bottom.subplots(n, n_show, squeeze=False)
    for i, (_, r) in enumerate(runs.iterrows()):
        strip = _kernel_strip(trajectory, int(r.run), n_show)
        for j in range(n_show):
            ax = strip_axes[i, j]
            if j < len(strip):
                it, h = strip[j]
                _kernel(ax, h, f"k = {it}" if i == 0 else None)
            else:
                ax.axis("off")
        strip_axes[i, 0].set_ylabel(f"image {int(r.image)}", fontsize=7)
    ke_ax, psnr_ax = curves.subplots(1, 2)
    # along the iterations, per image, with the start's kernel error and y's PSNR dashed; a real shot
    # without its ground-truth kernel (or sharp frame) records neither, and its panel says so
    for ax, col, ref, label in (
        (ke_ax, "kernel_error", None, "kernel error"),
        (psnr_ax, "psnr", "psnr_blurry", "PSNR of x (dB)"),
    ):
        if col not in trajectory or not trajectory[col].notna().any():
            ax.axis("off")
            ax.text(
                0.5, 0.5, f"no {label}: no ground truth", ha="center", va="center", fontsize=7, transform=ax.transAxes
            )
            continue
        for i, (_, r) in enumerate(runs.iterrows()):
            g = trajectory[trajectory.run == r.run]
            ax.plot(g.iteration, g[col], "-", lw=1, color=f"C{i}", label=f"image {int(r.image)}")
            ax.axhline(g[col].iloc[0] if ref is None else r[ref], color=f"C{i}", lw=0.5, ls="--")
        ax.set(xlabel="iteration k", ylabel=label)
        ax.legend(frameon=False, fontsize=6)
    top.suptitle(
        title or "Algorithm 2 (Douglas–Rachford, Tweedie denoiser) on photographs blurred by camera-shake kernels",
        fontsize=8,
        y=1.06,
    )  # above the panels' two-line titles
    return fig


def deblur_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per case and initialisation: medians of PSNR, SSIM, kernel error, MNC (final and initial),
    distance to the no-blur kernel, and the no-blur rate."""
    cols = [
        "psnr",
        "psnr_blurry",
        "psnr_aligned",
        "psnr_blurry_aligned",
        "ssim",
        "ssim_blurry",
        "kernel_error",
        "kernel_error_init",
        "mnc",
        "mnc_init",
        "collapse_distance",
    ]
    cols = [c for c in cols if c in metrics]
    g = metrics.groupby(["case", "method", "sigma_y", "init"], sort=False)
    out = g[cols].median().add_prefix("median ")
    out.insert(0, "runs", g.size())
    out["no-blur rate"] = g.no_blur.mean()
    return out.reset_index()
