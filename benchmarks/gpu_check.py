"""One GPU check for the paper scale (issue 16): cost and memory of every paper network, on one card.

    python benchmarks/gpu_check.py --device cuda [--out docs/gpu_check/DATE-CARD.json] [--budget-s 420]
    python benchmarks/gpu_check.py --tiny        # the same code paths at toy sizes, on CPU (the test suite)

No download: the paper's architectures are built with random weights, which is enough for cost and
memory (not for a number of ODE steps: see the potential rows). For each network:

* ``model``: one network evaluation (score / denoiser, no gradient), seconds per image at each batch of
  a doubling ladder, stopped by the card's memory, an out-of-memory error or the time per call;
* ``potential_rhs`` (the landscape priors): one right-hand side of the probability-flow ODE with
  P's 4 Hutchinson probes (velocity and 4 vector–Jacobian products), the unit the potential's cost
  is made of: a potential evaluation costs NFE right-hand sides (P Table 1: 8.46 s per ffhq256
  image on a V100; the NFE of trained weights is measured by the timing rule, not here);
* ``hessian`` (the 64² priors, d = 12288): batched JVP chunks of P's column-by-column Hessian (P
  Fig. 4), timed on a few chunks and extrapolated to the 12288 columns (said so), and the
  symmetric eigen-solver / SVD of a 12288² float64 matrix;
* ``algorithm1_iteration``: one iteration of P's Algorithm 1 at 256² (K_x = 100 image steps and a
  kernel step, config/paper.yaml ``deblur``) on the ffhq256 network;
* ``method_step``: one step of each benchmark method at 256² (learned methods: the difference of
  two step counts divided by their difference; classical methods: their whole default run, said so).

Peak memory is ``torch.cuda.max_memory_allocated`` per measurement (not measured on CPU). ``fits``
says whether batch 1 peaks below 90 % of a 16, 40 and 80 GB card; ``batch_for`` extrapolates the
largest batch per card from a linear fit of peak memory against batch. The engine comparison of
``benchmarks/potential_engine.py`` (the demo's priors, P's scheme and the batched peers at equal
tolerance) runs last, on the same device.

It prints a table and writes JSON (rows as in :func:`_row`; the format ``prior-landscape plan``
reads). Everything is written again after each measurement, so a run stopped by its time budget
keeps what it measured; an item that fails is recorded with its error, never silently dropped.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import sys
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
CARDS_GB = (16, 40, 80)
GB = 1e9

# ------------------------------------------------------------------------------------- the networks
# paper: the architectures of config/paper.yaml and P Table 1; tiny: the same classes at toy sizes
SCALES = {
    "paper": dict(
        image=256, small=64, mnist=32, kernel=63, n_inner=100, probes=4, ladder=(1, 2, 4, 8, 16, 32, 64, 128),
        hessian_chunks=(64, 128, 256), hessian_timed_chunks=2, method_steps=(2, 4), method_reps=1, engine_images=16,
    ),
    "tiny": dict(
        image=16, small=8, mnist=8, kernel=5, n_inner=2, probes=2, ladder=(1, 2),
        hessian_chunks=(32,), hessian_timed_chunks=None, method_steps=(2, 4), method_reps=2, engine_images=2,
    ),
}  # fmt: skip


def _score_sde(scale):
    from prior_landscape.priors.ncsnpp_scoresde import FFHQ256_NCSNPP_CONTINUOUS, ScoreSDENCSNpp, ScoreSDENCSNppConfig
    from prior_landscape.priors.pretrained import ScoreSDEPrior

    if scale == "paper":
        cfg = FFHQ256_NCSNPP_CONTINUOUS
    else:
        cfg = ScoreSDENCSNppConfig(image_size=16, nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,))
    return ScoreSDEPrior(ScoreSDENCSNpp(cfg), name="ffhq256")


def _edm(scale, model_class):
    """EDM's NCSN++ (ffhq64, afhq64: VEPrecond) or ADM (imagenet64: EDMPrecond, class-conditional)."""
    from prior_landscape.priors.checkpoints import (
        _DHARIWAL_DEFAULTS,
        _NCSN_FIXED,
        _SONG_DEFAULTS,
        EDMDenoiser,
        EDMNetworkSpec,
        build_edm_network,
    )
    from prior_landscape.priors.pretrained import EDMPrior

    song = model_class == "SongUNet"
    kw = dict(_SONG_DEFAULTS, **_NCSN_FIXED) if song else dict(_DHARIWAL_DEFAULTS, label_dim=1000)
    res = SCALES[scale]["small"]
    if scale == "tiny":
        kw.update(model_channels=32, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4])
        if not song:
            kw["label_dim"] = 10
    kw.update(img_resolution=res, in_channels=3, out_channels=3)
    spec = EDMNetworkSpec(
        precond="ve" if song else "edm", precond_class="", model_class=model_class, model_kwargs=kw,
        state_dict={}, img_resolution=res, img_channels=3, label_dim=kw["label_dim"], sigma_data=0.5,
        sigma_min=0.0, sigma_max=80.0, use_fp16=False,
    )  # fmt: skip
    den = EDMDenoiser(build_edm_network(spec, load_weights=False), spec.precond, label_dim=spec.label_dim)
    name = "ffhq64" if song else "imagenet64"
    meta = dict(img_resolution=res, img_channels=3)
    return EDMPrior(den, name=name, class_label=None if song else 0, metadata=meta)


