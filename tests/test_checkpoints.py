"""Loading the paper's released checkpoints (EDM pickles, score_sde .pth) without their code.

The real files cannot be downloaded here, so the tests write tiny checkpoints in
the same formats: an EDM network pickle whose persistent objects embed (fake,
booby-trapped) module source, built from a reference deepinv network with random
weights; and a score_sde checkpoint with DataParallel prefixes and EMA shadow
parameters that differ from the raw ones. Loading must reproduce the reference
outputs to float tolerance.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from prior_landscape.landscape.potential import PotentialSettings, potential, potential_batched
from prior_landscape.priors import load_prior
from prior_landscape.priors.checkpoints import (
    CheckpointError,
    UnsafePickleError,
    load_edm_pickle,
    load_score_sde_checkpoint,
    read_edm_pickle,
)
from prior_landscape.priors.ncsnpp_scoresde import ScoreSDENCSNpp, ScoreSDENCSNppConfig, upfirdn2d
from prior_landscape.priors.pretrained import (
    EDMPrior,
    ScoreSDEPrior,
    UnitScalePrior,
    checkpoint_format,
    load_pretrained_prior,
)
from prior_landscape.priors.schedules import EDMSchedule, VESchedule

deepinv_models = pytest.importorskip("deepinv.models")

RES = 8
SONG_KW = dict(
    embedding_type="fourier", encoder_type="residual", decoder_type="standard", channel_mult_noise=2,
    resample_filter=[1, 3, 3, 1], model_channels=32, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4],
    augment_dim=9, dropout=0.05,
)  # fmt: skip

LOOSE = PotentialSettings(n_probes=2, atol=1e-3, rtol=1e-3)  # cheap, for random-weight networks
ADM_KW = dict(model_channels=64, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4], dropout=0.1)
ADM_SMALL_KW = dict(model_channels=32, channel_mult=[1], num_blocks=1, attn_resolutions=[], dropout=0.0)
N_CLASSES = 10
TINY_SDE = ScoreSDENCSNppConfig(image_size=RES, nf=16, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(4,))


# ============================================================ EDM pickle writer
def _booby_trapped_source(marker) -> str:
    return (
        "import os\n"
        f"open({str(marker)!r}, 'w').write('embedded source was executed')\n"
        "os.system('echo pwned')\n"
        "raise SystemExit('embedded source was executed')\n"
    )


def _never_called(meta):  # pickled by name as torch_utils.persistence._reconstruct_persistent_obj
    raise AssertionError("the writer's reconstruct function must never run")


_never_called.__module__ = "torch_utils.persistence"
_never_called.__qualname__ = _never_called.__name__ = "_reconstruct_persistent_obj"


@contextlib.contextmanager
def _fake_persistence_module():
    """Make ``torch_utils.persistence._reconstruct_persistent_obj`` resolvable while pickling."""
    pkg, mod = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")
    mod._reconstruct_persistent_obj = _never_called
    pkg.persistence = mod
    saved = {k: sys.modules.get(k) for k in ("torch_utils", "torch_utils.persistence")}
    sys.modules.update({"torch_utils": pkg, "torch_utils.persistence": mod})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class _Persistent:
    """Pickles exactly as an instance of a ``@persistence.persistent_class`` does."""

    def __init__(self, class_name, state, module_src):
        self.class_name, self.state, self.module_src = class_name, state, module_src

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=self.class_name, state=self.state)
        return (_never_called, (meta,), None)


_EDM_NAMES = {
    "NCSNpp": "SongUNet",
    "ADMUNet": "DhariwalUNet",
    "UpDownConv2d": "Conv2d",
    "UNetBlock": "UNetBlock",
    "Linear": "Linear",
    "GroupNorm": "GroupNorm",
    "FourierEmbedding": "FourierEmbedding",
    "PositionalEmbedding": "PositionalEmbedding",
}


def _module_state(params, buffers, children, **attrs):
    """An nn.Module ``__dict__`` as EDM's pickles carry it."""
    hooks = (
        "_backward_pre_hooks", "_backward_hooks", "_forward_hooks", "_forward_hooks_with_kwargs",
        "_forward_hooks_always_called", "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs",
        "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks",
    )  # fmt: skip
    st = {"training": False, "_parameters": params, "_buffers": buffers, "_non_persistent_buffers_set": set()}
    st.update({h: collections.OrderedDict() for h in hooks})
    st["_is_full_backward_hook"] = None
    st["_modules"] = children
    st.update(attrs)
    return st


