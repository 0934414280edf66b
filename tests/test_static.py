"""The package passes ruff and mypy --strict (settings in pyproject.toml), and the test run is set up as it says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "registrator", "cli.py", "tests"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict():
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_integration_marker_selects_exactly_the_tests_that_need_docker_and_consul():
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m",
                             "integration"],
                            cwd=ROOT, capture_output=True, text=True)
    selected = {line.split("::")[0] for line in result.stdout.splitlines() if "::" in line}
    assert selected and all(path.startswith(("tests/integration/", "tests/cluster/")) for path in selected), result.stdout[-2000:]
    on_disk = {str(path.relative_to(ROOT)) for folder in ("integration", "cluster")
               for path in (ROOT / "tests" / folder).glob("test_*.py")}
    assert selected == on_disk


@pytest.mark.parametrize(("value", "in_ci"),
                         [("true", True), ("1", True), ("yes", True), ("github", True), ("", False), ("0", False),
                                                ("false", False), ("False", False), ("no", False)])
def test_any_ci_setting_but_an_off_one_makes_a_missing_rig_a_failure(monkeypatch, value, in_ci):
    from tests.integration import rig

    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception if in_ci else pytest.skip.Exception):
        rig.unavailable("no Docker")
