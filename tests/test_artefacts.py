"""Artefacts: provenance travels with the Parquet file; writes are all-or-nothing."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from prior_landscape.io import artefacts
from prior_landscape.io.artefacts import atomic_output, provenance, read_provenance, read_table, write_table


def test_round_trip_with_provenance(tmp_path):
    df = pd.DataFrame({"prior": ["a", "b"], "theta": [0.0, 0.5], "q": [-1.5, -2.0]})
    prov = provenance({"sweep": {"n_images": 2}}, seeds={"probes": 3}, device="cpu", wall_time_s=1.25)
    path = write_table(df, tmp_path / "sub" / "t.parquet", prov)
    back = read_table(path)
    pd.testing.assert_frame_equal(back, df)
    meta = back.attrs["provenance"]
    assert meta["config"] == {"sweep": {"n_images": 2}}
    assert meta["seeds"] == {"probes": 3} and meta["wall_time_s"] == 1.25
    assert meta["versions"]["torch"] and meta["versions"]["pyarrow"]
    assert meta["device"].startswith("cpu")
    assert set(meta) >= {"config", "versions", "git_commit", "device", "seeds", "wall_time_s", "created_utc"}


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "t.parquet"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"half a file")
            raise RuntimeError("killed mid-way")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_version(tmp_path, monkeypatch):
    target = tmp_path / "t.parquet"
    write_table(pd.DataFrame({"x": [1]}), target, provenance())

    def broken(table, where, **kw):
        with open(where, "wb") as fh:
            fh.write(b"PAR1 partial")
        raise OSError("disk full")

    monkeypatch.setattr(artefacts.pq, "write_table", broken)
    with pytest.raises(OSError):
        write_table(pd.DataFrame({"x": [2]}), target, provenance())
    assert read_table(target)["x"].tolist() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_killed_process_leaves_no_complete_looking_file(tmp_path):
    """SIGKILL while writing: only a hidden .part file can remain, never the target."""
    target = tmp_path / "t.parquet"
    code = textwrap.dedent(
        f"""
        import os, signal, time
        from prior_landscape.io.artefacts import atomic_output
        with atomic_output({str(target)!r}) as tmp:
            tmp.write_bytes(b"x" * 1000)
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == -signal.SIGKILL
    assert not target.exists()
    assert all(p.name.startswith(".t.parquet.") and p.name.endswith(".part") for p in tmp_path.iterdir())


def test_foreign_parquet_is_rejected(tmp_path):
    path = tmp_path / "foreign.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(path)
    with pytest.raises(ValueError, match="carries no provenance"):
        read_provenance(path)
    with pytest.raises(FileNotFoundError, match="run the rule that produces it"):
        read_table(tmp_path / "missing.parquet")


def test_git_commit_is_recorded_inside_a_repository(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f").write_text("x")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    subprocess.run(["git", "-C", str(tmp_path), "add", "f"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-qm", "m"], check=True, env=env)
    sha = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert artefacts.git_commit(tmp_path) == sha
    (tmp_path / "f").write_text("changed")
    assert artefacts.git_commit(tmp_path) == sha + "-dirty"
    assert json.dumps(provenance())  # serialisable