TINY_DIFFUSERS = dict(
    norm_num_groups=4,
    down_block_types=("DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D"),
)


def _mnist(scale):
    from prior_landscape.priors.schedules import VESchedule
    from prior_landscape.priors.scorenet import ScoreNetworkPrior, build_score_network

    chans = [32, 64, 128, 256] if scale == "paper" else [8, 16]
    net = build_score_network(architecture="diffusers_unet2d", in_channels=1, block_out_channels=chans,
                              **({} if scale == "paper" else TINY_DIFFUSERS))  # fmt: skip
    size = SCALES[scale]["mnist"]
    return ScoreNetworkPrior(net, VESchedule(0.01, 50.0, 1e-3), (1, size, size), name="mnist-binary")


def _ddpm(scale, large):
    """DPS/BlindDPS's FFHQ-256 DDPM (large=False) and guided-diffusion's ImageNet-256 one (large=True);
    tiny: a small score UNet in their place (the methods only call ``score``)."""
    if scale == "tiny":
        from prior_landscape.priors.schedules import VESchedule
        from prior_landscape.priors.scorenet import ScoreNetworkPrior, build_score_network

        net = build_score_network(in_channels=3, base_channels=8, channel_mult=(1, 2), emb_features=8,
                                  emb_channels=16, groups=4)  # fmt: skip
        s = SCALES[scale]["image"]
        return ScoreNetworkPrior(net, VESchedule(0.01, 50.0, 1e-3), (3, s, s), name="ddpm-stand-in")
    from deepinv.models import DiffUNet

    from prior_landscape.priors.ddpm_prior import DDPMPrior

    net = DiffUNet(in_channels=3, out_channels=3, large_model=large, pretrained=None)
    cfg = {"large_model": large, "channels": 3}
    return DDPMPrior(net, (3, 256, 256), name="ddpm-imagenet256" if large else "ddpm-ffhq256", config=cfg)


