"""DRUNet as the denoiser of Algorithm 2 (P Fig. 13) and the Köhler case at paper scale.

The released DRUNet weights (32 M parameters) and the Köhler benchmark cannot be downloaded
here: a DRUNet of tiny widths is saved as a state dict and served on the loopback HTTP server
of tests/test_downloads.py under the drunet-color catalogue entry (sha256 pinned), then
loaded and run as the workflow does; the deblur rule runs on a fake Köhler tree laid out as
the benchmark's archives unpack (tests/test_datasets.py).
"""

from __future__ import annotations

import copy
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import REPO
from test_downloads import server  # noqa: F401 - the loopback HTTP server fixture

from prior_landscape.inverse.algorithms import AlternatingSettings, algorithm2
from prior_landscape.inverse.denoisers import DRUNetDenoiser, drunet_channels, drunet_from_config, load_drunet
from prior_landscape.inverse.kernels import SimplexKernel, simplex_initialisation
from prior_landscape.io.downloads import ensure_resource, load_catalogue, resource_location, resource_outputs
from prior_landscape.runs import RunOptions

CATALOGUE = load_catalogue()
TINY_NC = [8, 16, 32, 64]


def _tiny_drunet_file(path: Path, channels: int = 3, seed: int = 0) -> Path:
    from deepinv.models import DRUNet

    torch.manual_seed(seed)
    net = DRUNet(in_channels=channels, out_channels=channels, nc=TINY_NC, pretrained=None)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("drunet")
    return {
        "color": _tiny_drunet_file(folder / "color.pth"),
        "color-other": _tiny_drunet_file(folder / "color-other.pth", seed=1),
        "gray": _tiny_drunet_file(folder / "gray.pth", channels=1),
    }


def _served(server, rid: str, data: bytes) -> dict:  # noqa: F811
    entry = copy.deepcopy(CATALOGUE[rid])
    name = entry["files"][0]["filename"]
    server.state.files[name] = data
    entry["files"] = [{"filename": name, "url": server.url(name), "sha256": hashlib.sha256(data).hexdigest()}]
    return entry


def test_served_weights_load_and_denoise_with_padding(server, tiny_weights, tmp_path):  # noqa: F811
    data = tiny_weights["color"].read_bytes()
    entry = _served(server, "drunet-color", data)
    path = ensure_resource(entry, tmp_path / "resources", lock_file=None, retries=1, backoff=0.01, timeout=5)
    assert path == resource_location(CATALOGUE["drunet-color"], tmp_path / "resources") and path.read_bytes() == data

    net = load_drunet(path, nc=TINY_NC)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert drunet_channels(net) == 3 and net.weights_sha256 == hashlib.sha256(data).hexdigest()
    D = DRUNetDenoiser(net, 0.05)
    assert D.sigma == 0.05 and net.weights_sha256 in D.fingerprint()

    x = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = D(x)
    assert got.shape == x.shape and got.dtype == torch.float64
    with torch.no_grad():  # 20 → 24: reflect padding at the bottom and right, then cropped back
        want = net(F.pad(x.float(), (0, 4, 0, 4), mode="reflect"), 0.05)[..., :20, :20]
    torch.testing.assert_close(got, want.double())
    assert not torch.allclose(got, x)

    # a grey image through the colour network: replicated on 3 channels, outputs averaged
    g = x[:, :1]
    with torch.no_grad():
        want = net(F.pad(g.float().expand(1, 3, 20, 20), (0, 4, 0, 4), mode="reflect"), 0.05)[..., :20, :20]
    torch.testing.assert_close(D(g), want.mean(1, keepdim=True).double())
    # a colour image through a grey network: channel by channel
    grey = load_drunet(tiny_weights["gray"], channels=1, nc=TINY_NC)
    Dg = DRUNetDenoiser(grey, 0.05)
    torch.testing.assert_close(Dg(x)[:, 1:2], Dg(x[:, 1:2]))


