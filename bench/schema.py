"""The JSON schemas shipped with the package (report_schema.json, baseline_schema.json)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import jsonschema

REPORT_SCHEMA = "report_schema.json"
BASELINE_SCHEMA = "baseline_schema.json"


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict:
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    return json.loads(text)


def schema_errors(document, schema: dict) -> list[str]:
    """Every violation as 'at <json path>: <message>', most specific first; empty when valid."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: (-len(e.absolute_path), e.message))
    return [f"at {e.json_path}: {e.message}" for e in errors]


def validate_report(report: dict) -> list[str]:
    return schema_errors(report, load_schema(REPORT_SCHEMA))