def _kernel_prior(scale, conditional):
    from prior_landscape.priors.kernel_priors import ConditionalKernelPrior, ConditionalKernelUNet
    from prior_landscape.priors.schedules import VESchedule
    from prior_landscape.priors.scorenet import ScoreNetworkPrior, build_score_network

    canvas = SCALES[scale]["kernel"] + 1
    sched = VESchedule(0.005, 80.0, 1e-3)
    if conditional:  # config/paper.yaml kernels-cond
        kw = dict(base_channels=32, channel_mult=[1, 2, 4], image_channels_enc=32) if scale == "paper" else {}
        return ConditionalKernelPrior(ConditionalKernelUNet(image_channels=3, **kw), sched, canvas, name="kernels-cond")
    kw = dict(base_channels=64, channel_mult=[1, 2, 3, 4], num_res_blocks=1) if scale == "paper" else {}
    net = build_score_network(in_channels=1, **kw) if kw else build_score_network(
        in_channels=1, base_channels=8, channel_mult=(1, 2), emb_features=8, emb_channels=16, groups=4)  # fmt: skip
    return ScoreNetworkPrior(net, sched, (1, canvas, canvas), name="kernels-uncond")


def _drunet(scale):
    from deepinv.models import DRUNet

    nc = [64, 128, 256, 512] if scale == "paper" else [8, 16, 32, 64]
    return DRUNet(in_channels=3, out_channels=3, nc=nc, pretrained=None).eval().requires_grad_(False)


def networks(scale: str) -> dict:
    """name → builder (called lazily, one network in memory at a time)."""
    return {
        "ffhq256": lambda: _score_sde(scale),
        "ffhq64": lambda: _edm(scale, "SongUNet"),
        "imagenet64": lambda: _edm(scale, "DhariwalUNet"),
        "mnist-binary": lambda: _mnist(scale),
        "drunet": lambda: _drunet(scale),
        "ddpm-ffhq256": lambda: _ddpm(scale, False),
        "ddpm-imagenet256": lambda: _ddpm(scale, True),
        "kernels-uncond": lambda: _kernel_prior(scale, False),
        "kernels-cond": lambda: _kernel_prior(scale, True),
    }


LANDSCAPE = ("ffhq256", "ffhq64", "imagenet64", "mnist-binary")
#: priors of config/paper.yaml with the architecture of a measured one (same network, other weights)
SAME_ARCHITECTURE = {"ffhq64": ["afhq64"], "ddpm-ffhq256": ["ddpm-afhqdog256"]}
HESSIAN = ("ffhq64", "imagenet64")


# ------------------------------------------------------------------------------------- measuring
class Budget:
    def __init__(self, seconds: float):
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def _timed(fn, device, reps: int = 1) -> float:
    """Seconds per call: one warm-up call, then ``reps`` timed calls."""
    fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / reps


