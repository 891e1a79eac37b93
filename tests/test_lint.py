"""The house style is checked, not hoped for: ruff (lint and format), snakefmt, and Snakemake's
own linter, whose only finding allowed is the one the README justifies (no per-rule conda
environments: conda channels cannot be reached where this workflow is developed and tested)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

BIN = Path(sys.executable).parent
# Snakemake's lint findings the README's "Software environments" paragraph justifies
JUSTIFIED = {"Specify a conda environment or container for each rule."}


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("cmd", [("ruff", "check", "."), ("ruff", "format", "--check", ".")])
def test_ruff(cmd):
    proc = _run(str(BIN / cmd[0]), *cmd[1:])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_snakefmt():
    proc = _run(str(BIN / "snakefmt"), "--check", "Snakefile", "workflow/rules")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


# the demo's rules, and the paper configuration's (its sharded stages add gather rules)
@pytest.mark.parametrize("config", [(), ("--configfile", "config/paper.yaml")], ids=["demo", "paper"])
def test_snakemake_lint_has_only_the_justified_finding(config):
    proc = _run(sys.executable, "-m", "snakemake", *config, "--lint")
    findings = set(re.findall(r"^\s+\* (.+?):$", proc.stdout + proc.stderr, re.M))
    assert findings <= JUSTIFIED, findings - JUSTIFIED
    assert "Lints for snakefile" not in proc.stdout + proc.stderr  # no finding about a whole file
