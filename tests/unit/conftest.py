from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests import fakes

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "inspect"


@pytest.fixture
def inspect_json() -> Any:
    """Real `docker inspect` output captured from the test images: inspect_json("bridge")."""
    return lambda name: json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.fixture(autouse=True)
def no_hold_expires() -> Any:
    """A held fake call that nobody released fails the test, even where a retry went on after it."""
    fakes.EXPIRED.clear()
    yield
    assert not fakes.EXPIRED, f"held calls never released, in threads {fakes.EXPIRED}"
