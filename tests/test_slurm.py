"""The workflow on a live SLURM cluster (a one-node cluster on this machine, see
slurm_cluster.py) with profiles/slurm: every job goes through sbatch and its
artefacts equal those of a local run; a training job killed after its first
checkpoint is resubmitted, resumes from the checkpoint and ends with the same
artefacts as an undisturbed run; the profile's `cores: 8`, more than the 2-CPU node has, is capped
to the node (the figures group completes instead of pending), and a request no node can meet stops
the run before any sbatch.

To stay within minutes on 2 cores the runs target the likelihood-sweep branch of
the tiny configuration (kernels, the analytic and the trained natural prior,
their sweeps, Figs. 5 and 7 as one grouped SLURM job), with the score network
trained 100 steps of batch 128 and checkpointed every 50 (a multiple of its 50-step
loss window, so a resumed run's loss history equals an uninterrupted one's).
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO
from slurm_cluster import cluster_answers, slurm_cluster  # noqa: F401 - the session fixture

from prior_landscape.io.artefacts import read_table

pytestmark = pytest.mark.slow
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
PROFILE = REPO / "profiles/slurm"
TARGETS = ["results/figures/fig05.png", "results/figures/fig07.png"]
TRAIN_OUT = ["results/priors/scorenet-natural/model.pt", "results/priors/scorenet-natural/training_loss.parquet"]
STATE = "results/priors/scorenet-natural/training_state.pt"
# compared between runs: every artefact the targets need (timing artefacts are not among them)
ARTEFACTS = [
    "results/kernels/blur_families.parquet",
    "results/priors/gmm-natural/fit_summary.parquet",
    "results/priors/scorenet-natural/training_loss.parquet",
    "results/sweeps/gmm-natural.parquet",
    "results/sweeps/scorenet-natural.parquet",
]
MODELS = ["results/priors/gmm-natural/model.pt", "results/priors/scorenet-natural/model.pt"]
TIMING_COLUMNS = ("wall_s", "seconds", "time_s")


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _config() -> dict:
    cfg = _merge(
        yaml.safe_load((REPO / "config.yaml").read_text()),
        yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text()),
    )
    # every prior but the digits' (the posterior and benchmark sections name the others)
    cfg["priors"] = {k: v for k, v in cfg["priors"].items() if k != "scorenet-digits"}
    # batches large enough that the 50 steps after the first checkpoint take seconds, so the job is still
    # running when the test scancels it (it polls every 0.2 s); no larger: the training runs three and a
    # half times in this module (the local reference, the SLURM run, the killed and resumed run), and at
    # 512 it was three quarters of the local run; at 128 a step takes ≈0.2–0.5 s on 2 free CPUs. What is
    # compared (artefacts equal between runs, the resumed run's records) holds for any batch size.
    cfg["priors"]["scorenet-natural"]["training"].update(steps=100, checkpoint_every=50, batch_size=128)
    # the sweeps in shards of one image each: each shard and each gather an sbatch job of its own (issue 16)
    cfg["sweep"].update(theta={"start": 0.0, "stop": 4.0, "num": 2}, n_images=2)
    cfg["shards"] = {**cfg.get("shards", {}), "likelihood_sweep": 2}
    return cfg


def _workdir(tmp: Path) -> Path:
    work = tmp / "work"
    work.mkdir(parents=True)
    (work / "config.yaml").write_text(yaml.safe_dump(_config(), sort_keys=False, allow_unicode=True))
    return work


def _check(proc: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    if proc.returncode != 0:
        raise AssertionError(f"{what} failed ({proc.returncode}):\n{proc.stdout[-5000:]}\n{proc.stderr[-8000:]}")
    return proc


def _slurm_cmd(work: Path, extra_profile: Path | None, *args: str) -> list[str]:
    profiles = ["--profile", str(PROFILE)] + (["--profile", str(extra_profile)] if extra_profile else [])
    return [
        *SNAKEMAKE,
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(work),
        *profiles,
        # the test's own configuration instead of the profile's config/paper.yaml
        "--configfile",
        str(work / "config.yaml"),
        # poll soon after submission (3 × 3 s stays below MinJobAge), keep every job's SLURM log,
        # and print the sbatch calls
        "--slurm-init-seconds-before-status-checks",
        "3",
        "--slurm-keep-successful-logs",
        "--verbose",
        *args,
    ]


def _env(cluster) -> dict:
    return {**os.environ, "PRIOR_LANDSCAPE_SLURM_PARTITION": cluster.partition}


def _test_profile(tmp: Path, gpu: bool) -> Path:
    """A second profile stacked on profiles/slurm: its set-resources (a top-level key
    replaces the first profile's) plus a GPU for the training job when the cluster has one."""
    base = yaml.safe_load((PROFILE / "config.yaml").read_text())
    set_resources = {rule: dict(res) for rule, res in (base.get("set-resources") or {}).items()}
    if gpu:
        set_resources.setdefault("train_score_network", {})["gpu"] = 1
    d = tmp / "test-profile"
    d.mkdir()
    (d / "config.yaml").write_text(yaml.safe_dump({"set-resources": set_resources}))
    return d


class _Snakemake:
    """A snakemake run in the background, its output in a file; stopped (it then cancels
    its SLURM jobs) when it outlives ``timeout`` or the cluster stops answering."""

    def __init__(self, cmd: list[str], out: Path, env: dict, timeout: float = 1500):
        self.out, self.deadline = out, time.monotonic() + timeout
        with open(out, "w") as fh:
            self.proc = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
            )
        self._down_since = None
        self._last_check = 0.0

    def log(self) -> str:
        return self.out.read_text(errors="replace")

    def check(self) -> None:
        """Raise if the run is over time or the cluster has been gone for a minute."""
        if time.monotonic() > self.deadline:
            raise AssertionError(f"snakemake timed out:\n{self.log()[-4000:]}")
        if time.monotonic() - self._last_check > 10:
            self._last_check = time.monotonic()
            if cluster_answers():
                self._down_since = None
            elif self._down_since is None:
                self._down_since = time.monotonic()
            elif time.monotonic() - self._down_since > 60:
                raise AssertionError(
                    "the SLURM cluster stopped answering during the run (was it stopped by "
                    f"another test session?); the plugin would wait forever:\n{self.log()[-2000:]}"
                )

    def wait(self) -> int:
        while self.proc.poll() is None:
            self.check()
            time.sleep(1)
        return self.proc.returncode

    def stop(self) -> None:
        for sig, wait in ((signal.SIGINT, 90), (signal.SIGTERM, 30), (signal.SIGKILL, 30)):
            if self.proc.poll() is not None:
                return
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue


