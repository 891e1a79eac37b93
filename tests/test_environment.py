"""envs/ and pyproject.toml pin the same versions, and the installed ones match."""

import tomllib
from importlib import metadata

import yaml
from conftest import REPO


def _pins(lines):
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"unpinned requirement {line!r}"
            out[name.lower()] = version
    return out


def _project():
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_requirements_txt_matches_pyproject():
    assert _pins((REPO / "envs/requirements.txt").read_text().splitlines()) == _pins(_project()["dependencies"])


def test_conda_environment_matches_pyproject():
    env = yaml.safe_load((REPO / "envs/environment.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    project = _project()
    expected = _pins(project["dependencies"] + project["optional-dependencies"]["test"])
    assert _pins(pip) == expected


def test_installed_versions_are_the_pinned_ones():
    for name, version in _pins(_project()["dependencies"]).items():
        installed = metadata.version(name).split("+")[0]
        assert installed == version, f"{name}: installed {installed}, pinned {version}"