def test_weights_that_do_not_fit_are_named(tiny_weights, tmp_path):
    path = tiny_weights["color"]
    with pytest.raises(ValueError, match=rf"{path.name}.*do not fit DRUNet\(in_channels=3.*nc=\[64, 128, 256, 512\]"):
        load_drunet(path)  # the released widths
    with pytest.raises(ValueError, match=rf"{path.name}.*do not fit DRUNet\(in_channels=1"):
        load_drunet(path, channels=1, nc=TINY_NC)
    # as a configuration entry names it: the error starts with the entry's place in the configuration
    key = "benchmark.methods.p-alg2.denoiser"
    fit = rf"^{re.escape(key)}: the DRUNet weights .*{path.name} do not fit .*in_channels=1"
    with pytest.raises(ValueError, match=fit):
        drunet_from_config(path, {"kind": "drunet", "resource": "drunet-color", "channels": 1, "nc": TINY_NC}, key)
    net = drunet_from_config(path, {"kind": "drunet", "resource": "drunet-color", "channels": 3, "nc": TINY_NC}, key)
    assert drunet_channels(net) == 3 and net.weights_path == str(path)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"stand-in")
    with pytest.raises(ValueError, match="junk.pth could not be read as a state dict"):
        load_drunet(junk, nc=TINY_NC)
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        load_drunet(tmp_path / "absent.pth", nc=TINY_NC)


def test_resumed_run_with_other_weights_starts_afresh(tiny_weights, tmp_path, caplog):
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    y = torch.rand(1, 3, 16, 16, generator=g, dtype=torch.float64)
    model = SimplexKernel(5)
    opts = RunOptions(state_path=tmp_path / "state.pt", checkpoint_every=1)

    def run(D, n_iter):
        return algorithm2(
            y,
            model,
            theta0,
            D,
            AlternatingSettings(0.01, n_iter=n_iter, n_inner=1, gamma_x=1.0, gamma_theta=0.01),
            options=opts,
        )

    theta0 = simplex_initialisation(5, "large")
    D = DRUNetDenoiser(load_drunet(tiny_weights["color"], nc=TINY_NC), 0.02)
    assert run(D, 2).resumed_from == 0
    assert run(D, 3).resumed_from == 2  # same weights: resumed
    other = DRUNetDenoiser(load_drunet(tiny_weights["color-other"], nc=TINY_NC), 0.02)
    with caplog.at_level("WARNING", logger="prior_landscape.runs"):
        fresh = run(other, 4)
    assert fresh.resumed_from == 0 and "another run" in caplog.text  # other weights: the checkpoint is not theirs


# ================================================ the Köhler rule at paper scale, on tiny stand-ins
SHOTS = [[1, 1], [2, 6], [3, 5]]
CROP, K = 48, 7


def _kohler_tree(res: Path) -> dict:
    """A fake Köhler benchmark (56×60 shots, 3 sharp frames each) where the download rule puts it;
    returns the blurry PNGs by shot."""
    from PIL import Image

    loc = resource_location(CATALOGUE["kohler2012"], res)
    for path, _ in resource_outputs(CATALOGUE["kohler2012"], res):  # every unpacked folder, as after download
        path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    blurry = {}
    for i, t in SHOTS:
        base = rng.random((14, 15, 3))
        sharp = np.kron(base, np.ones((4, 4, 1)))  # blocky 56×60 scene
        frames = loc / f"GroundTruth_pngs_Image{i}" / f"Image{i}" / f"Kernel{t}"
        frames.mkdir(parents=True)
        for f in (1, 2, 3):
            shifted = np.roll(sharp, f - 2, axis=1)
            Image.fromarray((255 * shifted).round().astype(np.uint8)).save(frames / f"GroundTruth{i}_{t}_{f}.png")
        smeared = sum(np.roll(sharp, s, axis=1) for s in range(-2, 3)) / 5  # horizontal shake
        arr = (255 * smeared).round().astype(np.uint8)
        Image.fromarray(arr).save(loc / "BlurryImages" / f"Blurry{i}_{t}.png")
        blurry[(i, t)] = arr
    return blurry


