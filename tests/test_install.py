"""Installing the repository (a wheel, or an editable install) writes no importable package: its folders keep the
CoOp layout's generic names (``datasets``, ``clip``, ``tools``, ``dassl``), which other libraries install too."""

from __future__ import annotations

import os.path as osp
import shutil
import subprocess
import sys
import zipfile

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
OURS = ("datasets", "clip", "tools", "dassl", "trainers", "demo", "benchmarks", "train", "parse_test_res")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    """A copy of the repository to build from (a build writes its own folders next to pyproject.toml)."""
    copy = tmp_path_factory.mktemp("project") / "src"
    skip = shutil.ignore_patterns(".git", ".venv", "venv", "output", "demo_output", "__pycache__", "*.egg-info",
                                  "build", "dist", ".pytest_cache", ".ruff_cache")  # fmt: skip
    shutil.copytree(REPO, copy, ignore=skip)
    return copy


@pytest.mark.parametrize("hook", ["build_wheel", "build_editable"])
def test_an_installed_repository_leaves_other_libraries_importable(project, tmp_path, hook):
    wheels = tmp_path / "wheels"
    code = f"import setuptools.build_meta as b; print(b.{hook}({str(wheels)!r}))"
    built = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    site = tmp_path / "site"
    with zipfile.ZipFile(wheels / built.stdout.strip().splitlines()[-1]) as wheel:
        wheel.extractall(site)  # what pip does with a pure-Python wheel
    assert {name.split("/")[0] for name in wheel.namelist()} - {"mmrl-0.1.0.dist-info"} <= {
        "__editable__.mmrl-0.1.0.pth", "__editable___mmrl_0_1_0_finder.py"
    }  # fmt: skip
    standins = tmp_path / "standins"  # Hugging Face datasets and OpenAI clip, as far as an import can tell
    for name in ("datasets", "clip"):
        (standins / name).mkdir(parents=True)
        (standins / name / "__init__.py").write_text("STANDIN = True\n")
    check = f"""
import importlib.util, site
site.addsitedir({str(site)!r})
site.addsitedir({str(standins)!r})
import datasets, clip
assert datasets.STANDIN and clip.STANDIN, (datasets.__file__, clip.__file__)
for name in {OURS!r}:
    spec = importlib.util.find_spec(name)
    origin = (spec.origin or "") if spec else ""
    assert not origin.startswith(({str(site)!r}, {str(project)!r}, {REPO!r})), (name, origin)
print("ok")
"""
    env = {"PATH": "/usr/bin:/bin"}  # no PYTHONPATH: only the interpreter's own site-packages
    result = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr[-3000:]
