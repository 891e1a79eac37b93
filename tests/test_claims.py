"""The claims table's verdict rules, each driven to its three outcomes by constructed artefacts."""

import numpy as np
import pandas as pd
import pytest

from prior_landscape.report.claims import (
    critical_point_claims,
    deblur_claims,
    hessian_claims,
    profile_claims,
    sweep_claims,
)


def _sweep(prior, decreasing_share, n=8, families=("gaussian", "motion")):
    rows = []
    for f in families:
        for i in range(n):
            down = i < round(decreasing_share * n)
            for th, q in ((0.0, 0.0), (5.0, -1.0 if down else 1.0)):
                rows.append({"prior": prior, "family": f, "image_id": i, "theta": th, "q": q})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("share, verdict", [(1.0, "reproduced"), (0.625, "partly"), (0.25, "not reproduced")])
def test_sweep_rule(share, verdict):
    row = sweep_claims(_sweep("nat", share), ["nat"], [])[0]
    assert row["verdict"] == verdict and f"{share:.0%}" in row["measured"]
    assert sweep_claims(_sweep("nat", 1.0), ["nat"], [])[1]["verdict"] == "not run"  # no digit prior
    digits = sweep_claims(_sweep("dig", 1 - share), [], ["dig"])[1]  # digits: q must rise
    assert digits["verdict"] == verdict


def _critical(dist, reached, drop_natural, drop_noise):
    groups = ["training set"] * 4 + ["unrelated images"] * 4 + ["white noise"] * 4
    conv = [i < reached * 8 for i in range(8)] + [False] * 4
    return pd.DataFrame({"prior": "p", "group": groups, "relative_distance": [dist] * 8 + [0.5] * 4,
                         "converged": conv, "q_drop": [drop_natural] * 8 + [drop_noise] * 4})  # fmt: skip


@pytest.mark.parametrize("dist, reached, verdict", [(0.03, 0.75, "reproduced"), (0.03, 0.0, "partly"),
                                                   (0.3, 1.0, "partly"), (0.3, 0.0, "not reproduced")])  # fmt: skip
def test_critical_point_distance_rule(dist, reached, verdict):
    assert critical_point_claims(_critical(dist, reached, 500, 100))[0]["verdict"] == verdict


@pytest.mark.parametrize("ratio, verdict", [(5, "reproduced"), (2, "partly"), (0.5, "not reproduced")])
def test_potential_drop_rule(ratio, verdict):
    assert critical_point_claims(_critical(0.03, 1, 100 * ratio, 100))[1]["verdict"] == verdict


@pytest.mark.parametrize("dims, verdict", [([3, 5, 7], "reproduced"), ([3, 10, 60], "partly"),
                                           ([40, 60, 60], "not reproduced")])  # fmt: skip
def test_intrinsic_dimension_rule(dims, verdict):
    spectra = pd.concat([pd.DataFrame({"prior": "p", "point": i, "index": range(64), "intrinsic_dimension": d})
                         for i, d in enumerate(dims)])  # fmt: skip
    assert hessian_claims(spectra)[0]["verdict"] == verdict


def _profile(x_bar, shape, n=4, sigma=None):
    """Profiles over θ ∈ {0, 1, 2.5, 4} with θ̄ = 2.5: "min0" minimal at 0, "localbar" a local minimum at θ̄."""
    ell = {"min0": [0.0, 1.0, 2.0, 3.0], "localbar": [0.0, 1.0, 0.5, 2.0]}
    rows = [{"family": "gaussian", "x_bar": x_bar, "image": i, "theta": th, "theta_bar": 2.5,
             "ell": ell[shape[i]][j], **({"sigma_y": sigma, "converged": True} if sigma else {})}
            for i in range(n) for j, th in enumerate((0.0, 1.0, 2.5, 4.0))]  # fmt: skip
    return pd.DataFrame(rows)


def test_profile_rules():
    data = _profile("dataset", ["min0"] * 4)
    crit = _profile("critical point", ["localbar"] * 3 + ["min0"])
    noisy = _profile("critical point", ["min0"] * 2 + ["localbar"] * 2, sigma=0.01)
    rows = profile_claims(pd.concat([data, crit]), noisy)
    assert [r["verdict"] for r in rows] == ["reproduced", "reproduced", "partly"]
    assert "75%" in rows[1]["measured"] and "50%" in rows[2]["measured"]
    assert profile_claims(pd.DataFrame(), pd.DataFrame())[0]["verdict"] == "not run"
    # two priors profiled (the demo: the patch prior and the score network): rows for each, never pooled —
    # the same image numbers of another prior would otherwise mix into one profile
    other = [t.assign(prior="net", ell=t.ell[::-1].to_numpy()) for t in (data, crit, noisy)]
    both = profile_claims(
        pd.concat([data.assign(prior="epll"), crit.assign(prior="epll"), other[0], other[1]]),
        pd.concat([noisy.assign(prior="epll"), other[2]]),
    )
    assert [r["measured"].split(":")[0] for r in both] == ["epll"] * 3 + ["net"] * 3
    assert [r["verdict"] for r in both[:3]] == ["reproduced", "reproduced", "partly"]
    assert [r["verdict"] for r in both[3:]] == ["not reproduced", "not reproduced", "reproduced"]


