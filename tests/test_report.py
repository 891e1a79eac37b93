"""The report's pieces: Table 1's timings (one job, round-robin, repeats and spread), the tables
in CSV, Markdown and LaTeX, and the report's entries titled from their captions, each figure
with its caption beside it."""

import base64
import re
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO

from prior_landscape.landscape.potential import PotentialSettings
from prior_landscape.landscape.timing import cost_summary, measure_costs
from prior_landscape.report.pages import CaptionError, caption_labels, caption_text, render_caption, write_figure_page
from prior_landscape.report.tables import prior_table, write_table_files

CAPTIONS = sorted(p for p in (REPO / "workflow/report").glob("*.rst") if p.stem != "workflow")
FAST = PotentialSettings(n_probes=1, atol=1e-2, rtol=1e-2, dtype=torch.float64)


class _Counting:
    """A prior whose calls are logged in order (which prior, which evaluation)."""

    def __init__(self, prior, name, calls):
        self.prior, self.name, self.calls = prior, name, calls

    def __getattr__(self, attr):
        return getattr(self.prior, attr)

    def score(self, x, sigma):
        # a model evaluation passes σ_ε as a number; the potential engine a tensor of σ per image
        self.calls.append((self.name, x.shape[0], "model" if isinstance(sigma, float) else "engine"))
        return self.prior.score(x, sigma)


@pytest.fixture(scope="module")
def timed(small_mixture):
    calls = []
    cases = {
        name: (_Counting(small_mixture, name, calls), torch.rand(n, 1, 3, 4, dtype=torch.float64))
        for name, n in (("a", 4), ("b", 2))
    }
    timing = measure_costs(cases, FAST, repeats=4, potential_repeats=3)  # model: 4 repeats, potential: 3
    return timing, calls