def _run_to_end(cmd: list[str], out: Path, cluster, label: str, timeout: float = 1500) -> tuple[int, str]:
    """Run ``cmd`` in the background to its end — stopped, its SLURM jobs cancelled, if it overruns — and
    return its exit status and output; prints its wall time under ``label``."""
    t0 = time.perf_counter()
    run = _Snakemake(cmd, out, _env(cluster), timeout)
    try:
        rc = run.wait()
    finally:
        run.stop()
    print(f"{label}: {time.perf_counter() - t0:.0f} s")
    return rc, run.log()


def _submissions(log: str) -> list[tuple[str, str, str]]:
    """(snakemake job id, SLURM job id, rule or group dir) of every sbatch submission."""
    out = []
    for jid, sid, path in re.findall(r"Job (\S+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", log):
        rel = path.split("slurm_logs/", 1)[1]
        out.append((jid, sid, rel.rsplit("/", 1)[0]))
    return out


def _squeue(run_id: str) -> dict[str, tuple[str, str]]:
    """SLURM's own record of the run's jobs (kept MinJobAge after they end): id -> (state, comment)."""
    out = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--name", run_id, "--format=%i|%T|%k"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return {i: (s, c) for i, s, c in (line.split("|", 2) for line in out.splitlines() if line.strip())}


def _assert_tables_equal(a: Path, b: Path, rel: str) -> None:
    x, y = read_table(a / rel), read_table(b / rel)
    drop = [c for c in x.columns if c in TIMING_COLUMNS]
    pd.testing.assert_frame_equal(x.drop(columns=drop), y.drop(columns=drop), check_exact=True, obj=rel)


def _assert_same_tensors(x, y, where: str) -> None:
    if isinstance(x, dict):
        assert x.keys() == y.keys(), where
        for k in x:
            if "wall" not in str(k):
                _assert_same_tensors(x[k], y[k], f"{where}.{k}")
    elif isinstance(x, torch.Tensor):
        assert torch.equal(x, y), where
    elif isinstance(x, (list, tuple)):
        assert len(x) == len(y), where
        for i, (u, v) in enumerate(zip(x, y)):
            _assert_same_tensors(u, v, f"{where}[{i}]")
    else:
        assert x == y or (x != x and y != y), f"{where}: {x!r} != {y!r}"