def _runs(ke_down, better, no_blur, n=4):
    ke = [0.05 if i < ke_down * n else 0.2 for i in range(n)]
    psnr = [21.0 if i < better * n else 19.0 for i in range(n)]
    large = pd.DataFrame({"method": "proximal_gradient", "family": "zernike", "init": "large",
                          "kernel_error_init": 0.1, "kernel_error": ke, "psnr_blurry_aligned": 20.0,
                          "psnr_aligned": psnr, "no_blur": False})  # fmt: skip
    small = large.assign(init="small", no_blur=[i < no_blur * n for i in range(n)])
    return pd.concat([large, small], ignore_index=True)


@pytest.mark.parametrize("ke_down, better, verdict", [(0.75, 0.75, "reproduced"), (0.75, 0.5, "partly"),
                                                     (0.5, 0.5, "not reproduced")])  # fmt: skip
def test_large_initialisation_rule(ke_down, better, verdict):
    assert deblur_claims(_runs(ke_down, better, 1.0))[0]["verdict"] == verdict


@pytest.mark.parametrize("rate, verdict", [(1.0, "reproduced"), (0.5, "partly"), (0.25, "not reproduced")])
def test_collapse_rule(rate, verdict):
    row = deblur_claims(_runs(1, 1, rate))[1]
    assert row["verdict"] == verdict and f"{rate:.0%}" in row["measured"]
    assert np.isfinite(rate)


def test_benchmark_rules():
    from prior_landscape.report.claims import benchmark_claims

    methods = {
        "blurry": {"method": "blurry"},
        "oracle": {"method": "p-image-step"},
        "large": {"method": "p-algorithm1", "init": "large"},
        "small": {"method": "p-algorithm1", "init": "small"},
    }
    rows = []
    for case in range(4):
        rows += [{"method": "blurry", "case": case, "psnr": 20.0, "no_blur": False},
                 {"method": "oracle", "case": case, "psnr": 24.0, "no_blur": False},
                 {"method": "large", "case": case, "psnr": 21.0, "no_blur": case == 0},
                 {"method": "small", "case": case, "psnr": 20.0, "no_blur": case < 3}]  # fmt: skip
    premise, ceiling, collapse = benchmark_claims(pd.DataFrame(rows), methods)
    assert premise["verdict"] == "reproduced" and "+4.0 dB" in premise["measured"]
    assert ceiling["verdict"] == "reproduced"
    assert ceiling["measured"] == "median PSNR with h̄: oracle 24.0 dB; best blind: large 21.0 dB"
    assert collapse["verdict"] == "reproduced" and collapse["measured"].startswith("no-blur rates: small 75%")
    swapped = pd.DataFrame(rows).replace({"method": {"large": "small", "small": "large"}})
    assert benchmark_claims(swapped, methods)[2]["verdict"] == "not reproduced"
    # one blind run above the oracle in the median: the ceiling claim fails; the blurry floor never counts
    beaten = pd.DataFrame(rows).assign(psnr=lambda r: r.psnr.where(r.method != "large", 24.5))
    assert benchmark_claims(beaten, methods)[1]["verdict"] == "not reproduced"
    floor_high = pd.DataFrame(rows).assign(psnr=lambda r: r.psnr.where(r.method != "blurry", 30.0))
    assert benchmark_claims(floor_high, methods)[1]["verdict"] == "reproduced"


def test_profile_figures_draw_priors_profiled_on_different_families_and_noise_levels():
    """Figs. 9–10 with the patch prior (two families, two σ_y) beside the score network (one family, one
    σ_y: posterior.by_prior): one row per prior (Fig. 9) or per prior and family (Fig. 10), each panel
    with a curve per noise level that prior was profiled at — an absent level draws nothing."""
    from prior_landscape.report.posterior_figures import plot_noiseless_profiles, plot_noisy_profiles, plt

    def noisy(shape, sigma):
        return _profile("critical point", shape, sigma=sigma)

    patch = [t.assign(prior="epll", family=f) for f in ("gaussian", "airy")
             for t in (noisy(["min0"] * 4, 1e-3), noisy(["localbar"] * 4, 1e-2))]  # fmt: skip
    net = noisy(["localbar"] * 4, 1e-2).assign(prior="net")
    fig = plot_noisy_profiles(pd.concat([*patch, net], ignore_index=True))
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title().split(":")[0] for ax in panels] == ["epll, Gaussian", "epll, Airy disk", "net, Gaussian"]
    assert [len(ax.get_legend_handles_labels()[1]) for ax in panels] == [2, 2, 1]
    plt.close(fig)
    data = _profile("dataset", ["min0"] * 4)
    fig = plot_noiseless_profiles(pd.concat([data.assign(prior="epll"), data.assign(prior="net", family="defocus")]))
    assert len([ax for ax in fig.axes if ax.get_title()]) == 2  # one row per prior, x̄ from the data
    plt.close(fig)
