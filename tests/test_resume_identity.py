"""A resumed job continues only its own run: the resume fingerprint covers every network weight
and the class label of a conditional model, also behind the [0, 1] wrapper of imported priors
(the bug of the redesign issue: a re-imported checkpoint under the same prior name resumed the
old descent)."""

import torch
from test_checkpoints import (
    ADM_KW,
    N_CLASSES,
    RES,
    SONG_KW,
    _randomize,
    _reference_adm,
    _reference_song,
    write_edm_pickle,
)

from prior_landscape.landscape.critical_points import descend
from prior_landscape.priors import load_prior
from prior_landscape.priors.pretrained import convert_pretrained_prior
from prior_landscape.runs import RunOptions


def _imported(tmp_path, tag, net, **kw):
    """Write ``net`` as an EDM pickle, import it as the workflow does, load its [0, 1] view."""
    pkl, model = tmp_path / f"{tag}.pkl", tmp_path / tag / "model.pt"
    write_edm_pickle(pkl, net, **kw)
    convert_pretrained_prior(pkl, model, name="ffhq64", class_label=kw.get("class_label"))
    return load_prior(model)


def _descend(prior, x0, state, n):
    return descend(prior, x0, eta=0.02, n_steps=n, options=RunOptions(state_path=state, checkpoint_every=1))


def test_other_weights_under_the_same_name_start_afresh(tmp_path):
    song = dict(precond="EDMPrecond", model_class="SongUNet", model_kwargs=SONG_KW)
    a = _imported(tmp_path, "a", _randomize(_reference_song("edm"), 1), **song)
    b = _imported(tmp_path, "b", _randomize(_reference_song("edm"), 2), **song)
    assert a.name == b.name
    x0 = torch.rand(2, 3, RES, RES, generator=torch.Generator().manual_seed(0))
    state = tmp_path / "state.pt"
    _descend(a, x0, state, 3)
    with_b = _descend(b, x0, state, 5)
    fresh_b = _descend(b, x0, tmp_path / "fresh.pt", 5)
    assert with_b.resumed_from == 0, "resumed a descent made with other network weights"
    assert torch.equal(with_b.end, fresh_b.end)
    assert _descend(b, x0, state, 6).resumed_from == 5  # its own state still resumes


def test_another_class_label_starts_afresh(tmp_path):
    pkl = tmp_path / "adm.pkl"
    write_edm_pickle(
        pkl,
        _reference_adm(),
        precond="EDMPrecond",
        model_class="DhariwalUNet",
        model_kwargs=ADM_KW,
        label_dim=N_CLASSES,
    )
    priors = []
    for label in (3, 4):
        model = tmp_path / f"class{label}" / "model.pt"
        convert_pretrained_prior(pkl, model, name="imagenet64", class_label=label)
        priors.append(load_prior(model))
    x0 = torch.rand(1, 3, RES, RES, generator=torch.Generator().manual_seed(1))
    state = tmp_path / "state.pt"
    _descend(priors[0], x0, state, 2)
    assert _descend(priors[1], x0, state, 4).resumed_from == 0
