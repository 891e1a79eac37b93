"""The jobs' environment (prior_landscape.jobenv): malloc's huge pages added to GLIBC_TUNABLES without
overriding the user's choice, and what they are for: a process that allocates and frees a large array
in a loop faults far fewer pages in with them (torch's CPU tensors come from malloc; numpy
asks for huge pages itself)."""

import subprocess
import sys
from pathlib import Path

import pytest

from prior_landscape.jobenv import HUGEPAGES, set_job_environment, with_hugepages


@pytest.mark.parametrize(
    "before, after",
    [
        (None, HUGEPAGES),
        ("", HUGEPAGES),
        ("glibc.malloc.arena_max=2", "glibc.malloc.arena_max=2:" + HUGEPAGES),
        ("glibc.malloc.arena_max=2:", "glibc.malloc.arena_max=2:" + HUGEPAGES),  # an empty item dropped
        ("glibc.malloc.hugetlb=0", "glibc.malloc.hugetlb=0"),  # the user turned it off: kept
        ("a=1:glibc.malloc.hugetlb=2", "a=1:glibc.malloc.hugetlb=2"),
        ("glibc.malloc.hugetlbx=1", "glibc.malloc.hugetlbx=1:" + HUGEPAGES),  # another name, not a prefix match
    ],
)
def test_the_tunable_is_added_once_and_a_users_setting_wins(before, after):
    assert with_hugepages(before) == after
    assert with_hugepages(after) == after  # idempotent: a nested Snakemake (SLURM jobs) adds nothing


def test_set_job_environment_touches_only_glibc_tunables():
    env = {"PATH": "/bin", "GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    set_job_environment(env)
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": "glibc.malloc.arena_max=2:" + HUGEPAGES}


_FAULTS = """
import resource, torch
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    a = torch.ones(8 << 20, dtype=torch.float64)  # 64 MiB: over malloc's largest mmap threshold
    del a
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _thp_mode() -> str:
    path = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    text = path.read_text() if path.exists() else ""
    return text[text.find("[") + 1 : text.find("]")] if "[" in text else "absent"


@pytest.mark.skipif(_thp_mode() not in ("madvise", "always"), reason="the kernel offers no transparent huge pages")
def test_huge_pages_cut_the_page_faults_of_a_large_allocation_loop():
    def faults(tunables: str) -> int:
        env = {"GLIBC_TUNABLES": tunables, "PATH": "/usr/bin:/bin"}
        out = subprocess.run([sys.executable, "-c", _FAULTS], env=env, capture_output=True, text=True, check=True)
        return int(out.stdout)

    plain, huge = faults(""), faults(HUGEPAGES)
    # 20 × 64 MiB in 4 KiB pages is 327 680 faults (measured: 327 739); with huge pages 10 918
    assert plain > 300_000, plain
    assert huge < plain / 10, (plain, huge)
