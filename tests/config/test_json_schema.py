"""`pakman schema` agrees with `pakman check`, checked with the jsonschema library."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from pakman.cli import main
from pakman.config.schema import json_schema
from pakman.config.source import load_file
from pakman.errors import ConfigError
from support import example_configs

ERRORS = Path(__file__).resolve().parents[1] / "errors"
# Rules JSON Schema cannot express: reserved names, shell word splitting, and
# keys needed only when others are given.
SEMANTIC_ONLY = {
    "call-unbalanced-quote",
    "command-name-reserved",
    "legacy-run-command-without-binary",
}


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def parsed(path: Path) -> Any:
    try:
        return load_file(path).data
    except ConfigError:
        return None


@pytest.mark.parametrize("config", example_configs(), ids=lambda p: p.parent.name)
def test_examples_are_valid(config: Path, validator: jsonschema.Draft7Validator) -> None:
    errors = [e.message for e in validator.iter_errors(load_file(config).data)]
    assert errors == []


# Only inputs that parse as YAML can be given to a JSON Schema validator.
CASES = sorted(
    p.name
    for p in ERRORS.iterdir()
    if (p / "instellar.yml").exists() and parsed(p / "instellar.yml")
)


@pytest.mark.parametrize("case", CASES)
def test_bad_inputs_are_rejected(case: str, validator: jsonschema.Draft7Validator) -> None:
    data = parsed(ERRORS / case / "instellar.yml")
    expected = (ERRORS / case / "expected.txt").read_text()
    schema_valid = validator.is_valid(data)
    if "# exit 0" in expected:
        # Accepted by pakman: the schema accepts it too, except unknown keys,
        # which editors should underline.
        assert schema_valid == ("unknown key" not in expected)
    elif case in SEMANTIC_ONLY:
        assert schema_valid
    else:
        assert not schema_valid


def test_cli_prints_the_schema(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json_schema()
    out = tmp_path / "schema.json"
    assert main(["schema", "-o", str(out)]) == 0
    assert json.loads(out.read_text()) == json_schema()
