"""Requests no SLURM node can meet (prior_landscape.slurm_resources), on canned sinfo output: the parser
(and malformed output), the cap of `cores`, the refusals naming rule, setting and node, and the
Snakemake hook on a stand-in workflow. The live cluster: tests/test_slurm.py."""

import subprocess
from types import SimpleNamespace

import pytest

from prior_landscape.slurm_resources import (
    SINFO_COMMAND,
    Node,
    Request,
    SinfoError,
    SlurmResourceError,
    check_requests,
    parse_sinfo,
    parse_time_limit,
    preflight,
    query_nodes,
)

# two partitions: cpu (default: a 2-CPU and a 16-CPU node, no GPU, 2 h) and gpu (8 CPUs, 4 GPUs, no limit)
SINFO = """\
small|cpu*|2|8000|(null)|2:00:00
big|cpu*|16|64000|(null)|2:00:00
g1|gpu|8|128000+|gpu:a100:4(S:0-1),mps:100|infinite
"""


def test_sinfo_output_is_read_node_by_node():
    nodes = parse_sinfo(SINFO)
    assert nodes == [
        Node("small", "cpu", 2, 8000, 0, 120.0, True),
        Node("big", "cpu", 16, 64000, 0, 120.0, True),
        Node("g1", "gpu", 8, 128000, 4, None, False),
    ]
    # the test cluster's own line (tests/slurm_cluster.py)
    assert parse_sinfo("vm|debug*|2|19284|gpu:1|infinite\n") == [Node("vm", "debug", 2, 19284, 1, None, True)]


@pytest.mark.parametrize(
    "text, limit",
    [("infinite", None), ("UNLIMITED", None), ("30", 30), ("30:30", 30.5), ("2:00:00", 120), ("1-00:00:00", 1440),
     ("2-03", 2 * 1440 + 180), ("1-01:30", 1440 + 90)],
)  # fmt: skip
def test_time_limits(text, limit):
    assert parse_time_limit(text) == limit


@pytest.mark.parametrize(
    "text, what",
    [
        ("", "no node listed"),
        ("small|cpu*|2|8000|(null)\n", "line 1 'small|cpu*|2|8000|(null)': 5 fields, expected 6"),
        ("small|cpu*|two|8000|(null)|infinite\n", "line 1"),
        ("small|cpu*|2|8000|(null)|infinite\nbig|cpu|2|lots|(null)|infinite\n", "line 2 'big|cpu|2|lots"),
        ("small|cpu*|2|8000|gpu:many|infinite\n", "GRES 'gpu:many' has no GPU count"),
        ("small|cpu*|2|8000|(null)|soon\n", "'soon' is not a SLURM time limit"),
        ("sinfo: error: Unable to contact slurm controller (connect failure)\n", "1 fields, expected 6"),
    ],
)
def test_malformed_sinfo_output_is_refused_naming_the_line(text, what):
    with pytest.raises(SinfoError, match="sinfo") as err:
        parse_sinfo(text)
    assert what in str(err.value)


