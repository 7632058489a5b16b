"""Strict JSON and CSV text, read and written: the formats of every record a run or a report leaves."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path


def json_text(obj) -> str:
    """Strict JSON (no NaN or Infinity, which other readers refuse): non-finite numbers become null."""
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v
    return json.dumps(clean(obj), indent=2, allow_nan=False)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def read_json_or_empty(path: Path) -> dict:
    """A JSON object from a run folder, or {} where it is missing, unreadable or not an object."""
    try:
        data = read_json(path)
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def csv_text(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if r.get(k) is None else r.get(k)) for k in columns} for r in rows)
    return buf.getvalue()


def read_csv(path: Path) -> list[dict]:
    def parse(v: str):
        if v == "":
            return None
        try:
            return int(v) if v.lstrip("-").isdigit() else float(v)
        except ValueError:
            return v
    with open(path) as f:
        return [{k: parse(v) for k, v in row.items()} for row in csv.DictReader(f)]