def _peak_reset(device):
    if str(device).startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gb(device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / GB if str(device).startswith("cuda") else None


def _oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


def ladder(fn_of_batch, device, batches, budget: Budget, *, cap_gb: float, max_call_s: float) -> list[dict]:
    """Time ``fn_of_batch(B)`` for B on the ladder until memory, time or the budget stops it."""
    points = []
    for b in batches:
        if budget.left() < 3 * max_call_s and points:
            break
        _peak_reset(device)
        try:
            s = _timed(lambda b=b: fn_of_batch(b), device)
        except RuntimeError as err:
            if not _oom(err):
                raise
            points.append(dict(batch=b, oom=True))
            break
        peak = _peak_gb(device)
        points.append(dict(batch=b, seconds_per_call=s, seconds_per_image=s / b, peak_gb=peak))
        if s > max_call_s or (peak is not None and peak > cap_gb):
            break
    return points


def card_fit(points: list[dict]) -> tuple[dict, dict]:
    """(fits, batch_for) per card: batch 1 below 90 % of the card; the largest batch from a
    least-squares line peak = a + b·batch through the measured points (None on CPU)."""
    ok = [p for p in points if p.get("peak_gb") is not None]
    if not ok:
        return {}, {}
    first = min(ok, key=lambda p: p["batch"])
    fits = {str(c): first["peak_gb"] / first["batch"] <= 0.9 * c or first["peak_gb"] <= 0.9 * c for c in CARDS_GB}
    if len(ok) >= 2:
        n = len(ok)
        xs, ys = [p["batch"] for p in ok], [p["peak_gb"] for p in ok]
        mx, my = sum(xs) / n, sum(ys) / n
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / max(sum((x - mx) ** 2 for x in xs), 1e-12)
        icpt = my - slope * mx
        batch_for = {str(c): (max(0, int((0.9 * c - icpt) / slope)) if slope > 0 else None) for c in CARDS_GB}
    else:
        batch_for = {str(c): None for c in CARDS_GB}
    return fits, batch_for


def _row(network, what, points, note="", **extra) -> dict:
    """One record: the fastest measured batch (per image), its peak memory, the ladder it came from."""
    good = [p for p in points if "seconds_per_image" in p]
    best = min(good, key=lambda p: p["seconds_per_image"]) if good else {}
    fits, batch_for = card_fit(good)
    return dict(
        network=network, what=what, batch=best.get("batch"), seconds_per_image=best.get("seconds_per_image"),
        peak_gb=best.get("peak_gb"), fits=fits, batch_for=batch_for, ladder=points, note=note, **extra,
    )  # fmt: skip


# ------------------------------------------------------------------------------------- the items
def model_rows(name, net, scale, device, budget, cap_gb, max_call_s):
    from prior_landscape.priors.base import DiffusionPrior

    g = torch.Generator(device="cpu").manual_seed(0)
    if isinstance(net, DiffusionPrior):
        shape = net.image_shape
        cond = getattr(net, "conditional", False)
        s = SCALES[scale]["image"]

        def fn(b):
            x = torch.rand(b, *shape, generator=g).to(device)
            with torch.no_grad():
                if cond:
                    return net.score(x, 1.0, torch.rand(b, 3, s, s, generator=g).to(device))
                return net.score(x, 1.0)

        kind = "score"
    else:  # DRUNet at the benchmark's image size
        s = SCALES[scale]["image"]

        def fn(b):
            with torch.no_grad():
                return net(torch.rand(b, 3, s, s, generator=g).to(device), 0.05)

        kind = "denoiser"
    pts = ladder(fn, device, SCALES[scale]["ladder"], budget, cap_gb=cap_gb, max_call_s=max_call_s)
    return [_row(name, "model", pts, note=f"one {kind} evaluation, no gradient")]


def potential_rows(name, prior, scale, device, budget, cap_gb, max_call_s):
    from prior_landscape.landscape.potential import _velocity_and_divergence, rademacher_probes

    P = SCALES[scale]["probes"]

    def fn(b):
        x = torch.rand(b, prior.dim, device=device)
        probes = rademacher_probes(range(b), P, prior.dim, 0).to(device)
        t = torch.full((b,), 0.5, device=device, dtype=torch.float64)
        return _velocity_and_divergence(prior, x, t, probes)

    pts = ladder(fn, device, SCALES[scale]["ladder"], budget, cap_gb=cap_gb, max_call_s=max_call_s)
    return [_row(name, "potential_rhs", pts, note=f"one ODE right-hand side with {P} probes; × NFE per potential")]


def hessian_rows(name, prior, scale, device, budget, max_call_s, spectrum: bool = True):
    """P Fig. 4's d-column Hessian by batched JVP chunks (landscape/hessian.py's construction)."""
    from prior_landscape.landscape.hessian import _flat_grad, hessian_of_potential

    x = torch.rand(1, *prior.image_shape, device=device)
    d = x.numel()
    timed = SCALES[scale]["hessian_timed_chunks"]
    rows = []
    if timed is None:  # tiny: the whole Hessian, as the workflow computes it
        chunk = SCALES[scale]["hessian_chunks"][0]
        _peak_reset(device)
        s = _timed(lambda: hessian_of_potential(prior, x, chunk_size=chunk), device)
        pts = [dict(batch=chunk, seconds_per_call=s, seconds_per_image=s, peak_gb=_peak_gb(device))]
        rows.append(_row(name, "hessian", pts, note=f"d = {d}: whole Hessian, chunks of {chunk}", d=d))
    else:
        f = _flat_grad(prior, x.shape)
        xf = x.reshape(-1)
        batched = torch.func.vmap(lambda e: torch.func.jvp(f, (xf,), (e,))[1])
        pts = []
        for chunk in SCALES[scale]["hessian_chunks"]:
            if budget.left() < 4 * max_call_s:
                break
            E = torch.zeros(chunk, d, device=device)
            E[torch.arange(chunk), torch.arange(chunk)] = 1
            _peak_reset(device)
            try:
                with torch.no_grad():
                    s = _timed(lambda E=E: batched(E), device, reps=timed)
            except RuntimeError as err:
                if not _oom(err):
                    raise
                pts.append(dict(batch=chunk, oom=True))
                break
            # seconds_per_image: the whole d-column Hessian of one image, extrapolated from this chunk
            pts.append(dict(batch=chunk, seconds_per_call=s, seconds_per_image=s * d / chunk, peak_gb=_peak_gb(device)))
        note = f"d = {d}: {timed} chunks timed per chunk size, extrapolated to {d} columns (batch = chunk size)"
        rows.append(_row(name, "hessian", pts, note=note, d=d))
    if not spectrum:
        return rows
    # the spectrum of a d × d float64 matrix (P: svdvals in double precision)
    A = torch.randn(d, d, dtype=torch.float64, device=device)
    A = A + A.T
    for what, fn in (("eigvalsh", torch.linalg.eigvalsh), ("svdvals", torch.linalg.svdvals)):
        if budget.left() < (60 if what == "eigvalsh" else 150) and scale == "paper":
            rows.append(dict(network=f"{d}x{d} float64", what=f"spectrum_{what}", error="skipped: time budget"))
            continue
        _peak_reset(device)
        t0 = time.perf_counter()
        fn(A)
        _sync(device)
        s = time.perf_counter() - t0
        pts = [dict(batch=1, seconds_per_call=s, seconds_per_image=s, peak_gb=_peak_gb(device))]
        rows.append(_row(f"{d}x{d} float64", f"spectrum_{what}", pts, note="one call, first call included", d=d))
    return rows


def _problem(scale, device, seed=0):
    from prior_landscape.inverse.operators import blur
    from prior_landscape.methods import Problem

    s, K = SCALES[scale]["image"], SCALES[scale]["kernel"]
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, s, s, generator=g)
    h = torch.rand(1, K, K, generator=g)
    h = h / h.sum()
    y = blur(x.double(), h.double(), padding="circular").float()
    return Problem(y=y.to(device), sigma_y=0.01, kernel_size=K, seed=seed), h.to(device)


