"""The distribution a user installs: built as a release would be, checked as PyPI would, installed
into a fresh venv, and the `registrator` command it brings runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]


def _run(*command: str | Path, cwd: Path = ROOT) -> str:
    result = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{command}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
    return result.stdout


def test_the_wheel_installs_into_a_fresh_venv_and_its_command_runs(tmp_path):
    source, dist = tmp_path / "source", tmp_path / "dist"  # a copy: setuptools writes build/ beside the sources
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__"))
    _run(sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", dist, source, cwd=tmp_path)
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    assert wheel.name.startswith(NAME.replace("-", "_") + "-")
    _run(sys.executable, "-m", "twine", "check", "--strict", wheel, sdist)

    with zipfile.ZipFile(wheel) as archive:
        shipped = {name.split("/")[0] for name in archive.namelist()}
    assert {"registrator", "cli.py"} <= shipped
    assert not shipped & {"tests", "bench"}

    _run(sys.executable, "-m", "venv", tmp_path / "venv")
    _run(tmp_path / "venv" / "bin" / "pip", "install", "--quiet", "--disable-pip-version-check", wheel)
    assert _run(tmp_path / "venv" / "bin" / "registrator", "--version").strip().startswith("registrator, version ")
