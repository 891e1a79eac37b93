"""Scatter–gather (prior_landscape.shards): every unit in exactly one shard, and a gather that
rebuilds the unsharded table row for row or refuses, naming the shard file."""

import numpy as np
import pandas as pd
import pytest

from prior_landscape.io.artefacts import provenance, read_table, write_table
from prior_landscape.shards import Shard, ShardError, gather_tables, shard_units

FAMILIES = ["motion", "gaussian"]  # not alphabetical: the gather sorts by the configured order


@pytest.mark.parametrize("n_units", [0, 1, 2, 3, 7, 16, 100, 101])
def test_every_unit_in_exactly_one_shard(n_units):
    for count in [1, 2, 3, 4, 5, 8, 32, 100, 150]:
        shards = [shard_units(n_units, i, count) for i in range(count)]
        together = np.concatenate(shards)
        assert sorted(together.tolist()) == list(range(n_units)), (n_units, count)
        assert len(together) == n_units  # none twice
        for i, units in enumerate(shards):
            assert (np.diff(units) > 0).all() and (units % count == i).all()  # ascending, strided
            assert len(units) in (n_units // count, -(-n_units // count))  # balanced: sizes differ by ≤ 1
        np.testing.assert_array_equal(shard_units(n_units, count - 1, count), shards[-1])  # deterministic


@pytest.mark.parametrize("index, count", [(-1, 2), (2, 2), (0, 0)])
def test_a_shard_outside_its_count_is_refused(index, count):
    with pytest.raises(ValueError, match=f"shard {index} of {count}"):
        shard_units(5, index, count)


def _sweep(n_images: int) -> pd.DataFrame:
    """A sweep-like table in the unsharded order: family × θ × image, two rows' worth of values each."""
    rows = [(f, t, i) for f in FAMILIES for t in (0.0, 2.5, 5.0) for i in range(n_images)]
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "family": [r[0] for r in rows],
            "theta": [r[1] for r in rows],
            "image_id": np.array([r[2] for r in rows], dtype=np.int64),
            "pixels": [rng.random(4).astype(np.float32) if r[2] == 0 else None for r in rows],
            "q": rng.normal(size=len(rows)),
        }
    )


def _write_shards(tmp_path, df, count, config=None, name="s"):
    n = int(df.image_id.max()) + 1
    paths = []
    for i in range(count):
        shard = Shard("likelihood_sweep", i, count, n)
        part = df[df.image_id.isin(shard.units)].reset_index(drop=True)
        prov = provenance(config or {"sweep": {"n_images": n}}, {"probes": 1}, "cpu", 1.5, **shard.provenance())
        paths.append(write_table(part, tmp_path / f"{name}.{i}-of-{count}.parquet", prov))
    return paths


@pytest.mark.parametrize("count", [2, 3, 5])
def test_gather_rebuilds_the_unsharded_table(tmp_path, count):
    df = _sweep(5)
    paths = _write_shards(tmp_path, df, count)
    table, prov = gather_tables(paths, "likelihood_sweep", "table", {"family": FAMILIES})
    pd.testing.assert_frame_equal(table.drop(columns="pixels"), df.drop(columns="pixels"))
    assert [p is None for p in table.pixels] == [p is None for p in df.pixels]
    assert all(np.array_equal(a, b) for a, b in zip(table.pixels, df.pixels) if a is not None)
    assert prov["config"] == {"sweep": {"n_images": 5}} and prov["seeds"] == {"probes": 1} and "shard" not in prov
    assert prov["shards"]["count"] == count and prov["wall_time_s"] == pytest.approx(1.5 * count)
    # written and read back: the same artefact as the unsharded one's table
    out = write_table(table, tmp_path / "gathered.parquet", prov)
    pd.testing.assert_frame_equal(read_table(out).drop(columns="pixels"), df.drop(columns="pixels"))


def test_gather_of_more_shards_than_units_keeps_the_column_types(tmp_path):
    df = _sweep(2)
    paths = _write_shards(tmp_path, df, 4)  # shards 2 and 3 are empty
    table, _ = gather_tables(paths, "likelihood_sweep", "table", {"family": FAMILIES})
    pd.testing.assert_frame_equal(table.drop(columns="pixels"), df.drop(columns="pixels"))


def test_gather_refuses_a_missing_shard(tmp_path):
    paths = _write_shards(tmp_path, _sweep(5), 3)
    with pytest.raises(ShardError, match=r"s\.0-of-3\.parquet is shard 0 of 3, but 2 shard file\(s\) were given"):
        gather_tables([paths[0], paths[2]], "likelihood_sweep", "table", {"family": FAMILIES})
    with pytest.raises(ShardError, match=r"s\.2-of-3\.parquet is shard 2 of 3, given in the place of shard 1"):
        gather_tables([paths[0], paths[2], paths[2]], "likelihood_sweep", "table", {"family": FAMILIES})


def test_gather_refuses_a_duplicated_shard(tmp_path):
    paths = _write_shards(tmp_path, _sweep(5), 3)
    with pytest.raises(ShardError, match=r"s\.0-of-3\.parquet is shard 0 of 3, as .*s\.0-of-3\.parquet: duplicated"):
        gather_tables([paths[0], paths[0], paths[2]], "likelihood_sweep", "table", {"family": FAMILIES})


