"""The config schema accepts the shipped configs and names every bad key."""

import copy

import pytest
import yaml
from conftest import REPO

from prior_landscape.config import ConfigError, posterior_settings, theta_grid, validate_config


@pytest.fixture()
def config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_default_config_is_valid(config):
    validate_config(config)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.update(bogus=1), r"<top level>: Additional properties are not allowed \('bogus'"),
        (lambda c: c["sweep"].update(families=["gaussian", "blurry"]), r"sweep\.families\.1: 'blurry' is not one of"),
        (lambda c: c["sweep"]["theta"].update(num=1), r"sweep\.theta\.num: 1 is less than the minimum of 2"),
        (
            lambda c: c["potential"].update(atol=-1e-5),
            r"potential\.atol: -1e-05 is less than or equal to the minimum of 0",
        ),
        (lambda c: c["blur"].update(kernel_size=30), r"blur\.kernel_size: 30 should not be valid"),
        (lambda c: c.update(device="gpu"), r"device: 'gpu' does not match"),
        (
            lambda c: c["priors"]["gmm-natural"].update(rank=0),
            r"priors\.gmm-natural\.rank: 0 is less than the minimum of 1",
        ),
        (
            lambda c: c["priors"]["gmm-natural"].pop("n_components"),
            r"priors\.gmm-natural: 'n_components' is a required property",
        ),
        (
            lambda c: c["priors"]["scorenet-natural"].update(rank=3),
            r"priors\.scorenet-natural: Additional properties are not allowed \('rank'",
        ),
        (
            lambda c: c["priors"]["scorenet-natural"]["training"].update(step=3),
            r"priors\.scorenet-natural\.training: Additional properties",
        ),
        (
            lambda c: c["shards"].update(likelihood_sweep=0),
            r"shards\.likelihood_sweep: 0 is less than the minimum of 1",
        ),
        (
            lambda c: c["shards"].update(likelihood_sweep=2.5),
            r"shards\.likelihood_sweep: 2\.5 is not of type 'integer'",
        ),
        (lambda c: c["shards"].update(sweeps=4), r"shards: Additional properties are not allowed \('sweeps'"),
        (
            lambda c: c["posterior"]["by_prior"]["scorenet-natural"].update(n_images=0),
            r"posterior\.by_prior\.scorenet-natural\.n_images: 0 is less than the minimum of 1",
        ),
        (
            lambda c: c["posterior"]["by_prior"]["scorenet-natural"].update(priors=["gmm-natural"]),
            r"posterior\.by_prior\.scorenet-natural: Additional properties are not allowed \('priors'",
        ),
        (
            lambda c: c["posterior"]["by_prior"]["scorenet-natural"].update(inner={"tol": 2}),
            r"posterior\.by_prior\.scorenet-natural\.inner\.tol: 2 is greater than or equal to the maximum of 1",
        ),
    ],
)
def test_bad_values_are_named(config, edit, message):
    bad = copy.deepcopy(config)
    edit(bad)
    with pytest.raises(ConfigError, match=message):
        validate_config(bad)


def test_kohler_drunet_and_real_data_keys():
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    validate_config(paper)
    kohler = paper["deblur"]["kohler"]
    assert kohler["denoiser"]["kind"] == "drunet" and "prior" not in kohler  # DRUNet: no prior needed
    assert kohler["data"]["shots"] == [[1, 1], [2, 6], [3, 5]]  # P Fig. 13's shots
    for edit, message in [
        (lambda k: k.pop("denoiser"), r"deblur\.kohler: 'prior' is a required property"),
        (lambda k: k.pop("data"), r"deblur\.kohler: 'photographs' is a required property"),
        (lambda k: k["data"].update(shots=[[5, 1]]), r"deblur\.kohler\.data\.shots\.0\.0: 5 is greater than"),
        (lambda k: k["denoiser"].update(channels=2), r"deblur\.kohler\.denoiser\.channels: 2 is not one of"),
        (lambda k: k["denoiser"].update(nc=[8, 16]), r"deblur\.kohler\.denoiser\.nc: \[8, 16\] is too short"),
    ]:
        bad = copy.deepcopy(paper)
        edit(bad["deblur"]["kohler"])
        with pytest.raises(ConfigError, match=message):
            validate_config(bad)


def test_theta_grid_is_the_papers():
    grid = theta_grid({"start": 0, "stop": 5, "num": 11})
    assert grid[0] == 0 and grid[-1] == 5 and len(grid) == 11


def test_real_blur_datasets_take_pairs_instead_of_kernels():
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    datasets = paper["benchmark"]["datasets"]
    assert datasets["bench-realblur-j"]["pairs"]["reader"] == "realblur" and "kernels" not in datasets["bench-kohler"]
    gaussian = [{"name": "g", "generator": "gaussian", "fwhm": 2.0}]
    for edit, message in [
        (
            lambda d: d["bench-realblur-j"].update(kernels=gaussian),
            r"bench-realblur-j\.kernels: not allowed with pairs",
        ),
        (lambda d: d["bench-kohler"].update(images=d["bench-bsd100"]["images"]), r"bench-kohler\.images: not allowed"),
        (lambda d: d["bench-kohler"].update(boundary="whole"), r"bench-kohler\.boundary: not allowed with pairs"),
        (lambda d: d["bench-realblur-j"].pop("pairs"), r"bench-realblur-j: 'kernels' is a required property"),
        (lambda d: d["bench-realblur-j"]["pairs"].update(reader="gopro"), r"pairs\.reader: 'gopro' is not one of"),
        (lambda d: d["bench-kohler"]["pairs"].update(frames="centre"), r"pairs\.frames: 'centre' is not one of"),
        (lambda d: d["bench-kohler"]["pairs"].pop("resource"), r"pairs: 'resource' is a required property"),
    ]:
        bad = copy.deepcopy(paper)
        edit(bad["benchmark"]["datasets"])
        with pytest.raises(ConfigError, match=message):
            validate_config(bad)


def test_a_prior_s_posterior_settings_replace_the_section_s_key_by_key(config):
    """posterior.by_prior: the score network profiles fewer points than the patch prior; nested sections
    merge key by key; a prior without an entry gets the section as it is (without by_prior)."""
    post = config["posterior"]
    post["by_prior"]["scorenet-natural"]["inner"] = {"max_steps": 50}
    net, patch = posterior_settings(post, "scorenet-natural"), posterior_settings(post, "epll-natural")
    assert "by_prior" not in net and "by_prior" not in patch
    assert patch == {k: v for k, v in post.items() if k != "by_prior"}
    assert net["families"] == ["gaussian"] and net["n_images"] == 2 and net["noise_levels"] == [0.01]
    assert net["inner"] == {**post["inner"], "max_steps": 50}  # starts and tol kept
    assert net["theta_bar"] == post["theta_bar"] and net["critical_points"] == post["critical_points"]