def test_query_runs_sinfo_and_reports_its_failure():
    def ok(cmd, **kw):
        assert cmd == SINFO_COMMAND
        return subprocess.CompletedProcess(cmd, 0, SINFO, "")

    assert len(query_nodes(run=ok)) == 3

    def down(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", "slurm_load_partitions: Unable to contact slurm controller")

    with pytest.raises(SinfoError, match="exit status 1: slurm_load_partitions"):
        query_nodes(run=down)

    def missing(cmd, **kw):
        raise FileNotFoundError("sinfo")

    with pytest.raises(SinfoError, match="could not run"):
        query_nodes(run=missing)


def test_cores_beyond_every_node_are_capped_to_the_largest():
    nodes = parse_sinfo(SINFO)
    reqs = [Request("rule fig05", None, threads=1, mem_mb=1000)]
    v = check_requests(reqs, nodes, cores=32)
    assert v.cores == 16 and v.problems == []
    assert "is 32" in v.notes[0] and "capped to 16" in v.notes[0] and "'cpu'" in v.notes[0]
    assert check_requests(reqs, nodes, cores=16).cores is None  # fits: nothing capped, nothing said
    assert check_requests(reqs, nodes, cores=16).notes == []
    # the smallest partition a request names sets the cap (gpu: 8 CPUs)
    v = check_requests(reqs + [Request("rule train", "gpu", gpus=1)], nodes, cores=32)
    assert v.cores == 8 and v.problems == []


def test_what_cannot_be_capped_is_refused_naming_rule_setting_and_node():
    nodes = parse_sinfo(SINFO)
    reqs = [
        Request("rule sweep", None, mem_mb=100000, origin="resources of rule sweep"),
        Request("rule train", None, gpus=1),
        Request("rule train2", "gpu", gpus=8),
        Request("rule long", None, runtime_min=240),
        Request("rule wide", None, cpus_per_task=32),
        Request("rule elsewhere", "nosuch"),
        Request("rule fine", "gpu", gpus=4, mem_mb=128000, runtime_min=10_000, threads=8),
    ]
    v = check_requests(reqs, nodes, cores=8)
    text = "\n".join(v.problems)
    assert len(v.problems) == 6, text
    assert "rule sweep: mem_mb=100000 (resources of rule sweep), but partition 'cpu': largest node 16 CPUs, " in text
    assert "64000 MB" in text
    assert "rule train: gpu=1, but partition 'cpu'" in text and "no GPU GRES" in text
    assert "rule train2: gpu=8, but partition 'gpu': largest node 8 CPUs, 128000 MB (125 GiB), 4 GPUs" in text
    assert "rule long: runtime=240 min, but partition 'cpu' allows 120 min" in text
    assert "rule wide: cpus_per_task=32" in text
    assert "rule elsewhere: partition 'nosuch'" in text and "partitions: cpu, gpu" in text
    assert "rule fine" not in text
    with pytest.raises(SlurmResourceError, match="nothing was submitted"):
        v.raise_if_problems()
    check_requests(reqs[-1:], nodes, cores=8).raise_if_problems()  # nothing to say


def test_a_group_whose_members_side_by_side_exceed_a_node_is_refused():
    nodes = [Node("n", "p", 4, 10000, 0, None, True)]
    group = Request("group figures", None, members_mem_mb=[3000, 3000, 3000, 3000, 3000])
    v = check_requests([group], nodes, cores=8)  # capped to 4: four members side by side, 12000 MB
    assert v.cores == 4 and "group figures: 4 members side by side (cores 4) ask for 12000 MB" in v.problems[0]
    assert check_requests([group], nodes, cores=3).problems == []  # three: 9000 MB fit


class _Job:
    def __init__(self, rule, group=None, threads=1, local=False, **resources):
        self.rule = SimpleNamespace(name=rule, snakefile="workflow/rules/x.smk")
        self.group, self.threads, self.is_local = group, threads, local
        self.resources = {"mem_mb": 1000, "runtime": 5, **resources}
        self._resources = "evaluated"


class _Resources(dict):
    def get(self, key):
        return SimpleNamespace(value=super().get(key))


def _workflow(executor, jobs, cores=8):
    dag = SimpleNamespace(needrun_jobs=lambda: jobs, _group={})
    return SimpleNamespace(
        executor_plugin=SimpleNamespace(name=executor),
        dag=dag,
        global_resources=_Resources(_cores=cores),
        resource_settings=SimpleNamespace(cores=cores),
    )


def test_the_hook_caps_cores_under_slurm_only():
    jobs = [_Job("fig05", group="figures"), _Job("fig07", group="figures"), _Job("dl", local=True, gpu=5)]
    messages = []
    wf = _workflow("slurm", jobs, cores=32)
    v = preflight(wf, {"PRIOR_LANDSCAPE_SLURM_PARTITION": "cpu"}, log=messages.append, query=lambda: parse_sinfo(SINFO))
    assert v.cores == 16 and wf.resource_settings.cores == 16 and wf.global_resources["_cores"] == 16
    assert all(j._resources is None for j in jobs[:2]) and jobs[2]._resources == "evaluated"
    assert len(messages) == 1 and "capped to 16" in messages[0]
    # another executor: nothing read, nothing changed
    wf = _workflow("local", jobs, cores=64)
    assert preflight(wf, {}, query=lambda: pytest.fail("sinfo read")) is None and wf.resource_settings.cores == 64


def test_the_hook_refuses_naming_the_rule_and_skips_unreadable_sinfo():
    jobs = [_Job("likelihood_sweep", gpu=1, mem_mb=32000)]
    with pytest.raises(SlurmResourceError) as err:
        preflight(_workflow("slurm", jobs), {}, log=lambda m: None, query=lambda: parse_sinfo(SINFO))
    assert "rule likelihood_sweep: gpu=1 (resources of rule likelihood_sweep, workflow/rules/x.smk" in str(err.value)
    # a job's own partition (set-resources) wins over the environment's
    jobs = [_Job("likelihood_sweep", gpu=1, mem_mb=32000, slurm_partition="gpu")]
    assert preflight(_workflow("slurm", jobs), {}, log=lambda m: None, query=lambda: parse_sinfo(SINFO)).problems == []

    messages = []

    def broken():
        return parse_sinfo("garbage\n")

    assert preflight(_workflow("slurm", jobs), {}, log=messages.append, query=broken) is None
    assert "SLURM resources not checked" in messages[0] and "expected 6" in messages[0]
