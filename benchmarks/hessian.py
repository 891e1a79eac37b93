"""Speed of the batched Hessian of q against P's loop of Jacobian–vector products (P §2.2, Fig. 4).

Both build the full d × d Hessian ∇²q(x) = −∂score(x, σ(t_ε))/∂x of one image:

* batched: ``prior_landscape.landscape.hessian.hessian_of_potential`` — ``torch.func.jvp``
  under ``torch.func.vmap``, ``--chunk-size`` basis vectors per pass (and its
  reverse-mode variant ``mode="vjp"``: one ``torch.func.vjp``, pullback vmapped);
* loop (P): ``hessian_loop(method="jvp")`` — one ``torch.autograd.functional.jvp``
  (a double-backward pass) per basis vector, as P's released code does;
* loop (vjp): ``hessian_loop(method="vjp")`` — one retained reverse graph and one
  ``torch.autograd.grad`` per basis vector, the cheapest loop (shown for reference).

The network is the workflow's score UNet (``ScoreNetworkPrior`` with
``DEMO_NET_KWARGS``), randomly initialised (its zero-initialised last convolution
given small random weights so the Jacobian is not trivial) or loaded from a
trained checkpoint with ``--checkpoint``. Timing does not depend on the weights.
For large d the loops are timed on the first ``--loop-columns`` basis vectors and
extrapolated to d (marked "~"); agreement is then checked on those columns.

    python benchmarks/hessian.py                       # d = 256 (1×16×16), CPU
    python benchmarks/hessian.py --size 32             # d = 1024
    python benchmarks/hessian.py --size 64 --channels 3 --device cuda --chunk-size 512   # d = 12288 as in P
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device, repeat: int, budget_s: float = 20.0):
    """Best of up to ``repeat`` wall times (seconds; no new run once ``budget_s`` is spent) and the last result."""
    best, out, spent = math.inf, None, 0.0
    for _ in range(repeat):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
        if spent > budget_s:
            break
    return best, out


def _prior(args, device, dtype):
    from prior_landscape.priors.schedules import VESchedule
    from prior_landscape.priors.scorenet import DEMO_NET_KWARGS, ScoreNetworkPrior, ScoreUNet

    if args.checkpoint is not None:
        prior = ScoreNetworkPrior.load(args.checkpoint)
        note = f"trained checkpoint {args.checkpoint}"
    else:
        kw = dict(DEMO_NET_KWARGS, in_channels=args.channels, sigma_data=0.25, data_mean=0.45)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)
            net = ScoreUNet(**kw)
            with torch.no_grad():
                net.conv_out.weight.normal_(0.0, 0.05)
        shape = (args.channels, args.size, args.size)
        prior = ScoreNetworkPrior(net, VESchedule(0.01, 20.0, 1e-3), shape, name="scorenet-random")
        note = "random initialisation, DEMO_NET_KWARGS"
    return prior.to(device).to(dtype), note


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=16, help="image height = width (default 16: d = 256 with 1 channel)")
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--chunk-size", type=int, default=256)
    ap.add_argument(
        "--loop-columns",
        type=int,
        default=None,
        help="time the loops on this many columns and extrapolate (default: all if d ≤ 1024, else 256)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="timings are the best of this many runs (fewer once a method has used 20 s; the loops: 1 if extrapolated)",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--no-vjp-loop", action="store_true", help="skip the vjp loop")
    ap.add_argument(
        "--checkpoint", type=Path, default=None, help="a trained ScoreNetworkPrior (its image shape is used)"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from prior_landscape.landscape.hessian import hessian_loop, hessian_of_potential, intrinsic_dimension, spectrum

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    prior, note = _prior(args, device, dtype)
    C, H, W = prior.image_shape
    d = C * H * W
    g = torch.Generator().manual_seed(args.seed + 1)
    x = (0.45 + 0.2 * torch.randn(1, C, H, W, generator=g)).to(device, dtype)
    m = args.loop_columns if args.loop_columns is not None else (d if d <= 1024 else 256)
    m = max(1, min(m, d))
    partial = m < d
    scale = d / m

    desc = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, torch threads {torch.get_num_threads()}"
    )
    print(f"Hessian of q: one {C}×{H}×{W} image (d = {d}), {prior.num_parameters():,}-parameter score UNet ({note})")
    print(f"device {device} ({desc}), {args.dtype}, chunk size {args.chunk_size}, best of {args.repeat}")

    hessian_of_potential(prior, x, chunk_size=min(args.chunk_size, 8))  # warm-up (loads torch's forward-AD rules)
    hessian_loop(prior, x, columns=2)
    t_b, Hb = _time(lambda: hessian_of_potential(prior, x, chunk_size=args.chunk_size), device, args.repeat)
    Jb = hessian_of_potential(prior, x, chunk_size=args.chunk_size, symmetrize=False)

    rows = [("batched (torch.func jvp + vmap)", t_b, False, None)]
    t_bv, Hbv = _time(
        lambda: hessian_of_potential(prior, x, chunk_size=args.chunk_size, mode="vjp"), device, args.repeat
    )
    rows.append(("batched, mode='vjp' (vjp + vmap)", t_bv, False, (Hbv - Hb).abs().max().item()))
    rep_loop = 1 if partial else args.repeat
    t_l, Hl = _time(lambda: hessian_loop(prior, x, columns=m if partial else None), device, rep_loop)
    ref_jvp = Jb.T[:m] if partial else Hb  # loop jvp block: row i = J e_i = column i of J
    rows.append(("loop, autograd.functional.jvp (P)", t_l * scale, partial, (Hl - ref_jvp).abs().max().item()))
    if not args.no_vjp_loop:
        t_v, Hv = _time(lambda: hessian_loop(prior, x, method="vjp", columns=m if partial else None), device, rep_loop)
        ref_vjp = Jb[:m] if partial else Hb  # vjp block: row i = e_iᵀ J
        rows.append(("loop, one autograd.grad per column", t_v * scale, partial, (Hv - ref_vjp).abs().max().item()))

    print()
    print(f"{'method':<38}{'seconds':>12}{'columns/s':>12}{'vs batched':>12}{'max |Δ|':>12}")
    for name, t, est, diff in rows:
        sec = f"{'~' if est else ''}{t:.3f}"
        ratio = f"{t / t_b:.1f}×" if name != rows[0][0] else "1.0×"
        dd = "—" if diff is None else f"{diff:.2e}"
        print(f"{name:<38}{sec:>12}{d / t:>12.0f}{ratio:>12}{dd:>12}")
    print()
    asym = (Jb - Jb.T).abs().max().item()
    sv = spectrum(Hb)
    print(
        f"ratio P loop / batched: {rows[2][1] / t_b:.1f}×   (target ≥ 5×);  "
        f"P loop / batched vjp: {rows[2][1] / t_bv:.1f}×"
    )
    print(
        f"max |H| = {Hb.abs().max().item():.3g}; Jacobian asymmetry max |J − Jᵀ| = {asym:.3g} "
        "(a network is not a gradient field;"
    )
    print(
        f"  the Hessian is the symmetric part); singular values {sv[0]:.3g} … {sv[-1]:.3g}; "
        f"below 1e-5: {intrinsic_dimension(sv)}, below 1e-3·max: {intrinsic_dimension(sv, 1e-3, relative=True)}"
    )
    if partial:
        print(f"  ~: loop timed on {m} of {d} columns and scaled by {scale:.1f}; agreement on those columns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
