"""The shipped JSON Schema of the record, for tests that check every record they produce."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from tests.conftest import ROOT


@cache
def _validator() -> Any:
    import jsonschema

    schema = json.loads((ROOT / "carbonwrap" / "data" / "record.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def validate(rec: Any) -> Any:
    """Raise jsonschema.ValidationError unless `rec` is a valid carbonwrap.run/1 record; returns it."""
    _validator().validate(rec)
    return rec


def strict_loads(text: str | bytes) -> Any:
    """json.loads that refuses NaN and Infinity, as RFC 8259 does."""

    def refuse(name: str) -> Any:
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)
