from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "inspect"


@pytest.fixture
def inspect_json() -> Any:
    """Real `docker inspect` output captured from the test images: inspect_json("bridge")."""
    return lambda name: json.loads((FIXTURES / f"{name}.json").read_text())
