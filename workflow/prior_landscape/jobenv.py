"""The environment the workflow's jobs start with (set by workflow/rules/common.smk before any job is
launched, so local, SLURM and test runs inherit it; the Makefile exports the same for ``make test``).

glibc's malloc serves every block over 32 MiB (its largest mmap threshold) by a fresh ``mmap`` and
returns it to the kernel when freed, so a CPU job that allocates large tensors in a loop faults every
4 KiB page in again at each iteration. Measured on the demo's 2-core machine: the score network's
likelihood sweep made 13.6 M minor page faults and spent 30 of its 88 s in the kernel; with malloc
asked to back those blocks by transparent huge pages (``glibc.malloc.hugetlb=1``, glibc ≥ 2.35, where
the kernel's THP mode is ``madvise`` or ``always``) it made 0.26 M and took 66 s. The tunable changes
where memory comes from, never a computed value; older glibc ignores it.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

HUGEPAGES = "glibc.malloc.hugetlb=1"


def with_hugepages(tunables: str | None) -> str:
    """``GLIBC_TUNABLES`` (colon-separated ``name=value`` items) with :data:`HUGEPAGES` added, unless
    it already sets ``glibc.malloc.hugetlb``: a value the user chose is kept."""
    items = [item for item in (tunables or "").split(":") if item]
    if any(item.partition("=")[0] == "glibc.malloc.hugetlb" for item in items):
        return ":".join(items)
    return ":".join([*items, HUGEPAGES])


def set_job_environment(environ: MutableMapping[str, str] = os.environ) -> None:
    """Give the jobs launched from this process the environment above."""
    environ["GLIBC_TUNABLES"] = with_hugepages(environ.get("GLIBC_TUNABLES"))