def test_gather_refuses_foreign_shards(tmp_path):
    df = _sweep(5)
    ours = _write_shards(tmp_path, df, 2)
    other_config = _write_shards(tmp_path, df, 2, config={"sweep": {"n_images": 5, "seed": 9}}, name="other")
    with pytest.raises(ShardError, match=r"other\.1-of-2\.parquet was made with another config than .*s\.0-of-2"):
        gather_tables([ours[0], other_config[1]], "likelihood_sweep", "table", {"family": FAMILIES})
    other_count = _write_shards(tmp_path, df, 3, name="three")
    with pytest.raises(ShardError, match=r"three\.1-of-3\.parquet is shard 1 of 3, but 2 shard file\(s\)"):
        gather_tables([ours[0], other_count[1]], "likelihood_sweep", "table", {"family": FAMILIES})
    unsharded = write_table(df, tmp_path / "whole.parquet", provenance({}, {}, "cpu", 1.0))
    with pytest.raises(ShardError, match=r"whole\.parquet is not a shard file"):
        gather_tables([ours[0], unsharded], "likelihood_sweep", "table", {"family": FAMILIES})


def test_gather_refuses_a_shard_holding_units_not_its_own(tmp_path):
    df = _sweep(4)
    paths = _write_shards(tmp_path, df, 2)
    prov = read_table(paths[1]).attrs["provenance"]
    # shard 1 (images 1, 3) also holds image 2, shard 0's; then lacks image 3
    write_table(df[df.image_id.isin([1, 2, 3])], paths[1], prov)
    with pytest.raises(ShardError, match=r"s\.1-of-2\.parquet holds unit 2, which is not one of its units \[1, 3\], "):
        gather_tables(paths, "likelihood_sweep", "table", {"family": FAMILIES})
    write_table(df[df.image_id == 1], paths[1], prov)
    with pytest.raises(ShardError, match=r"s\.1-of-2\.parquet lacks unit\(s\) \[3\]"):
        gather_tables(paths, "likelihood_sweep", "table", {"family": FAMILIES})


def test_gather_of_benchmark_runs_keeps_the_configured_seed_order_and_the_blocks(tmp_path):
    """Benchmark units are blocks of cases (the batches a method sees); rows seed × case, seeds in the
    configured order (here 2 before 0), not sorted."""
    seeds, n_cases, block = [2, 0], 5, 2
    runs = pd.DataFrame(
        {
            "case": np.tile(np.arange(n_cases), len(seeds)),
            "sigma_y": 0.01,
            "seed": np.repeat(seeds, n_cases),
            "psnr": np.arange(2 * n_cases, dtype=float),
        }
    )
    paths = []
    for i in range(2):
        shard = Shard("benchmark", i, 2, n_cases, block)
        np.testing.assert_array_equal(shard.units, [[0, 1, 4], [2, 3]][i])  # blocks {0, 1}, {2, 3}, {4}
        part = runs[runs.case.isin(shard.units)].reset_index(drop=True)
        prov = provenance({"benchmark": 1}, {"seeds": seeds}, "cpu", 1.0, **shard.provenance())
        paths.append(write_table(part, tmp_path / f"runs.{i}-of-2.parquet", prov))
    table, _ = gather_tables(paths, "benchmark", "runs", {"seed": seeds})
    pd.testing.assert_frame_equal(table, runs)
    assert Shard.of_job("benchmark", {"shard": "1", "shards": "3"}, n_cases, block).units.tolist() == [2, 3]
    assert Shard.of_job("benchmark", {}, n_cases, block).units.tolist() == list(range(n_cases))  # unsharded
    with pytest.raises(ValueError, match="4 shards of 3 block"):
        Shard.of_job("benchmark", {"shard": "0", "shards": "4"}, n_cases, block)


def test_a_table_every_shard_computes_whole_is_written_once_and_must_agree(tmp_path):
    """P eq. 14's λ table of the posterior profiles is chosen from every image in every shard: the
    gather writes shard 0's once, and refuses shards whose copies differ (naming the file)."""
    lam = pd.DataFrame({"lam": [0.0, 1e-14, 3e-14], "admissible": [False, False, True], "family": "gaussian"})
    paths = []
    for i in range(3):
        shard = Shard("posterior_profiles", i, 3, 5)
        prov = provenance({"posterior": {"n_images": 5}}, {"seed": 4}, "cpu", 1.0, **shard.provenance())
        paths.append(write_table(lam, tmp_path / f"lam.{i}-of-3.parquet", prov))
    table, prov = gather_tables(paths, "posterior_profiles", "lam")
    pd.testing.assert_frame_equal(table, lam)
    assert prov["shards"]["count"] == 3 and "shard" not in prov

    other = lam.assign(admissible=[False, True, True])
    shard = Shard("posterior_profiles", 2, 3, 5)
    prov = provenance({"posterior": {"n_images": 5}}, {"seed": 4}, "cpu", 1.0, **shard.provenance())
    write_table(other, paths[2], prov)
    with pytest.raises(ShardError, match=r"lam\.2-of-3\.parquet: its lam table differs from .*lam\.0-of-3"):
        gather_tables(paths, "posterior_profiles", "lam")
