"""The published JSON Schema of result records, and validation against it."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from robustbench_us.errors import RecordError

RECORD_SCHEMA_FILE = "record.schema.json"


@cache
def record_schema() -> dict[str, Any]:
    """The record schema (JSON Schema draft 2020-12) as a dict."""
    return json.loads(resources.files(__name__).joinpath(RECORD_SCHEMA_FILE).read_text(encoding="utf-8"))


@cache
def _validator() -> jsonschema.protocols.Validator:
    schema = record_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate_record(data: Any, path: str | Path) -> dict[str, Any]:
    """Check ``data`` against the record schema; raise RecordError naming ``path`` and the first problems."""
    errors = sorted(_validator().iter_errors(data), key=lambda e: (list(e.absolute_path), e.message))
    if errors:
        shown = []
        for error in errors[:3]:
            where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
            message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
            shown.append(f"at {where}: {message}")
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise RecordError(f"{path}: not a valid result record — {'; '.join(shown)}{more}. The format is "
                          "robustbench_us/schema/record.schema.json (docs/leaderboard.md); delete the file "
                          "and re-run the suite to regenerate it.")
    return data