def _place_kernels(res: Path) -> None:
    from PIL import Image

    folder = resource_location(CATALOGUE["kohler2012-kernels"], res)
    folder.mkdir(parents=True)
    for t in range(1, 13):
        k = np.zeros((5, 5 + 2 * (t % 2)), np.uint8)  # sizes differ between shots
        k[2, :] = 50
        Image.fromarray(k).save(folder / f"kernel{t:02d}.png")


def _kohler_config(work: Path) -> Path:
    cfg = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    cfg["device"] = "cpu"
    cfg["results"] = "results"  # the test's own working directory: its paths stay results/…
    cfg["deblur"].update(n_iter=6, n_inner=2, record_every=2, checkpoint_every=2)
    kohler = cfg["deblur"]["kohler"]
    assert kohler["denoiser"]["resource"] == "drunet-color" and kohler["data"]["shots"] == SHOTS
    kohler["denoiser"]["nc"] = TINY_NC
    kohler["data"]["crop"] = CROP
    kohler.update(kernel_size=K, gamma_theta=0.01)
    path = work / "paper-kohler.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    return path


def _run(work: Path, config: Path, *targets: str) -> str:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "-d",
            str(work),
            "--configfile",
            str(config),
            "--replace-workflow-config",
            "--cores",
            "2",
            *targets,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-8000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_kohler_case_runs_drunet_on_real_shots(tmp_path):
    from prior_landscape.io.artefacts import read_table

    work = tmp_path / "work"
    res = work / "resources"
    blurry = _kohler_tree(res)
    weights = resource_location(CATALOGUE["drunet-color"], res)
    _tiny_drunet_file(weights)
    config = _kohler_config(work)
    targets = ["results/deblur/kohler/metrics.parquet", "results/figures/fig13.png"]
    log = _run(work, config, *targets)
    assert "download_" not in log and "import_pretrained_prior" not in log  # no prior: DRUNet only
    assert (work / targets[1]).stat().st_size > 0

    metrics = read_table(work / targets[0])
    assert list(metrics.source) == ["kohler-1-1", "kohler-2-6", "kohler-3-5"]
    assert set(metrics.method) == {"douglas_rachford"} and set(metrics.init) == {"large"}
    assert np.isfinite(metrics[["psnr", "ssim", "psnr_blurry", "psnr_denoised", "collapse_distance"]]).all().all()
    assert metrics[["kernel_error", "mnc", "kernel_error_init", "collapse_distance_true"]].isna().all().all()
    images = read_table(work / "results/deblur/kohler/images.parquet")
    top, left = (56 - CROP) // 2, (60 - CROP) // 2
    for (_, row), shot in zip(images.iterrows(), SHOTS):
        # y is the real blurry shot, as recorded: no synthetic blur, no added noise
        want = blurry[tuple(shot)][top : top + CROP, left : left + CROP].transpose(2, 0, 1) / 255.0
        np.testing.assert_allclose(row.blurry, want.reshape(-1), atol=1e-6)
        assert (row.height, row.width) == (CROP, CROP) and np.isnan(row.h_true).all()
    # the paper configuration shards the case by shot (shards.deblur_runs): one job and log per shot
    logs = sorted((work / "results/logs/deblur_runs").glob("kohler.*-of-3.log"))
    assert [p.name for p in logs] == [f"kohler.{i}-of-3.log" for i in range(3)]
    for shard_log in logs:
        run_log = shard_log.read_text()
        assert "denoiser: DRUNet" in run_log and "ground-truth kernels: none" in run_log
    assert not list((work / "results/deblur/kohler").glob("state*.pt"))

    # the manual kernels resource put in place: an input now, so the case reruns with kernel metrics
    _place_kernels(res)
    _run(work, config, targets[0])
    metrics = read_table(work / targets[0])
    assert np.isfinite(metrics[["kernel_error", "mnc", "kernel_error_init", "psnr"]]).all().all()
    for i in range(3):  # each shard's one shot, its kernel now known
        assert "ground-truth kernels: 1 of 1" in (work / f"results/logs/deblur_runs/kohler.{i}-of-3.log").read_text()