# method → (its step-count keyword or None for a whole run, the paper hyper-parameters, priors it needs)
METHOD_STEPS = {
    "p-algorithm1": ("n_iter", dict(n_inner=None, gamma_x=0.01, gamma_theta=0.001, reset_every=None), ("ffhq256",)),
    "p-algorithm2": ("n_iter", dict(n_inner=None, gamma_x=0.01, gamma_theta=0.001, reset_every=None), ("drunet",)),
    "p-image-step": ("n_steps", dict(gamma_x=0.01), ("ffhq256",)),
    "blind-dps": ("n_steps", dict(variant="paper", lam=1.0), ("ddpm-ffhq256", "kernels-uncond")),
    "dps-true-kernel": ("n_steps", {}, ("ddpm-ffhq256",)),
    "kernel-diff": ("n_steps", dict(variant="paper", sigma_f=0.04, rho0=1000.0), ("ddpm-imagenet256", "kernels-cond")),
    "kernel-diff-unconditional": ("n_steps", dict(variant="paper", sigma_f=0.04, rho0=1000.0),
                                  ("ddpm-imagenet256", "kernels-uncond")),
    "wiener": (None, {}, ()),
    "levin-map-k": (None, {}, ()),
    "tv-alternating": (None, {}, ()),
    "blind-rl": (None, {}, ()),
}  # fmt: skip
# tiny scale: the classical methods' runs cut short (the test suite checks the code path, not the cost)
TINY_HYPER = {"levin-map-k": dict(levels=1), "tv-alternating": dict(levels=1, n_iter=10), "blind-rl": dict(max_iter=3)}