def _assert_same_model(a: Path, b: Path, rel: str) -> None:
    x = torch.load(a / rel, map_location="cpu", weights_only=True)
    y = torch.load(b / rel, map_location="cpu", weights_only=True)
    _assert_same_tensors(x, y, rel)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The same targets run locally with 2 cores: the reference."""
    work = _workdir(tmp_path_factory.mktemp("local"))
    t0 = time.perf_counter()
    _check(
        subprocess.run(
            [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(work), "--cores", "2", *TARGETS],
            capture_output=True,
            text=True,
            timeout=1200,
        ),
        "local run",
    )
    print(f"local run: {time.perf_counter() - t0:.0f} s")
    return work


def test_every_job_goes_through_sbatch_and_artefacts_equal_a_local_run(slurm_cluster, local_run, tmp_path):  # noqa: F811
    work = _workdir(tmp_path)
    extra = _test_profile(tmp_path, gpu=slurm_cluster.gpus >= 1)
    rc, log = _run_to_end(_slurm_cmd(work, extra, *TARGETS), tmp_path / "snakemake.out", slurm_cluster, "SLURM run")
    assert rc == 0, f"SLURM run failed ({rc}):\n{log[-8000:]}"

    # one sbatch submission per job: three rule jobs, each sweep as two shards and their gather, and the
    # figures group (Figs. 5 and 7 together)
    subs = _submissions(log)
    # (the plugin names a group job's log folder after the group and its members, a job's after its wildcards)
    kinds = sorted("group_figures" if k.startswith("group_figures") else k for _, _, k in subs)
    shards = sorted(k for k in kinds if k.startswith("rule_likelihood_sweep/"))
    assert len(shards) == 4 and all(sum(p in k for k in shards) == 2 for p in ("gmm-", "scorenet-")), kinds
    assert sorted(k for k in kinds if not k.startswith("rule_likelihood_sweep/")) == sorted(
        [
            "rule_blur_kernels",
            "rule_fit_mixture_prior/gmm-natural",
            "rule_train_score_network/scorenet-natural",
            "rule_likelihood_sweep_gather/gmm-natural",
            "rule_likelihood_sweep_gather/scorenet-natural",
            "group_figures",
        ]
    ), kinds
    # ... each with its SLURM log, and SLURM itself saw every one of them complete
    for _, sid, kind in subs:
        assert (work / ".snakemake/slurm_logs" / kind / f"{sid}.log").exists(), (kind, sid)
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    seen = _squeue(run_id)
    assert all(state == "COMPLETED" for state, _ in seen.values()), seen
    aged_out = {sid for _, sid, _ in subs} - seen.keys()  # squeue forgets jobs MinJobAge after they end
    if aged_out:
        ctld = slurm_cluster.slurmctld_log()  # only when the fixture started the cluster
        assert ctld, f"jobs {aged_out} are no longer in squeue (MinJobAge too short?) and there is no slurmctld log"
        for sid in aged_out:
            assert f"_job_complete: JobId={sid} WEXITSTATUS 0" in ctld, sid
    # the rules' resources reach sbatch: threads, memory, runtime, and the GPU request
    calls = re.findall(r"sbatch call: (sbatch .*)", log)
    train = next(c for c in calls if "--comment rule_train_score_network" in c)
    assert "--cpus-per-task=2" in train and "--mem 4000" in train and "-t 120" in train and "-p debug" in train
    if slurm_cluster.gpus >= 1:
        assert "--gpus=1" in train
        assert not any("--gpus" in c for c in calls if c is not train)
    group = next(c for c in calls if "--comment rule_figures" in c)
    assert "fig05_blur_families" in group and "fig07_likelihood_sweeps" in group
    # nothing ran on the submit host: no local job besides the target pseudo-rule
    assert not re.search(r"^localrule (?!all\b)\w+:", log, flags=re.M)

    for rel in ARTEFACTS:
        _assert_tables_equal(local_run, work, rel)
    for rel in MODELS:
        _assert_same_model(local_run, work, rel)
    for rel in TARGETS:
        assert (work / rel).stat().st_size > 0


def test_killed_training_job_is_resubmitted_and_resumes_from_its_checkpoint(slurm_cluster, local_run, tmp_path):  # noqa: F811
    work = _workdir(tmp_path)
    t0 = time.perf_counter()
    run = _Snakemake(_slurm_cmd(work, None, *TRAIN_OUT), tmp_path / "snakemake.out", _env(slurm_cluster))
    try:
        # wait for the training job's first checkpoint, then kill the job with scancel
        killed = None
        while killed is None and run.proc.poll() is None:
            run.check()
            subs = _submissions(run.log())
            if subs and (work / STATE).exists():
                killed = subs[0][1]
                subprocess.run(["scancel", killed], check=True, timeout=30)
            time.sleep(0.2)
        assert killed, f"the training job never wrote its checkpoint:\n{run.log()[-4000:]}"
        state_step = None
        try:
            state_step = torch.load(work / STATE, map_location="cpu", weights_only=False)["step"]
        except Exception:  # noqa: BLE001 - being replaced at this instant
            pass
        rc = run.wait()
    finally:
        run.stop()
    print(f"SLURM run with a killed job: {time.perf_counter() - t0:.0f} s")
    log = run.log()
    assert rc == 0, log[-6000:]

    # SLURM cancelled the first job; Snakemake resubmitted it (attempt 2, with more time)
    assert f"SLURM-job '{killed}' failed, SLURM status is: 'CANCELLED'" in log
    subs = _submissions(log)
    assert [k for _, _, k in subs] == ["rule_train_score_network/scorenet-natural"] * 2, subs
    assert subs[1][1] != killed
    calls = re.findall(r"sbatch call: (sbatch .*)", log)
    assert "-t 120" in calls[0] and "--attempt 1" in calls[0]
    assert "-t 240" in calls[1] and "--attempt 2" in calls[1]
    # the second attempt resumed: its log starts at the checkpoint (the state is saved before the
    # checkpointed step's record, so the resumed run records step 50 itself, then 100; nothing before 50)
    train_log = (work / "results/logs/train_score_network/scorenet-natural.log").read_text()
    assert "resuming from iteration 50 of 100" in train_log, train_log
    steps = [int(s) for s in re.findall(r"step (\d+)/100", train_log)]
    assert steps == [50, 100], train_log
    assert state_step in (None, 50)
    assert not (work / STATE).exists()
    # and ended exactly where an undisturbed run ends
    _assert_tables_equal(local_run, work, "results/priors/scorenet-natural/training_loss.parquet")
    _assert_same_model(local_run, work, "results/priors/scorenet-natural/model.pt")
    loss = read_table(work / "results/priors/scorenet-natural/training_loss.parquet")
    assert list(loss.step) == [50, 100]


def _node_cpus() -> int:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%c"], capture_output=True, text=True, timeout=30).stdout
    return max(int(c.rstrip("+")) for c in out.split())


def test_profile_cores_beyond_the_node_are_capped_and_what_no_node_has_fails_before_sbatch(
    slurm_cluster,  # noqa: F811
    local_run,
    tmp_path,
):
    """The README's command with the profile's `cores: 8` on the 2-CPU node: the figures group of three
    members (Figs. 5, 6, 7, their inputs already computed) asked for 3 CPUs and pended forever (reason
    PartitionConfig); now `cores` is capped to the node and the group completes. A rule asking for more
    memory than the node has stops the run before any sbatch, naming rule, setting and node."""
    work = tmp_path / "work"
    shutil.copytree(local_run, work, symlinks=True)  # artefacts and Snakemake's records: only figures run
    shutil.rmtree(work / "results/figures")
    figures = ["results/figures/fig05.png", "results/figures/fig06.png", "results/figures/fig07.png"]
    cmd = _slurm_cmd(work, None, *figures)
    rc, log = _run_to_end(cmd, tmp_path / "capped.out", slurm_cluster, "SLURM run, cores capped", timeout=400)
    assert rc == 0, log[-6000:]
    cpus = _node_cpus()
    calls = re.findall(r"sbatch call: (sbatch .*)", log)
    assert len(calls) == 1 and all(f"fig0{i}_" in calls[0] for i in (5, 6, 7)), calls
    assert f"--cpus-per-task={min(3, cpus)}" in calls[0]  # three 1-thread members, at most the node's CPUs
    if cpus < 8:
        assert f"is 8, more than any node of partition 'debug' has ({cpus} CPUs): capped to {cpus}" in log
        assert f"--cores {cpus} " in calls[0]
    for rel in figures:
        assert (work / rel).stat().st_size > 0

    # a request no node can meet: refused within seconds, nothing submitted
    huge = 1000 * 1000 * 1000
    extra = tmp_path / "huge-profile"
    extra.mkdir()
    (extra / "config.yaml").write_text(yaml.safe_dump({"set-resources": {"fig05_blur_families": {"mem_mb": huge}}}))
    shutil.rmtree(work / "results/figures")
    t0 = time.perf_counter()
    proc = subprocess.run(
        _slurm_cmd(work, extra, *figures), capture_output=True, text=True, env=_env(slurm_cluster), timeout=120
    )
    took = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and took < 60, (took, out[-4000:])
    assert "sbatch call" not in out and "nothing was submitted" in out, out[-4000:]
    assert f"rule fig05_blur_families (in group figures): mem_mb={huge}" in out, out[-4000:]
    assert "but partition 'debug': largest node" in out and "MB" in out
    assert not (work / "results/figures").exists()