def _to_edm_tree(module, src, init_kwargs=None):
    children = collections.OrderedDict((n, _to_edm_tree(c, src)) for n, c in module._modules.items())
    params = collections.OrderedDict(
        (n, None if p is None else torch.nn.Parameter(p.detach().clone(), requires_grad=False))
        for n, p in module._parameters.items()
    )
    buffers = collections.OrderedDict(
        (n, None if b is None else b.detach().clone()) for n, b in module._buffers.items()
    )
    if isinstance(module, torch.nn.ModuleDict):  # a plain torch class in EDM's pickles
        md = torch.nn.ModuleDict.__new__(torch.nn.ModuleDict)
        md.__dict__.update(_module_state(params, buffers, children))
        return md
    name = _EDM_NAMES[type(module).__name__]
    extra = dict(_init_args=(), _init_kwargs=dict(init_kwargs or {}))
    if name == "UNetBlock":  # EDM stores numpy scalars in some attributes
        extra.update(skip_scale=np.float64(math.sqrt(0.5)), num_heads=module.num_heads, dropout=0.0)
    return _Persistent(name, _module_state(params, buffers, children, **extra), src)


def write_edm_pickle(
    path,
    net,
    *,
    precond,
    model_class,
    model_kwargs,
    label_dim=0,
    src="",
    drop=None,
    evil=None,
    tamper=None,
    reducer_override=None,
):
    """Write ``{'ema': <persistent precond(model=net)>, ...}`` like NVlabs' training loop.

    For crafted files (tests/test_hostile.py): ``tamper(root, inner)`` edits the
    persistent objects before pickling; ``reducer_override`` replaces how chosen
    objects pickle (``pickle.Pickler.reducer_override``)."""
    inner_kwargs = dict(img_resolution=RES, in_channels=3, out_channels=3, label_dim=label_dim, **model_kwargs)
    inner = _to_edm_tree(net, src, inner_kwargs)
    if drop is not None:  # remove one tensor to test the missing-key error
        mod_path, _, leaf = drop.rpartition(".")
        node = inner
        for part in mod_path.split("."):
            node = node.state["_modules"][part] if isinstance(node, _Persistent) else node.__dict__["_modules"][part]
        node.state["_parameters"].pop(leaf)
    root_kwargs = dict(
        img_resolution=RES, img_channels=3, label_dim=label_dim, use_fp16=False, model_type=model_class, **model_kwargs
    )
    attrs = dict(
        img_resolution=RES, img_channels=3, label_dim=label_dim, use_fp16=False, _init_args=(), _init_kwargs=root_kwargs
    )
    if precond == "EDMPrecond":
        attrs.update(sigma_min=0, sigma_max=float("inf"), sigma_data=0.5)
    else:
        attrs.update(sigma_min=0.02, sigma_max=100)
    if evil is not None:
        attrs["payload"] = evil
    empty = collections.OrderedDict
    root = _Persistent(precond, _module_state(empty(), empty(), empty(model=inner), **attrs), src)
    loss = _Persistent("EDMLoss", dict(P_mean=-1.2, P_std=1.2, sigma_data=0.5, _init_args=(), _init_kwargs={}), src)
    dataset_kwargs = dict(class_name="training.dataset.ImageFolderDataset", path="x.zip", resolution=RES)
    data = dict(ema=root, loss_fn=loss, augment_pipe=None, dataset_kwargs=dataset_kwargs)
    if tamper is not None:
        tamper(root, inner)
    with _fake_persistence_module(), open(path, "wb") as fh:
        pickler_class = pickle.Pickler
        if reducer_override is not None:
            pickler_class = type(
                "CraftingPickler", (pickle.Pickler,), {"reducer_override": lambda _, obj: reducer_override(obj)}
            )
        pickler_class(fh, protocol=4).dump(data)


