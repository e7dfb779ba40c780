"""The examples the README names exist, read as the CLI reads them, and are the README's spec."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from droptune_client.cli import read_spec
from store.spec import JobSpec

ROOT = Path(__file__).resolve().parents[2]


def readme_spec() -> dict[str, object]:
    """The JSON of the README's first `curl ... -X POST .../jobs` example."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"localhost:8000/api/v1/jobs -H 'content-type: application/json' -d '(\{.*?\n\})'", readme, re.S)
    assert match is not None, "the README's first job example moved"
    return json.loads(match.group(1))  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", ["digits.yaml", "digits.json"])
def test_the_readme_s_example_spec_ships_and_is_the_one_it_shows(name: str) -> None:
    pytest.importorskip("yaml")
    path = ROOT / "examples" / name
    assert f"examples/{name}" in (ROOT / "README.md").read_text() or name == "digits.json"
    spec = read_spec(str(path))
    assert spec == readme_spec()
    JobSpec.model_validate(spec)  # a valid job: the service takes it as it is
