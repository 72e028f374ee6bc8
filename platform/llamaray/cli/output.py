"""What the CLI prints: a table a person reads, or JSON for a script (`--json`)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any, Iterable

from pydantic import BaseModel


def plain(value: Any) -> Any:
    """API types and lists of them as JSON-ready data."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def emit(value: Any, as_json: bool, columns: Iterable[str] | None = None) -> None:
    """`value` (one record or a list) as JSON, or as a table of `columns` (all fields if None)."""
    data = plain(value)
    if as_json:
        json.dump(data, sys.stdout, indent=2)
        print()
        return
    rows = data if isinstance(data, list) else [data]
    if not rows:
        print("(none)")
        return
    if not isinstance(rows[0], dict):
        print("\n".join(str(row) for row in rows))
        return
    table(rows, list(columns or rows[0].keys()))


def table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    print("  ".join(column.upper().ljust(width) for column, width in zip(columns, widths)).rstrip())
    for line in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str) and len(value) >= 19 and value[4:5] == "-" and value[10:11] == "T":
        try:  # timestamps as a person reads them, to the second
            return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            return value
    if isinstance(value, str):  # one line per row: a table is for reading, --json has it whole
        text = " ".join(value.split())
        return text if len(text) <= 80 else text[:77] + "..."
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        text = json.dumps(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return str(value)