def _wall(cost) -> float:
    return cost.wall_s


def method_rows(scale, device, budget, cache, max_call_s):
    """One step of each benchmark method (learned ones: (t(n₂) − t(n₁))/(n₂ − n₁)); the classical
    methods' whole default run. ``cache``: name → network, built once."""
    from prior_landscape.inverse.denoisers import DRUNetDenoiser
    from prior_landscape.methods import Context, run_method

    n1, n2 = SCALES[scale]["method_steps"]
    rows = []
    for name, (count, hyper, needs) in METHOD_STEPS.items():
        if budget.left() < 4 * max_call_s:
            rows.append(dict(network=name, what="method_step", method=name, error="skipped: time budget"))
            continue
        problem, h = _problem(scale, device)
        hyper = {k: (SCALES[scale]["n_inner"] if v is None and k == "n_inner" else v) for k, v in hyper.items()}
        hyper = {k: v for k, v in hyper.items() if v is not None}
        if scale == "tiny":
            hyper.update(TINY_HYPER.get(name, {}))
        try:
            nets = [cache(n) for n in needs]
            ctx = Context(device=str(device), true_kernel=h)
            for n, net in zip(needs, nets):
                if n == "drunet":
                    ctx.denoiser = DRUNetDenoiser(net, 0.05)
                elif n.startswith("kernels"):
                    ctx.extra["kernel_prior"] = net
                else:
                    ctx.prior = net
            if count is None:
                run_method(name, problem, ctx, hyper)  # warm-up
                _peak_reset(device)
                _, cost = run_method(name, problem, ctx, hyper)
                pts = [
                    dict(batch=1, seconds_per_call=cost.wall_s, seconds_per_image=cost.wall_s, peak_gb=_peak_gb(device))
                ]
                rows.append(_row("classical", "method_step", pts, note="whole default run (classical)", method=name))
                continue
            run_method(name, problem, ctx, {**hyper, count: n1})  # warm-up
            _peak_reset(device)
            reps = SCALES[scale]["method_reps"]  # the fastest of reps runs: robust to a busy machine
            c1 = min((run_method(name, problem, ctx, {**hyper, count: n1})[1] for _ in range(reps)), key=_wall)
            c2 = min((run_method(name, problem, ctx, {**hyper, count: n2})[1] for _ in range(reps)), key=_wall)
            per = (c2.wall_s - c1.wall_s) / (n2 - n1)
            note = f"one {count} unit: (t({count}={n2}) − t({count}={n1}))/{n2 - n1}"
            if per <= 0:  # a step below the timing noise (toy sizes): an upper bound, said so
                per, note = c2.wall_s / n2, f"one {count} unit: at most t({count}={n2})/{n2} (steps below the noise)"
            nfe = (c2.nfe - c1.nfe) / (n2 - n1)
            pts = [dict(batch=1, seconds_per_call=per, seconds_per_image=per, peak_gb=_peak_gb(device))]
            note += f"; {nfe:g} network evaluations"
            extra = {"n_inner": hyper["n_inner"]} if "n_inner" in hyper else {}
            same = {"same_as": SAME_ARCHITECTURE[needs[0]]} if needs[0] in SAME_ARCHITECTURE else {}
            rows.append(_row(needs[0], "method_step", pts, note=note, method=name, nfe_per_step=nfe, **extra, **same))
        except Exception as err:  # recorded, not hidden: the check reports what does not run
            rows.append(dict(network=name, what="method_step", method=name, error=_err(err)))
    return rows


