"""The weight-map override file (`--mapping`, TOML), read and checked at the boundary.

    [map]
    "reference.parameter.name" = "candidate.parameter.name"

Only a `[map]` table of names to names; anything else is refused in one line naming the file and the key
(`core.validation`). Whether the names exist in the two models is checked once both are built
(`subjects.candidate.mapping_overrides`).
"""

from __future__ import annotations

from pathlib import Path

from percepiano_parity.core.schema import Schema, validated
from percepiano_parity.core.validation import read_toml


class MappingFile(Schema):
    """reference parameter name -> candidate parameter name, under `[map]`."""

    map: dict[str, str] = {}


def read_mapping_file(path: str | Path | None) -> dict[str, str]:
    """The overrides of a mapping file ({} for None); `InputError` (exit code 2) when the file is bad."""
    if path is None:
        return {}
    source = f"mapping overrides file {Path(path)}"
    return dict(validated(MappingFile, read_toml(path, what="mapping overrides file"), source=source).map)


__all__ = ["MappingFile", "read_mapping_file"]
