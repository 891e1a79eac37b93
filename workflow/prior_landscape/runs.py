"""The one resumable-run driver of every long loop, and the one digest of what defines a run.

An iterative method is written as a :class:`Loop`: ``step(k)`` performs iteration k (the
science, nothing else), ``record(k)`` returns what the trajectory keeps at iteration k, and
``state_dict`` / ``load_state_dict`` say what resumes it. :func:`drive` runs it::

    k = resumed step (or 0)
    while True:
        save the state   if k > resumed and (k ≡ 0 (mod checkpoint_every) or k = n_steps)
        record(k)        if k ≡ 0 (mod record_every) or k = n_steps
        stop             if k = n_steps
        step(k); k ← k + 1

The state saved at k holds the records made before k, so a run extended past its old end
records exactly what an uninterrupted run records (the old end is recorded only if on the
cadence), and a loop whose record consumes state (a training's loss window) saves it unconsumed.

A state file holds the loop's state, the records so far, the step index and a fingerprint
of everything that defines the run (``digest`` of the inputs, the hyper-parameters, the
prior's :meth:`~prior_landscape.priors.base.DiffusionPrior.fingerprint`, …) but not its
length: a run extended to more steps resumes from a shorter one, and a run killed at any
point resumes from its last state. The result is bit-for-bit that of an uninterrupted run
(the same operations on the same tensors). The cadences (``record_every``,
``checkpoint_every``) are speed and presentation settings, not part of the fingerprint.

One policy when a state cannot continue this run (unreadable, another kind of loop, another
fingerprint, already past the end): the run starts afresh, says so in the log (logger
``prior_landscape.runs``, level WARNING) and overwrites the state at its first checkpoint.
A foreign state is never continued. States are written atomically
(:func:`prior_landscape.io.artefacts.atomic_output`) and read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from prior_landscape.io.artefacts import atomic_output

__all__ = ["Loop", "RunOptions", "RunResult", "drive", "digest"]

log = logging.getLogger("prior_landscape.runs")


# ------------------------------------------------------------------ fingerprints
def _feed(h, obj: Any) -> None:
    """Feed a canonical byte form of ``obj`` to the hash ``h`` (type-tagged, order-independent for dicts)."""
    if obj is None or isinstance(obj, (bool, int, str)):
        h.update(f"{type(obj).__name__}:{obj!r}|".encode())
    elif isinstance(obj, float):
        h.update(f"float:{obj!r}|".encode())
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        if t.dtype in (torch.bfloat16, torch.float16) or t.is_complex():
            t = torch.view_as_real(t) if t.is_complex() else t.to(torch.float32)
        h.update(f"tensor:{tuple(obj.shape)}:{obj.dtype}|".encode())
        h.update(t.numpy().tobytes())
    elif isinstance(obj, np.ndarray):
        h.update(f"array:{obj.shape}:{obj.dtype}|".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, np.generic):
        _feed(h, obj.item())
    elif isinstance(obj, torch.nn.Module):
        h.update(f"module:{type(obj).__qualname__}|".encode())
        for name, t in sorted(obj.state_dict().items()):
            _feed(h, name)
            _feed(h, t)
    elif isinstance(obj, dict):
        h.update(b"dict{")
        for key in sorted(obj, key=str):
            _feed(h, str(key))
            _feed(h, obj[key])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}[{len(obj)}".encode())
        for item in obj:
            _feed(h, item)
        h.update(b"]")
    elif isinstance(obj, (torch.dtype, torch.device, Path)):
        h.update(f"{type(obj).__name__}:{obj}|".encode())
    elif callable(getattr(obj, "fingerprint", None)):  # priors, denoisers, kernel models
        h.update(f"{type(obj).__qualname__}:".encode())
        _feed(h, obj.fingerprint())
    elif is_dataclass(obj):
        _feed(h, {f.name: getattr(obj, f.name) for f in fields(obj)})
    else:
        raise TypeError(
            f"cannot fingerprint a {type(obj).__name__}: give it a fingerprint() method or pass its defining values"
        )


def digest(*parts: Any) -> str:
    """A 20-hex-digit SHA-1 of ``parts``: tensors and arrays by value, shape and dtype; modules by
    their state dict; objects with a ``fingerprint()`` (priors, denoisers, kernel models) by it;
    dicts, lists, dataclasses and scalars recursively. Anything else raises ``TypeError``, so that
    nothing enters a fingerprint by its memory address."""
    h = hashlib.sha1()
    for part in parts:
        _feed(h, part)
    return h.hexdigest()[:20]


# ------------------------------------------------------------------------ driver
class Loop(Protocol):
    """An iterative method, as :func:`drive` runs it."""

    def step(self, k: int) -> None:
        """Iteration k → k + 1."""

    def record(self, k: int) -> dict | None:
        """What the trajectory keeps at iteration k: scalars and per-item 1-D values (one table row per
        item), plus anything else (kept in :attr:`RunResult.records`); None records nothing."""

    def state_dict(self) -> dict:
        """Tensors and plain values that restore the loop at the current iteration."""

    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class RunOptions:
    """Machinery settings of a run, none of which changes its result."""

    state_path: str | Path | None = None  # resumable state (None: not resumable)
    checkpoint_every: int = 100
    record_every: int = 1
    progress: Callable[[int, dict], None] | None = None  # called with (k, record) after each record

    def __post_init__(self):
        if self.checkpoint_every < 1 or self.record_every < 1:
            raise ValueError(
                f"need checkpoint_every ≥ 1 and record_every ≥ 1, got {self.checkpoint_every}, {self.record_every}"
            )


@dataclass
class RunResult:
    records: list[dict]  # (k, record) for every recorded iteration, in order
    steps: int  # the iteration index reached (n_steps)
    resumed_from: int = 0  # iteration the run resumed from (0: afresh)
    wall_time_s: float = 0.0  # seconds spent in this call
    record_iterations: list[int] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """The records as one long table: column ``k`` and every scalar or 1-D record entry
        (a 1-D entry of length n gives n rows, with ``item`` 0 … n − 1)."""
        parts = []
        for k, rec in zip(self.record_iterations, self.records):
            cols = {key: _plain(v) for key, v in rec.items() if np.ndim(_plain(v)) <= 1}
            n = max([len(v) for v in cols.values() if np.ndim(v) == 1], default=1)
            parts.append(pd.DataFrame({"k": np.full(n, k, dtype=np.int64), "item": np.arange(n), **cols}))
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"k": [], "item": []})

    def stack(self, key: str) -> torch.Tensor:
        """One record entry over the recorded iterations, stacked: shape (R, *entry shape)."""
        return torch.stack([torch.as_tensor(rec[key]) for rec in self.records])


def _plain(v):
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().numpy()
    return v


def _storable(rec: dict) -> dict:
    """Record values in a form ``torch.load(weights_only=True)`` reads back: tensors on the CPU, plain values."""
    out = {}
    for key, v in rec.items():
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(np.ascontiguousarray(v))
        elif isinstance(v, torch.Tensor):
            v = v.detach().cpu()
        elif isinstance(v, np.generic):
            v = v.item()
        out[key] = v
    return out


def _load_state(path: Path, kind: str, fingerprint: str, n_steps: int) -> dict | None:
    """The saved state if it can continue this run, else None (and the log says why)."""

    def afresh(why: str) -> None:
        log.warning("state %s %s: starting afresh (it will be overwritten)", path, why)

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is ignored, never continued
        return afresh(f"is unreadable ({type(err).__name__}: {err})")
    if not isinstance(state, dict) or state.get("kind") != kind:
        return afresh(f"is not the state of a {kind} run")
    if state.get("fingerprint") != fingerprint:
        return afresh("belongs to another run (inputs, settings, prior or weights differ)")
    if int(state["k"]) > n_steps:
        return afresh(f"is at iteration {int(state['k'])}, past this run's end ({n_steps})")
    return state


def drive(loop: Loop, n_steps: int, *, kind: str, fingerprint: str, options: RunOptions | None = None) -> RunResult:
    """Run ``loop`` to iteration ``n_steps``, resuming from ``options.state_path`` when it holds this
    run (same ``kind`` and ``fingerprint``); see the module docstring."""
    opts = options or RunOptions()
    if not (isinstance(n_steps, int) and n_steps >= 0):
        raise ValueError(f"n_steps must be an integer ≥ 0, got {n_steps!r}")
    t0 = time.perf_counter()
    path = Path(opts.state_path) if opts.state_path is not None else None
    k, records, rec_iters = 0, [], []
    if path is not None and path.exists():
        state = _load_state(path, kind, fingerprint, n_steps)
        if state is not None:
            loop.load_state_dict(state["loop"])
            k, records, rec_iters = int(state["k"]), list(state["records"]), list(state["record_iterations"])
            log.info("%s: resuming from iteration %d of %d (%s)", kind, k, n_steps, path)
    k0 = k
    while True:
        if path is not None and k > k0 and (k % opts.checkpoint_every == 0 or k == n_steps):
            state = {
                "kind": kind,
                "fingerprint": fingerprint,
                "k": k,
                "loop": loop.state_dict(),
                "records": records,
                "record_iterations": rec_iters,
            }
            with atomic_output(path) as tmp:
                torch.save(state, tmp)
        if k % opts.record_every == 0 or k == n_steps:
            rec = loop.record(k)
            if rec is not None:
                records.append(_storable(rec))
                rec_iters.append(k)
                if opts.progress is not None:
                    opts.progress(k, rec)
        if k == n_steps:
            break
        loop.step(k)
        k += 1
    return RunResult(records, n_steps, k0, time.perf_counter() - t0, rec_iters)
