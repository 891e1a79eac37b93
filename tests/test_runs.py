"""The resumable-run driver and the digest of what defines a run (prior_landscape.runs)."""

import logging

import numpy as np
import pytest
import torch

from prior_landscape.runs import RunOptions, digest, drive


class Walk:
    """A seeded random walk whose record consumes state (a running sum, like a training's loss window)."""

    def __init__(self, n=3, seed=0):
        self.gen = torch.Generator().manual_seed(seed)
        self.x = torch.zeros(n, dtype=torch.float64)
        self.window = []

    def step(self, k):
        self.x = self.x + torch.randn(self.x.shape, generator=self.gen, dtype=torch.float64) / (k + 1)
        self.window.append(float(self.x.sum()))

    def record(self, k):
        rec = {
            "value": self.x.clone(),
            "window_mean": float(np.mean(self.window)) if self.window else float("nan"),
            "matrix": torch.outer(self.x, self.x),
        }
        self.window = []
        return rec

    def state_dict(self):
        return {"x": self.x, "rng": self.gen.get_state(), "window": list(self.window)}

    def load_state_dict(self, state):
        self.x, self.window = state["x"], list(state["window"])
        self.gen.set_state(state["rng"])


class Killed(Exception):
    pass


def _run(n, path=None, kill_at=None, checkpoint_every=4, record_every=3, fingerprint="walk"):
    def progress(k, rec):
        if k == kill_at:
            raise Killed

    loop = Walk()
    opts = RunOptions(state_path=path, checkpoint_every=checkpoint_every, record_every=record_every, progress=progress)
    return loop, drive(loop, n, kind="walk", fingerprint=fingerprint, options=opts)


def _same(a, b):
    (la, ra), (lb, rb) = a, b
    assert torch.equal(la.x, lb.x) and ra.record_iterations == rb.record_iterations
    ta, tb = ra.table(), rb.table()
    assert ta.equals(tb), (ta, tb)
    assert torch.equal(ra.stack("matrix"), rb.stack("matrix"))


@pytest.mark.parametrize("kill_at", [3, 9, 12, 15])
def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path, kill_at):
    full = _run(20)
    with pytest.raises(Killed):
        _run(20, tmp_path / "s.pt", kill_at=kill_at)
    resumed = _run(20, tmp_path / "s.pt")
    assert resumed[1].resumed_from == 4 * (kill_at // 4)  # the state saved at k precedes the record at k
    _same(resumed, full)
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize("checkpoint_every", [1, 4, 7])
def test_an_extended_run_equals_one_run_to_the_new_end(tmp_path, checkpoint_every):
    full = _run(20, checkpoint_every=checkpoint_every)
    short = _run(11, tmp_path / "s.pt", checkpoint_every=checkpoint_every)  # 11: off the record cadence
    assert short[1].record_iterations[-1] == 11
    longer = _run(20, tmp_path / "s.pt", checkpoint_every=checkpoint_every)
    assert longer[1].resumed_from == 11 and 11 not in longer[1].record_iterations
    _same(longer, full)
    again = _run(20, tmp_path / "s.pt", checkpoint_every=checkpoint_every)  # finished: nothing to do
    assert again[1].resumed_from == 20
    _same(again, full)


def test_a_state_that_is_not_this_runs_is_never_continued(tmp_path, caplog):
    path = tmp_path / "s.pt"
    _run(8, path)
    fresh = _run(12, fingerprint="other")
    cases = [("other", 12, "belongs to another run"), ("walk", 4, "past this run's end")]
    for fingerprint, n, why in cases:
        _run(8, path)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="prior_landscape.runs"):
            got = _run(n, path, fingerprint=fingerprint)
        assert got[1].resumed_from == 0 and why in caplog.text and "starting afresh" in caplog.text
    _same(_run(12, path, fingerprint="other"), fresh)
    for junk in (b"", b"not a torch file", b"PK\x03\x04broken zip"):
        path.write_bytes(junk)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="prior_landscape.runs"):
            assert _run(6, path)[1].resumed_from == 0
        assert "is unreadable" in caplog.text
    torch.save({"kind": "descent", "fingerprint": "walk", "k": 2}, path)  # another kind of loop
    with caplog.at_level(logging.WARNING, logger="prior_landscape.runs"):
        assert _run(6, path)[1].resumed_from == 0
    assert "not the state of a walk run" in caplog.text


def test_the_table_has_one_row_per_item_and_record():
    _, res = _run(7, record_every=3)
    t = res.table()
    assert list(t.columns) == ["k", "item", "value", "window_mean"]  # the 3×3 matrix is not a column
    assert list(t.k) == [0, 0, 0, 3, 3, 3, 6, 6, 6, 7, 7, 7] and list(t.item) == [0, 1, 2] * 4
    assert res.stack("matrix").shape == (4, 3, 3)


def test_options_are_checked():
    with pytest.raises(ValueError, match="checkpoint_every"):
        RunOptions(checkpoint_every=0)
    with pytest.raises(ValueError, match="n_steps"):
        drive(Walk(), -1, kind="walk", fingerprint="x")


class _Fingerprinted:
    def __init__(self, tag):
        self.tag = tag

    def fingerprint(self):
        return self.tag


def test_digest_sees_every_value_and_nothing_else():
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    base = digest("a", 1, 2.0, None, t, {"b": [1, 2], "a": (3,)}, np.ones(2), _Fingerprinted("w"))
    assert base == digest("a", 1, 2.0, None, t.clone(), {"a": (3,), "b": [1, 2]}, np.ones(2), _Fingerprinted("w"))
    changed = [
        ("b", 1, 2.0, None, t),
        ("a", 2, 2.0, None, t),
        ("a", 1, 2.5, None, t),
        ("a", 1, 2.0, 0, t),
        ("a", 1, 2.0, None, t.double()),
        ("a", 1, 2.0, None, t.reshape(3, 2)),
        ("a", 1, 2.0, None, t + 1e-7),
    ]
    assert len({digest(*c) for c in changed} | {digest("a", 1, 2.0, None, t)}) == len(changed) + 1
    assert digest(1) != digest(1.0) != digest("1") and digest([1, 2]) != digest((1, 2)) != digest([[1, 2]])
    assert digest(_Fingerprinted("w")) != digest(_Fingerprinted("v"))
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    assert digest(a) != digest(b)
    b.load_state_dict(a.state_dict())
    assert digest(a) == digest(b)
    with pytest.raises(TypeError, match="cannot fingerprint a object"):
        digest(object())
    with pytest.raises(TypeError, match="cannot fingerprint"):
        digest({"f": lambda x: x})