def _edm_group_norms_reference(net):
    # EDM's GroupNorm: min(32, C // 4) groups (written out here independently of the loader)
    for m in net.modules():
        if isinstance(m, torch.nn.GroupNorm):
            m.num_groups = min(32, m.num_channels // 4)
    return net


def _randomize(net, seed, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return net


def _reference_song(precondition_type):
    torch.manual_seed(0)
    kw = {k: v for k, v in SONG_KW.items() if k in ("model_channels", "augment_dim", "dropout")}
    net = deepinv_models.NCSNpp(
        model_type="ncsn", precondition_type=precondition_type, img_resolution=RES, in_channels=3, out_channels=3,
        channel_mult=(1, 2), num_blocks=1, attn_resolutions=(4,), pretrained=None, pixel_std=0.5,
        _was_trained_on_minus_one_one=True, **kw,
    )  # fmt: skip
    return _randomize(_edm_group_norms_reference(net), 1).eval()


def _reference_adm(kw=ADM_KW):
    torch.manual_seed(0)
    net = deepinv_models.ADMUNet(
        img_resolution=RES, in_channels=3, out_channels=3, label_dim=N_CLASSES,
        channel_mult=tuple(kw["channel_mult"]), num_blocks=kw["num_blocks"],
        attn_resolutions=tuple(kw["attn_resolutions"]), model_channels=kw["model_channels"],
        dropout=kw["dropout"], pretrained=None, pixel_std=0.5, _was_trained_on_minus_one_one=True,
    )  # fmt: skip
    return _randomize(_edm_group_norms_reference(net), 2).eval()


X = torch.randn(2, 3, RES, RES, generator=torch.Generator().manual_seed(5)) * 0.6
SIGMA = torch.tensor([0.05, 2.0])


@pytest.fixture(scope="module")
def edm_files(tmp_path_factory):
    """Tiny EDM pickles (EDMPrecond+SongUNet, VEPrecond+SongUNet, EDMPrecond+DhariwalUNet) and reference outputs."""
    d = tmp_path_factory.mktemp("edm")
    marker = d / "EXECUTED"
    src = _booby_trapped_source(marker)
    out = {"marker": marker}
    with torch.no_grad():
        song = _reference_song("edm")
        write_edm_pickle(
            d / "song-edm.pkl", song, precond="EDMPrecond", model_class="SongUNet", model_kwargs=SONG_KW, src=src
        )
        out["song-edm"] = song(X, SIGMA, input_in_minus_one_one=True)  # deepinv's own EDM preconditioning

        ve = _reference_song("ve-baseline")
        write_edm_pickle(
            d / "song-ve.pkl", ve, precond="VEPrecond", model_class="SongUNet", model_kwargs=SONG_KW, src=src
        )
        out["song-ve"] = ve(X, SIGMA, input_in_minus_one_one=True)

        adm = _reference_adm()
        write_edm_pickle(
            d / "adm.pkl", adm, precond="EDMPrecond", model_class="DhariwalUNet", model_kwargs=ADM_KW,
            label_dim=N_CLASSES, src=src,
        )  # fmt: skip
        onehot = torch.nn.functional.one_hot(torch.tensor([3, 3]), N_CLASSES).float()
        out["adm"] = adm(X, SIGMA, class_labels=onehot, input_in_minus_one_one=True)

        # a small class-conditional network (one level, no attention): the pooled-class tests' stand-in
        write_edm_pickle(
            d / "adm-small.pkl", _reference_adm(ADM_SMALL_KW), precond="EDMPrecond", model_class="DhariwalUNet",
            model_kwargs=ADM_SMALL_KW, label_dim=N_CLASSES, src=src,
        )  # fmt: skip
        write_edm_pickle(
            d / "missing.pkl", song, precond="EDMPrecond", model_class="SongUNet", model_kwargs=SONG_KW, src=src,
            drop="map_layer0.bias",
        )  # fmt: skip
    out["dir"] = d
    return out


# ======================================================================= EDM tests
@pytest.mark.parametrize("name", ["song-edm", "song-ve", "adm"])
def test_edm_pickle_reproduces_reference_denoiser(edm_files, name):
    den, meta = load_edm_pickle(edm_files["dir"] / f"{name}.pkl")
    labels = torch.tensor([3, 3]) if name == "adm" else None
    with torch.no_grad():
        D = den(X, SIGMA, labels)
        s = den.score(X, SIGMA, labels)
    ref = edm_files[name]
    assert torch.allclose(D, ref, rtol=1e-5, atol=2e-5), float((D - ref).abs().max())
    s_ref = (ref - X) / SIGMA[:, None, None, None] ** 2
    rel = (s - s_ref).flatten(1).norm(dim=1) / s_ref.flatten(1).norm(dim=1)
    assert (rel < 1e-4).all(), rel
    assert meta["precond_class"] == ("VEPrecond" if name == "song-ve" else "EDMPrecond")
    assert meta["model_class"] == ("DhariwalUNet" if name == "adm" else "SongUNet")
    assert meta["label_dim"] == (N_CLASSES if name == "adm" else 0)
    assert meta["other_keys"] == ["augment_pipe", "dataset_kwargs", "loss_fn"]
    assert not edm_files["marker"].exists(), "the pickle's embedded source was executed"
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules


def test_edm_group_norms_follow_edm_rule(edm_files):
    den, _ = load_edm_pickle(edm_files["dir"] / "song-edm.pkl")
    norms = [m for m in den.net.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(m.num_groups == min(32, m.num_channels // 4) for m in norms)
    assert any(m.num_groups != 32 for m in norms)  # narrow layers: deepinv's default 32 would be wrong


def test_edm_persistent_objects_are_stubs(edm_files):
    data = read_edm_pickle(edm_files["dir"] / "song-edm.pkl")
    root = data["ema"]
    assert type(root).__name__ == "PersistentObject" and root.class_name == "EDMPrecond"
    assert root.module_src_len > 0 and len(root.module_src_sha256) == 64
    assert not hasattr(root, "forward")
    assert not edm_files["marker"].exists()


def test_edm_missing_key_is_named(edm_files):
    with pytest.raises(CheckpointError, match=r"missing key 'map_layer0\.bias'"):
        load_edm_pickle(edm_files["dir"] / "missing.pkl")


class _Evil:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


@pytest.mark.parametrize("fn", [os.system, eval], ids=["os.system", "builtins.eval"])
def test_code_executing_pickle_is_refused(tmp_path, fn):
    marker = tmp_path / "PWNED"
    arg = f"touch {marker}" if fn is os.system else f"open({str(marker)!r}, 'w')"
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"ema": _Evil(fn, arg)}, fh, protocol=4)
    with pytest.raises(UnsafePickleError) as info:
        read_edm_pickle(path)
    msg = str(info.value)
    assert str(path) in msg and fn.__name__ in msg
    assert not marker.exists()


def test_code_executing_global_nested_in_a_network_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "nested.pkl"
    net = _reference_song("edm")
    write_edm_pickle(
        path, net, precond="EDMPrecond", model_class="SongUNet", model_kwargs=SONG_KW,
        evil=_Evil(os.system, f"touch {marker}"),
    )  # fmt: skip
    with pytest.raises(UnsafePickleError, match="system"):
        load_edm_pickle(path)
    assert not marker.exists()


# ================================================================= score_sde tests
def _sde_reference():
    torch.manual_seed(0)
    return _randomize(ScoreSDENCSNpp(TINY_SDE), 3, scale=0.05).eval()


@pytest.fixture(scope="module")
def sde_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("sde")
    ref = _sde_reference()
    raw = _randomize(ScoreSDENCSNpp(TINY_SDE), 4, scale=0.05)
    raw.load_state_dict(ref.state_dict())
    _randomize(raw, 5, scale=0.05)  # raw weights ≠ EMA weights
    with torch.no_grad():  # score_sde's EMA never touches the frozen Fourier weights W
        raw.all_modules[0].W.copy_(ref.all_modules[0].W)
    model_sd = collections.OrderedDict(("module." + k, v.clone()) for k, v in raw.state_dict().items())
    model_sd["module.sigmas"] = torch.exp(torch.linspace(math.log(348.0), math.log(0.01), 2000))
    params = dict(ref.named_parameters())
    shadow = [params[k].detach().clone() for k in ref.trainable_parameter_names()]
    ckpt = {
        "optimizer": {
            "state": {},
            "param_groups": [{"lr": 2e-4, "betas": (0.9, 0.999), "params": list(range(len(shadow)))}],
        },
        "model": model_sd,
        "ema": {"decay": 0.999, "num_updates": 10, "shadow_params": shadow},
        "step": 10,
    }
    torch.save(ckpt, d / "checkpoint_48.pth")
    x = torch.rand(2, 3, RES, RES, generator=torch.Generator().manual_seed(6))
    sigma = torch.tensor([0.02, 5.0])
    with torch.no_grad():
        out = dict(ref=ref(x, sigma), raw=raw(x, sigma))
    missing = dict(
        ckpt, model=collections.OrderedDict((k, v) for k, v in model_sd.items() if k != "module.all_modules.1.weight")
    )
    torch.save(missing, d / "missing.pth")
    return dict(path=d / "checkpoint_48.pth", missing=d / "missing.pth", x=x, sigma=sigma, **out)


def test_score_sde_checkpoint_uses_ema_weights(sde_file):
    net = load_score_sde_checkpoint(sde_file["path"], TINY_SDE)
    with torch.no_grad():
        out = net(sde_file["x"], sde_file["sigma"])
    assert torch.allclose(out, sde_file["ref"], rtol=1e-5, atol=1e-4)
    assert not torch.allclose(out, sde_file["raw"], rtol=1e-2, atol=1e-2)  # EMA weights, not the raw ones
    assert net.checkpoint_meta["step"] == 10 and net.checkpoint_meta["ignored_keys"] == ["sigmas"]
    raw = load_score_sde_checkpoint(sde_file["path"], TINY_SDE, use_ema=False)
    with torch.no_grad():
        assert torch.allclose(raw(sde_file["x"], sde_file["sigma"]), sde_file["raw"], rtol=1e-5, atol=1e-4)


def test_score_sde_missing_key_is_named(sde_file):
    with pytest.raises(CheckpointError, match=r"missing key 'all_modules\.1\.weight'"):
        load_score_sde_checkpoint(sde_file["missing"], TINY_SDE)


def test_score_sde_wrong_config_is_reported(sde_file):
    with pytest.raises(CheckpointError, match="key"):
        other = ScoreSDENCSNppConfig(image_size=RES, nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,))
        load_score_sde_checkpoint(sde_file["path"], other)


def test_ffhq256_network_size():
    # P Table 1: 66 M parameters (score_sde's ffhq_256_ncsnpp_continuous), built on the meta device
    with torch.device("meta"):
        net = ScoreSDENCSNpp()
    assert sum(p.numel() for p in net.parameters()) == 65_574_549
    names = list(net.state_dict())
    assert names[0] == "all_modules.0.W" and net.trainable_parameter_names()[0] == "all_modules.1.weight"


def test_fir_resampling_preserves_constants():
    x = torch.ones(1, 2, 8, 8, dtype=torch.float64)
    k = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64)
    k2 = torch.outer(k, k) / torch.outer(k, k).sum()
    down = upfirdn2d(x, k2, down=2, pad=(1, 1))
    up = upfirdn2d(x, k2 * 4, up=2, pad=(2, 1))
    assert down.shape == (1, 2, 4, 4) and up.shape == (1, 2, 16, 16)
    assert torch.allclose(down[..., 1:-1, 1:-1], torch.ones(()).double())
    assert torch.allclose(up[..., 2:-2, 2:-2], torch.ones(()).double())


# ===================================================================== priors
def test_edm_prior_interface(edm_files):
    prior = EDMPrior.from_pickle(edm_files["dir"] / "song-edm.pkl", name="ffhq64")
    assert prior.image_shape == (3, RES, RES) and prior.dim == 3 * RES * RES
    assert isinstance(prior.schedule, EDMSchedule) and prior.schedule.sigma_max == 80.0 and prior.schedule.t_eps == 1e-3
    assert prior.num_parameters() == sum(p.numel() for p in _reference_song("edm").parameters())
    ref = edm_files["song-edm"]
    s_ref = (ref - X) / SIGMA[:, None, None, None] ** 2
    with torch.no_grad():
        s_vec = prior.score(X, SIGMA)
        s_scalar = prior.score(X[1:], 2.0)
    assert torch.allclose(s_vec[1], s_ref[1], rtol=1e-4, atol=1e-4)
    assert torch.allclose(s_scalar[0], s_vec[1], rtol=1e-5, atol=1e-5)
    # double precision agrees with float32
    prior.to(torch.float64)
    with torch.no_grad():
        s64 = prior.score(X.double(), SIGMA.double())
    assert s64.dtype == torch.float64 and torch.allclose(s64.float(), s_vec, rtol=1e-3, atol=1e-2)
    # image scale
    u = torch.rand(1, 3, RES, RES)
    assert torch.allclose(prior.to_unit(prior.from_unit(u)), u)
    assert prior.from_unit(torch.zeros(1)).item() == -1.0 and math.isclose(prior.unit_log_det, prior.dim * math.log(2))


def test_conditional_prior_needs_a_class(edm_files):
    path = edm_files["dir"] / "adm.pkl"
    with pytest.raises(ValueError, match="class_label"):
        EDMPrior.from_pickle(path)
    with pytest.raises(ValueError, match="not in"):
        EDMPrior.from_pickle(path, class_label=N_CLASSES)
    prior = EDMPrior.from_pickle(path, name="imagenet64", class_label=3)
    assert prior.name == "imagenet64-class3"
    with torch.no_grad():
        s = prior.score(X, SIGMA)
        s_other = EDMPrior.from_pickle(path, class_label=4).score(X, SIGMA)
    ref = edm_files["adm"]
    assert torch.allclose(s[1], ((ref - X) / SIGMA[:, None, None, None] ** 2)[1], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(s, s_other)


def test_a_pooled_conditional_prior_evaluates_each_image_under_its_own_class(edm_files, tmp_path):
    """P's imagenet64 pools classes 0–9: bound to one label per image (with_labels), image i's score
    is that of the class-c_i prior; a sub-batch (for_rows, the chunks of UnitScalePrior) keeps its
    rows' labels; an evaluation without labels, with labels of another batch or outside the pool
    is refused; the pool and the bound labels are in the fingerprint and survive save/load."""
    path = edm_files["dir"] / "adm-small.pkl"
    pooled = EDMPrior.from_pickle(path, name="imagenet64", pooled_labels=range(N_CLASSES))
    assert pooled.pooled_labels == tuple(range(N_CLASSES)) and pooled.name == "imagenet64"
    x = torch.cat([X, X.flip(0), X * 0.5])  # 6 images
    labels = [3, 7, 0, 3, 9, 7]
    with torch.no_grad():
        per_class = torch.cat([pooled.for_class(c).score(x[i : i + 1], 0.5) for i, c in enumerate(labels)])
        assert torch.allclose(pooled.with_labels(labels).score(x, 0.5), per_class, rtol=1e-4, atol=1e-4)
        # the [0, 1] view in chunks of 4 rows and 2 rows: each chunk keeps its rows' labels
        for m in (4, 2):
            unit = UnitScalePrior(pooled, max_batch=m).with_labels(labels)
            one = lambda i, c: UnitScalePrior(pooled.for_class(c)).score(x[i : i + 1], 0.5)  # noqa: E731
            ref = torch.cat([one(i, c) for i, c in enumerate(labels)])
            assert torch.allclose(unit.score(x, 0.5), ref, rtol=1e-4, atol=1e-3)
            assert torch.allclose(unit.for_rows(slice(2, 5)).score(x[2:5], 0.5), ref[2:5], rtol=1e-4, atol=1e-3)
        # the labels matter: others give other scores
        assert not torch.allclose(pooled.with_labels([0] * 6).score(x, 0.5), per_class, rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="pools classes .*each image's class label"):
        pooled.score(x, 0.5)
    with pytest.raises(ValueError, match="pools classes .*give each image's class label"):
        pooled.with_labels(None)
    with pytest.raises(ValueError, match="bound to the class labels of 6 images, evaluated on 2"):
        pooled.with_labels(labels).score(x[:2], 0.5)
    with pytest.raises(ValueError, match=r"not \[10\]"):
        pooled.with_labels([1, 10])
    few = EDMPrior.from_pickle(path, pooled_labels=[1, 2])
    with pytest.raises(ValueError, match=r"not \[0\]"):
        few.with_labels([0, 1])
    with pytest.raises(ValueError, match="does not pool classes"):
        few.for_class(5)
    with pytest.raises(ValueError, match="class_label .* or class_labels"):
        EDMPrior.from_pickle(path, class_label=1, pooled_labels=[1, 2])
    with pytest.raises(ValueError, match="must be distinct"):
        EDMPrior.from_pickle(path, pooled_labels=[1, 1])
    with pytest.raises(ValueError, match="unconditional"):
        EDMPrior.from_pickle(edm_files["dir"] / "song-edm.pkl", pooled_labels=[0])
    # an unconditional prior takes no labels, and its views are itself
    song = EDMPrior.from_pickle(edm_files["dir"] / "song-edm.pkl")
    assert song.with_labels(None) is song and song.for_rows(slice(0, 1)) is song
    with pytest.raises(ValueError, match="takes no class labels"):
        song.with_labels([0])
    # fingerprints: the pool, one class and each binding of labels are different priors
    prints = {
        pooled.fingerprint(),
        pooled.for_class(3).fingerprint(),
        pooled.with_labels(labels).fingerprint(),
        pooled.with_labels(labels[::-1]).fingerprint(),
        EDMPrior.from_pickle(path, name="imagenet64", pooled_labels=range(5)).fingerprint(),
    }
    assert len(prints) == 5
    assert pooled.with_labels(labels).fingerprint() == pooled.with_labels(list(labels)).fingerprint()
    # save / load keeps the pool (the workflow's converted file)
    pooled.save(tmp_path / "model.pt")
    back = load_prior(tmp_path / "model.pt")
    assert back.pooled_labels == pooled.pooled_labels and back.base.fingerprint() == pooled.fingerprint()


def test_the_engine_evaluates_each_image_of_a_pooled_prior_under_its_own_class(edm_files):
    """q of a batch under a prior pooling classes equals, image by image, q under that image's class
    alone (float64: to rounding), while the engine drops finished images from its batch (for_rows)."""
    pooled = UnitScalePrior(EDMPrior.from_pickle(edm_files["dir"] / "adm-small.pkl", pooled_labels=range(N_CLASSES)))
    pooled.to(torch.float64)
    x = torch.rand(4, 3, RES, RES, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x[1] = 0.5  # a flat image: another number of steps than the others
    labels = [3, 7, 3, 0]
    cfg = PotentialSettings(n_probes=2, atol=1e-2, rtol=1e-2, dtype=torch.float64, batch_size=3)
    got = potential_batched(pooled.with_labels(labels), x, cfg, seed=4)
    assert len(set(got.nfe[:3])) > 1, got.nfe  # the first batch's images finished at different steps
    alone = [
        potential_batched(pooled.for_class(c), x[i : i + 1], cfg, seed=4, probe_keys=[i]) for i, c in enumerate(labels)
    ]
    for i, r in enumerate(alone):
        assert got.nfe[i] == r.nfe[0]
        assert got.q[i] == pytest.approx(r.q[0], rel=1e-9), (i, got.q[i], r.q[0])
    other = potential_batched(pooled.for_class(7), x[:1], cfg, seed=4, probe_keys=[0])
    assert abs(other.q[0] - got.q[0]) > 1e-3  # the classes are not interchangeable


def test_score_sde_prior_interface(sde_file):
    prior = ScoreSDEPrior.from_checkpoint(sde_file["path"], TINY_SDE)
    assert prior.image_shape == (3, RES, RES)
    assert prior.schedule == VESchedule(sigma_min=0.01, sigma_max=348.0, t_eps=1e-3)
    assert prior.data_range == (0.0, 1.0) and prior.unit_log_det == 0.0
    with torch.no_grad():
        assert torch.allclose(prior.score(sde_file["x"], sde_file["sigma"]), sde_file["ref"], rtol=1e-5, atol=1e-4)


def test_dispatch(edm_files, sde_file):
    assert checkpoint_format(edm_files["dir"] / "song-edm.pkl") == "edm_pickle"
    assert checkpoint_format(sde_file["path"]) == "score_sde"
    assert isinstance(load_pretrained_prior(edm_files["dir"] / "song-edm.pkl"), EDMPrior)
    assert isinstance(load_pretrained_prior(sde_file["path"], config=TINY_SDE), ScoreSDEPrior)


@pytest.fixture
def fast_cpu():
    # Random-weight networks fed images at σ ~ 100 produce subnormal floats, which are
    # ~25× slower on CPU; flushing them keeps this test fast (torch's default, off, is restored).
    # One thread: hundreds of tiny-network evaluations gain nothing from intra-op threads
    # and lose much to them when the CPU is shared.
    threads = torch.get_num_threads()
    torch.set_flush_denormal(True)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)


@pytest.mark.parametrize("kind", ["edm", "score_sde"])
def test_potential_end_to_end(edm_files, sde_file, kind, fast_cpu):
    if kind == "edm":
        prior = EDMPrior.from_pickle(edm_files["dir"] / "song-edm.pkl")
        x = X[:1].clamp(-1, 1)
    else:
        prior = ScoreSDEPrior.from_checkpoint(sde_file["path"], TINY_SDE)
        x = sde_file["x"][:1]
    res = potential(prior, x, LOOSE)
    assert np.isfinite(res.q).all() and np.isfinite(res.stderr).all() and (res.nfe > 0).all(), res