def engine_rows(scale, device):
    """benchmarks/potential_engine.py's comparison (the demo priors) on this device."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import potential_engine

    n = SCALES[scale]["engine_images"]
    res = potential_engine.compare(
        n_images=n, n_probes=4, tol=1e-5, device=str(device), scorenet=None, quick=scale == "tiny"
    )
    return [
        dict(
            network=r["prior"],
            what="engine_vs_peers",
            batch=n,
            note=r["note"],
            **{k: v for k, v in r.items() if k not in ("prior", "note")},
        )
        for r in res
    ]


def _commit() -> str | None:
    """The repository's commit (``git``), else ``PRIOR_LANDSCAPE_COMMIT`` (a copy without .git)."""
    import os
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        if out.returncode == 0:
            return out.stdout.strip()
    except OSError:
        pass
    return os.environ.get("PRIOR_LANDSCAPE_COMMIT")


def _err(err: BaseException) -> str:
    tb = traceback.extract_tb(err.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    return f"{type(err).__name__}: {str(err)[:300]}{where}"


# ------------------------------------------------------------------------------------- the report
def _fmt(v, spec):
    return "—" if v is None else format(v, spec)


def table(record: dict) -> str:
    lines = [
        f"GPU check {record['date']}  device: {record['device']}  torch {record['torch']}  scale: {record['scale']}",
        f"{'network':<22}{'what':<22}{'batch':>6}{'s/image':>12}{'peak GB':>9}  {'fits 16/40/80 GB':<18}"
        f"{'batch@80GB':>11}  note",
    ]
    for r in record["rows"]:
        if "error" in r:
            lines.append(f"{r.get('method', r['network']):<22}{r['what']:<22}  FAILED: {r['error']}")
            continue
        if r["what"] == "engine_vs_peers":
            lines.append(
                f"{r['network']:<22}{r['what']:<22}{r['batch']:>6}  engine {r['engine_s']:.2f} s, P's scheme "
                f"{r['p_scheme_s']:.2f} s ({r['ratio_vs_p']:.1f}×), "
                f"torchdiffeq {_fmt(r.get('torchdiffeq_s'), '.2f')} s, "
                f"scipy-batch {_fmt(r.get('scipy_batch_s'), '.2f')} s; NFE/img {r['engine_nfe']:.0f}"
            )
            continue
        fits = "/".join({True: "y", False: "n"}.get(r["fits"].get(str(c)), "—") for c in CARDS_GB)
        label = r.get("method", r["network"])
        lines.append(
            f"{label:<22}{r['what']:<22}{_fmt(r['batch'], 'd'):>6}{_fmt(r['seconds_per_image'], '.4g'):>12}"
            f"{_fmt(r['peak_gb'], '.2f'):>9}  {fits:<18}{_fmt(r['batch_for'].get('80'), 'd'):>11}  {r['note']}"
        )
    lines.append(
        f"total {record['wall_s']:.0f} s{'  (stopped by the time budget)' if record.get('budget_hit') else ''}"
    )
    return "\n".join(lines)


def run(scale: str, device: str, out: Path | None, budget_s: float, only=None, engine: bool = True) -> dict:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: --device cuda but torch sees no GPU")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    total_gb = torch.cuda.get_device_properties(device).total_memory / GB if device.type == "cuda" else None
    cap_gb = min(0.9 * 80, 0.8 * total_gb) if total_gb else math.inf
    max_call_s = 20.0 if scale == "paper" else 30.0
    budget = Budget(budget_s)
    t0 = time.perf_counter()
    record = dict(
        date=datetime.date.today().isoformat(), device=name, device_memory_gb=total_gb, torch=torch.__version__,
        cuda=torch.version.cuda, scale=scale, budget_s=budget_s, commit=_commit(), rows=[], wall_s=0.0,
    )  # fmt: skip

    def save(extra=None):
        if extra:
            record["rows"].extend(extra)
        record["wall_s"] = time.perf_counter() - t0
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(".tmp")
            tmp.write_text(json.dumps(record, indent=1, default=str))
            tmp.replace(out)

    builders = networks(scale)
    built: dict = {}

    def cache(n):
        if n not in built:
            net = builders[n]()
            built[n] = net.to(device) if hasattr(net, "to") else net
        return built[n]

    torch.manual_seed(0)
    for n in builders:
        if only and n not in only:
            continue
        if budget.left() < 60 and scale == "paper":
            record["budget_hit"] = True
            save([dict(network=n, what="model", error="skipped: time budget")])
            continue
        print(f"[{time.perf_counter() - t0:6.0f} s] {n}", file=sys.stderr, flush=True)
        try:
            net = cache(n)
            same = {"same_as": SAME_ARCHITECTURE[n]} if n in SAME_ARCHITECTURE else {}
            save([{**r, **same} for r in model_rows(n, net, scale, device, budget, cap_gb, max_call_s)])
            if n in LANDSCAPE:
                save([{**r, **same} for r in potential_rows(n, net, scale, device, budget, cap_gb, max_call_s)])
            if n in HESSIAN:
                rows = hessian_rows(n, net, scale, device, budget, max_call_s, spectrum=n == HESSIAN[0])
                save([{**r, **same} if r["network"] == n else r for r in rows])
        except Exception as err:
            save([dict(network=n, what="model", error=_err(err))])
        if n not in ("ffhq256", "drunet", "ddpm-ffhq256", "ddpm-imagenet256", "kernels-uncond", "kernels-cond"):
            built.pop(n, None)  # keep only what the methods need
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if not only:
        print(f"[{time.perf_counter() - t0:6.0f} s] algorithm 1 and the benchmark methods", file=sys.stderr, flush=True)
        rows = method_rows(scale, device, budget, cache, max_call_s)
        for r in rows:  # P's Algorithm 1 iteration at 256² is the p-algorithm1 step
            if r.get("method") == "p-algorithm1" and "error" not in r:
                save([{**r, "what": "algorithm1_iteration", "network": "ffhq256"}])
        save(rows)
        built.clear()
        if engine and (budget.left() > 90 or scale == "tiny"):
            print(f"[{time.perf_counter() - t0:6.0f} s] potential engine vs peers", file=sys.stderr, flush=True)
            try:
                save(engine_rows(scale, device))
            except Exception as err:
                save([dict(network="demo priors", what="engine_vs_peers", error=_err(err))])
    record["budget_hit"] = record.get("budget_hit", False) or budget.left() < 0
    save()
    return record


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true", help="toy sizes (CPU, the test suite)")
    ap.add_argument(
        "--out", type=Path, default=None, help="JSON record (default: docs/gpu_check/DATE-DEVICE.json on a GPU)"
    )
    ap.add_argument("--budget-s", type=float, default=420.0, help="stop starting new measurements after this")
    ap.add_argument("--only", nargs="*", default=None, help="only these networks (no methods, no engine)")
    ap.add_argument("--no-engine", action="store_true")
    args = ap.parse_args(argv)
    scale = "tiny" if args.tiny else "paper"
    out = args.out
    if out is None and args.device.startswith("cuda"):
        card = torch.cuda.get_device_name().replace(" ", "-") if torch.cuda.is_available() else "gpu"
        out = REPO / "docs/gpu_check" / f"{datetime.date.today().isoformat()}-{card}.json"
    record = run(scale, args.device, out, args.budget_s, args.only, engine=not args.no_engine)
    print(table(record))
    if out is not None:
        print(f"written: {out}")
    failed = [r for r in record["rows"] if "error" in r and not r["error"].startswith("skipped")]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