def test_every_prior_is_timed_in_turn_with_repeats(timed):
    timing, calls = timed
    counts = timing.groupby(["measurement", "prior"]).size().to_dict()
    assert counts == {("model", "a"): 4, ("model", "b"): 4, ("potential", "a"): 3, ("potential", "b"): 3}
    for _, g in timing.groupby("measurement", sort=False):  # round-robin: a, b, a, b, …
        assert list(g.prior) == ["a", "b"] * (len(g) // 2) and list(g.repeat) == sorted(g.repeat)
    assert (timing.seconds > 0).all() and (timing.s_per_image == timing.seconds / timing.batch_size).all()
    assert set(timing.resolution) == {"3×4×1"} and timing.loc[timing.measurement == "potential", "nfe_mean"].gt(0).all()
    # the timed model evaluations are whole batches, after a warm-up of each prior on its batch
    model_calls = [(name, batch) for name, batch, kind in calls if kind == "model"]
    assert model_calls == [("a", 4), ("b", 2)] * 5
    first_engine = next(i for i, c in enumerate(calls) if c[2] == "engine")
    assert all(c[2] == "model" for c in calls[:first_engine]) and first_engine == 2  # the warm-ups come first


def test_table_1_reports_the_median_and_range_of_the_repeats(timed):
    timing, _ = timed
    summary = cost_summary(timing).set_index(["prior", "measurement"])
    for (prior, what), row in summary.iterrows():
        s = timing[(timing.prior == prior) & (timing.measurement == what)].s_per_image
        assert row["median"] == pytest.approx(s.median()) and row["min"] == s.min() and row["max"] == s.max()
        assert row["q25"] <= row["median"] <= row["q75"] and row["repeats"] == len(s)
    priors = {p: {"kind": "gaussian_mixture", "dataset": "noise", "schedule": {"kind": "ve"}} for p in ("a", "b")}
    tab = prior_table(timing.assign(device="cpu"), priors)
    assert list(tab.prior) == ["a", "b"] and set(tab["repeats (model, potential)"]) == {"4, 3"}
    assert (tab["model eval min (s/image)"] <= tab["model eval median (s/image)"]).all()
    assert (tab["potential eval median (s/image)"] <= tab["potential eval max (s/image)"]).all()


@pytest.mark.parametrize("key", ["repeats", "potential_repeats"])
def test_fewer_than_three_repeats_are_refused_naming_the_key(small_mixture, key):
    cases = {"a": (small_mixture, torch.rand(2, 1, 3, 4, dtype=torch.float64))}
    with pytest.raises(ValueError, match=f"timing.{key} = 2"):
        measure_costs(cases, FAST, **{"repeats": 3, "potential_repeats": 3, key: 2})


def test_a_table_is_written_in_csv_markdown_and_latex(tmp_path):
    table = pd.DataFrame({"prior": ["gmm_natural", "a&b"], "s/image": [1.23456e-5, 0.5], "share (%)": [50.0, 7.0]})
    write_table_files(table, tmp_path / "t.csv", caption="Table 1: cost_of 100% priors")
    assert pd.read_csv(tmp_path / "t.csv").equals(pd.read_csv(tmp_path / "t.csv"))
    back = pd.read_csv(tmp_path / "t.csv")
    assert list(back.prior) == ["gmm_natural", "a&b"] and back["s/image"].iloc[0] == pytest.approx(1.235e-5)
    md = (tmp_path / "t.md").read_text()
    assert md.startswith("Table 1: cost_of 100% priors\n\n| prior") and "| a&b " in md and "1.235e-05" in md
    tex = (tmp_path / "t.tex").read_text()
    assert r"\caption{Table 1: cost\_of 100\% priors}" in tex and r"\label{tab:t}" in tex
    assert r"gmm\_natural" in tex and r"a\&b" in tex and r"share (\%)" in tex
    indexed = table.set_index("prior")  # an index is written as the leading column
    write_table_files(indexed, tmp_path / "i.csv", index=True)
    assert list(pd.read_csv(tmp_path / "i.csv").columns) == ["prior", "s/image", "share (%)"]


def test_every_caption_titles_its_report_entry():
    labels = {p.stem: caption_labels(p.read_text(), "figure", str(p)) for p in CAPTIONS}
    figures = {k: v for k, v in labels.items() if k.startswith("fig")}
    assert {v["figure"] for v in figures.values()} == {f"Fig. {int(k[3:])}" for k in figures}
    titles = [v["title"] for v in labels.values()]
    assert len(set(titles)) == len(titles) and all(8 <= len(t) <= 75 for t in titles), titles
    assert all(t.count("(") == t.count(")") and "{" not in t for t in titles), titles
    assert labels["fig07"]["title"] == "Potential of blurred images relative to the sharp image"
    assert caption_labels((REPO / "workflow/report/tab01.rst").read_text(), "table") == {
        "table": "Table 1",
        "title": "The priors of this run",
    }


@pytest.mark.parametrize("config_file", ["config.yaml", "config/paper.yaml"])
def test_every_caption_renders_every_value_it_names_under_the_shipped_configurations(config_file):
    """A caption's Jinja names configuration keys; one the configuration lacks (a stale key) is an
    error, not a blank in the report — Fig. 10's once named inner.n_steps and inner.momentum."""
    config = yaml.safe_load((REPO / config_file).read_text())
    wildcards = SimpleNamespace(dataset=next(iter(config["benchmark"]["datasets"])))
    for path in CAPTIONS:
        text = caption_text(path.read_text(), config, path.name, wildcards=wildcards)
        assert "{{" not in text and "{%" not in text and text.startswith("**"), path.name
    stale = '**Figure 10 (P §4.2).** At most {{ snakemake.config["posterior"]["inner"]["n_steps"] }} steps.'
    for render in (caption_text, render_caption):
        with pytest.raises(CaptionError, match=r"fig10.rst: the caption names a value .*n_steps"):
            render(stale, config, "fig10.rst")


def test_a_caption_without_a_heading_is_named():
    with pytest.raises(CaptionError, match="fig99.rst: a caption must open with a bold heading"):
        caption_labels("A figure.", source="fig99.rst")
    got = caption_labels("{% set k = 1 %}**Figure 2 (P §2.2).** The potential q (nats) along {{ x }} steps.")
    assert got == {"figure": "Fig. 2", "title": "The potential q along"}
    got = caption_labels("**Table S (Fig. 9).** As for Fig. 9 and Figs. 10–11 with noise. More.", "table")
    assert got == {"table": "Table S", "title": "As for Fig. 9 and Figs. 10–11 with noise"}


def test_a_figure_page_shows_the_figure_with_its_caption_beside_it(tmp_path):
    png = tmp_path / "fig.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n fake")
    caption = render_caption(
        '**Figure 7 (P §2.3).** Potential versus θ over {{ snakemake.config["sweep"]["n_images"] }} crops.',
        {"sweep": {"n_images": 8}},
    )
    assert "<strong>Figure 7 (P §2.3).</strong>" in caption and "over 8 crops" in caption
    write_figure_page(png, tmp_path / "fig.html", {"figure": "Fig. 7", "title": "Potential <versus> θ"}, caption)
    page = (tmp_path / "fig.html").read_text()
    assert "<h1>Fig. 7: Potential &lt;versus&gt; θ</h1>" in page and "over 8 crops" in page
    embedded = re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1)
    assert base64.b64decode(embedded) == png.read_bytes()
    assert page.index('class="figure"') < page.index('class="caption"')  # side by side, the caption second
