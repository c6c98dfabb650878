"""report.json: `Report.to_dict()` as strict JSON.

The output is byte-identical for the same inputs: key order is the order `to_dict` builds, sets become
sorted lists, and only the `run` section carries volatile details. Non-finite floats, which strict JSON
cannot hold, become the strings "nan", "inf" and "-inf".
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from enum import Enum
from pathlib import Path, PurePath
from typing import Any

from percepiano_parity.core.findings import Severity
from percepiano_parity.core.report import SCHEMA_VERSION, Report


def _float(x: float) -> float | str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def to_jsonable(value: Any, path: str = "$") -> Any:
    """A copy of `value` that strict JSON can hold; raises TypeError naming where an unknown type sits."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)  # plain str, also for StrEnum members
    if isinstance(value, Severity):
        return value.label
    if isinstance(value, Enum):
        return to_jsonable(value.value, path)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _float(float(value))
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, set | frozenset):
        items = [to_jsonable(v, f"{path}[]") for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy / torch scalars and small arrays
        return to_jsonable(value.tolist(), path)
    if hasattr(value, "item") and callable(value.item):
        return to_jsonable(value.item(), path)
    raise TypeError(f"report value at {path} is a {type(value).__name__}, which JSON cannot hold")


def render_json(report: Report) -> str:
    data = to_jsonable(report.to_dict())
    return json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False, allow_nan=False) + "\n"


def load_report_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a report.json written by `render_json`; ValueError if the file is not a parity report."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{p} is not a parity report: not UTF-8 text ({exc.reason})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p} is not a parity report: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise ValueError(f"{p} is not a parity report: no schema_version at the top level")
    version = str(data["schema_version"])
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise ValueError(
            f"{p} is a parity report with schema_version {version}, which this tool cannot read "
            f"(it reads {SCHEMA_VERSION.split('.')[0]}.x)"
        )
    missing = [k for k in ("verdict", "variant", "checks") if k not in data]
    if missing:
        raise ValueError(f"{p} is not a complete parity report: missing {', '.join(missing)}")
    return data
