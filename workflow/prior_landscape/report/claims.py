"""The claims table: each of P's findings, what this run measured, and a verdict from a stated rule.

Every row is computed from the run's artefacts by one small function below, so the README and
the report never state a finding the run did not measure. A verdict is ``reproduced`` when the
rule's strong condition holds, ``partly`` when only its weak condition holds, ``not
reproduced`` otherwise, and ``not run`` when the configuration computed nothing for it. The
thresholds are stated in each row (``rule``) and in :data:`RULES`; they are fixed here, not
tuned to the outcome.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["claims_table", "RULES"]

#: (strong, weak) shares for the "most images" findings
MOST, SOME = 0.75, 0.5
RULES = {
    "most": f"reproduced if the share is ≥ {MOST:.0%} in every group, partly if ≥ {SOME:.0%} overall",
    "distance": "reproduced if the median relative distance of natural starts is < 10 % and ≥ half of them "
    "reached a critical point (‖∇q‖ ratio ≤ tol); partly if only one of the two holds",
    "drop": "reproduced if the median q drop from natural starts is ≥ 3× that from white noise, partly if ≥ 1×",
    "dimension": "reproduced if every point's intrinsic dimension is ≤ 20 % of d, partly if the median is",
    "large": "reproduced if, for the large start, the kernel error falls in most (> 50 %) of the runs and x̂ beats y "
    "in aligned PSNR in most; partly if one of the two holds",
    "collapse": f"reproduced if ≥ {MOST:.0%} of the small-start runs end at the no-blur kernel, partly if ≥ {SOME:.0%}",
}


def _verdict(strong: bool, weak: bool) -> str:
    return "reproduced" if strong else ("partly" if weak else "not reproduced")


def _row(claim, figure, measured, rule, verdict):
    return {"P's finding": claim, "P": figure, "measured": measured, "rule": rule, "verdict": verdict}


def _share_rows(shares: pd.Series) -> tuple[str, str]:
    text = "; ".join(f"{k}: {v:.0%}" for k, v in shares.items())
    return text, _verdict(bool((shares >= MOST).all()), bool(shares.mean() >= SOME))


def sweep_claims(sweeps: pd.DataFrame, natural: list[str], digits: list[str]) -> list[dict]:
    """Fig. 7: blur lowers q for natural images; Fig. 8: it raises q for binary digits."""
    rows = []
    for priors, sign, claim, fig in ((natural, -1, "blur raises the likelihood of natural images", "§2.3, Fig. 7"),
                                     (digits, 1, "…but lowers that of binary digits", "Fig. 8")):  # fmt: skip
        df = sweeps[sweeps.prior.isin(priors)]
        if df.empty:
            rows.append(_row(claim, fig, "", RULES["most"], "not run"))
            continue
        wide = df.pivot_table(index=["prior", "family", "image_id"], columns="theta", values="q")
        change = sign * (wide.iloc[:, -1] - wide.iloc[:, 0])
        shares = (change > 0).groupby(level=["prior", "family"]).mean()
        shares.index = [f"{p}/{f}" for p, f in shares.index]
        text, verdict = _share_rows(shares)
        what = "q(h_θmax ⋆ x) < q(x)" if sign < 0 else "q(h_θmax ⋆ x) > q(x)"
        rows.append(_row(claim, fig, f"share of images with {what}: {text}", RULES["most"], verdict))
    return rows


def critical_point_claims(summary: pd.DataFrame) -> list[dict]:
    """Figs. 1–3: critical points a few percent from their starts; q drops far more from natural images."""
    if summary.empty:
        return [_row("descent on q ends a few percent from its start", "Figs. 1–3", "", RULES["distance"], "not run")]
    rows = []
    for prior, s in summary.groupby("prior", sort=False):
        natural = s[s.group != "white noise"]
        dist, reached = natural.relative_distance.median(), natural.converged.mean()
        measured = (f"{prior}: median ‖x − x̄‖/‖x̄‖ {dist:.1%} (natural starts), "
                    f"{natural.converged.sum()}/{len(natural)} reached a critical point")  # fmt: skip
        rows.append(
            _row(
                "descent on q ends at a critical point a few percent from its start",
                "Figs. 1, 3",
                measured,
                RULES["distance"],
                _verdict(dist < 0.1 and reached >= 0.5, dist < 0.1 or reached >= 0.5),
            )
        )
        noise = s[s.group == "white noise"].q_drop.median()
        drop = natural.q_drop.median()
        ratio = drop / noise if noise > 0 else np.inf
        rows.append(_row("q drops far more from natural images than from noise", "Fig. 3",
                         f"{prior}: median q drop {drop:.0f} (natural) vs {noise:.0f} nats (noise)", RULES["drop"],
                         _verdict(ratio >= 3, ratio >= 1)))  # fmt: skip
    return rows


def hessian_claims(spectra: pd.DataFrame) -> list[dict]:
    """Fig. 4: low intrinsic dimension at critical points."""
    if spectra.empty:
        return [_row("low intrinsic dimension at critical points", "Fig. 4", "", RULES["dimension"], "not run")]
    rows = []
    for prior, s in spectra.groupby("prior", sort=False):
        per = s.groupby("point").agg(dim=("intrinsic_dimension", "first"), d=("index", "size"))
        frac = per.dim / per.d
        measured = f"{prior}: {', '.join(map(str, per.dim))} of d = {int(per.d.iloc[0])}"
        rows.append(
            _row(
                "low intrinsic dimension at critical points",
                "Fig. 4",
                measured,
                RULES["dimension"],
                _verdict(bool((frac <= 0.2).all()), bool(frac.median() <= 0.2)),
            )
        )
    return rows


def _local_min_at_bar(g: pd.DataFrame) -> bool:
    th, ell = g.theta.to_numpy(), g.ell.where(np.isfinite(g.ell), np.inf).to_numpy()
    i = int(np.argmin(np.abs(th - g.theta_bar.iloc[0])))
    return all(ell[i] < ell[j] for j in (i - 1, i + 1) if 0 <= j < len(ell))


def profile_claims(noiseless: pd.DataFrame, noisy: pd.DataFrame) -> list[dict]:
    """Fig. 9: θ = 0 minimal for data images, a local minimum at θ̄ for critical points; Fig. 10: noise
    erases it — for each prior that was profiled (its rows named ``<prior>: …``)."""
    if noiseless.empty:
        return [_row("noiseless profile: no blur is optimal for data images", "Fig. 9", "", RULES["most"], "not run")]
    if "prior" not in noiseless:
        return _profile_claims_of_one(noiseless, noisy)
    rows = []
    for prior, own in noiseless.groupby("prior", sort=False):
        theirs = noisy[noisy.prior == prior] if "prior" in noisy else noisy
        for row in _profile_claims_of_one(own, theirs):
            rows.append({**row, "measured": f"{prior}: {row['measured']}"})
    return rows


def _profile_claims_of_one(noiseless: pd.DataFrame, noisy: pd.DataFrame) -> list[dict]:
    rows = []
    keys = ["family", "image"]
    data = noiseless[noiseless.x_bar == "dataset"]
    at0 = data.groupby(keys).apply(lambda g: g.theta.loc[g.ell.idxmin()] == g.theta.min()).groupby("family").mean()
    text, verdict = _share_rows(at0)
    rows.append(
        _row(
            "noiseless profile: no blur is optimal for data images",
            "Fig. 9 left",
            f"share with argmin at θ = 0: {text}",
            RULES["most"],
            verdict,
        )
    )
    crit = noiseless[noiseless.x_bar == "critical point"]
    local = crit.groupby(keys).apply(_local_min_at_bar).groupby("family").mean()
    text, verdict = _share_rows(local)
    rows.append(
        _row(
            "…a local minimum at θ̄ for critical points",
            "Fig. 9 right",
            f"share with a local minimum at θ̄: {text}",
            RULES["most"],
            verdict,
        )
    )
    if not noisy.empty:
        top = noisy[(noisy.x_bar == "critical point") & (noisy.sigma_y == noisy.sigma_y.max())]
        fades = 1 - top.groupby(keys).apply(_local_min_at_bar).groupby("family").mean()
        unconverged = int((~noisy.converged).sum()) if "converged" in noisy else 0
        text, verdict = _share_rows(fades)
        rows.append(
            _row(
                "with noise the minimum at θ̄ fades",
                "Fig. 10",
                f"σ_y = {top.sigma_y.max():g}, share without a local minimum at θ̄: {text}; "
                f"{unconverged} profile point(s) not minimised to tolerance",
                RULES["most"],
                verdict,
            )
        )
    return rows


def deblur_claims(metrics: pd.DataFrame) -> list[dict]:
    """Figs. 11–12: the large initialisation recovers, the small one collapses to no blur."""
    rows = []
    for family, m in metrics[metrics.method == "proximal_gradient"].groupby("family", sort=False):
        large, small = m[m.init == "large"], m[m.init != "large"]
        ke_down = (large.kernel_error < large.kernel_error_init).mean()
        better = (large.psnr_aligned > large.psnr_blurry_aligned).mean()
        rows.append(_row(f"Algorithm 1 ({family}): the large initialisation gives a satisfactory kernel",
                         "Figs. 11, 12", f"kernel error lower than at the start in {ke_down:.0%} of runs "
                         f"(median {large.kernel_error_init.median():.3f} → {large.kernel_error.median():.3f}); "
                         f"x̂ better than y in {better:.0%} (median {large.psnr_blurry_aligned.median():.1f} → "
                         f"{large.psnr_aligned.median():.1f} dB)", RULES["large"],
                         _verdict(ke_down > 0.5 and better > 0.5, ke_down > 0.5 or better > 0.5)))  # fmt: skip
        if len(small):
            rate = small.no_blur.mean()
            rows.append(
                _row(
                    f"Algorithm 1 ({family}): the small initialisation gives the no-blur solution",
                    "Figs. 11, 12",
                    f"no-blur rate {rate:.0%} of {len(small)} runs",
                    RULES["collapse"],
                    _verdict(rate >= MOST, rate >= SOME),
                )
            )
    return rows


def benchmark_claims(runs: pd.DataFrame, methods: dict) -> list[dict]:
    """The benchmark's premise and P's claim in it: the prior helps with the true kernel (≥ 3 dB over y, the
    demo's bar), and MAP from the small initialisation has the highest no-blur rate of the blind methods."""
    from prior_landscape.methods import METHODS

    premise = "with the true kernel the prior deblurs (≥ 3 dB over y)"
    if runs.empty:
        return [_row(premise, "demo premise", "", "", "not run")]
    by = {entry["method"]: name for name, entry in methods.items()}
    rows = []
    if "p-image-step" in by and "blurry" in by:
        psnr = runs.groupby(["method", "case"]).psnr.mean().unstack(0)
        gain = float((psnr[by["p-image-step"]] - psnr[by["blurry"]]).median())
        rows.append(_row(premise, "demo premise", f"P's image step with h̄: median gain {gain:+.1f} dB over y",
                         "reproduced if ≥ 3 dB, partly if > 0", _verdict(gain >= 3, gain > 0)))  # fmt: skip
    blind = [n for n, e in methods.items() if not METHODS[e["method"]].reference]
    ceiling = [n for n, e in methods.items() if METHODS[e["method"]].reference and e["method"] != "blurry"]
    medians = runs.groupby(["method", "case"]).psnr.mean().groupby("method").median()
    ran = [n for n in blind if n in medians]
    if ran and any(n in medians for n in ceiling):
        best = medians[[n for n in ceiling if n in medians]].idxmax()
        top = medians[ran].idxmax()
        rows.append(_row("deblurring with the true kernel beats every blind method", "benchmark premise",
                         f"median PSNR with h̄: {best} {medians[best]:.1f} dB; best blind: {top} "
                         f"{medians[top]:.1f} dB", "reproduced if the best true-kernel method's median PSNR is "
                         "above every blind method's", _verdict(medians[best] > medians[top], False)))  # fmt: skip
    small = [n for n, e in methods.items() if e["method"] == "p-algorithm1" and e.get("init") == "small"]
    rates = runs[runs.method.isin(blind)].groupby("method").no_blur.mean()
    if small and small[0] in rates:
        top = rates.max()
        text = ", ".join(f"{m} {r:.0%}" for m, r in rates.sort_values(ascending=False).items())
        rows.append(_row("MAP from a small initialisation gives the no-blur solution most often", "§5, benchmark",
                         f"no-blur rates: {text}", "reproduced if the small start's rate is the highest and > 0, "
                         "partly if it is the highest (all 0)", _verdict(rates[small[0]] == top and top > 0,
                                                                        rates[small[0]] == top)))  # fmt: skip
    return rows


def claims_table(*, sweeps, natural, digits, critical, spectra, noiseless, noisy, deblur, benchmark=None,
                 methods=None) -> pd.DataFrame:  # fmt: skip
    """Every finding's row (see the functions above); empty frames give "not run" rows."""
    rows = (sweep_claims(sweeps, natural, digits) + critical_point_claims(critical) + hessian_claims(spectra)
            + profile_claims(noiseless, noisy) + deblur_claims(deblur))  # fmt: skip
    if benchmark is not None:
        rows += benchmark_claims(benchmark, methods or {})
    return pd.DataFrame(rows)
