"""Find the user's PercePiano checkout, check its layout and say which version of it this is.

The checkout location is never a literal in our code: it comes from an explicit argument, then from
`[tool.parity] original = "..."` in a pyproject.toml / parity.toml, then from `PERCEPIANO_ORIGINAL`.
A report must be able to prove what ran, so the checkout is described by its git commit when it has one
and always by a content fingerprint of the model files; a checkout that matches neither the validated
commit nor the validated fingerprint still loads, with a warning.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from percepiano_parity.original_adapter.errors import OriginalLoadError

ENV_VAR = "PERCEPIANO_ORIGINAL"
CODE_DIR = Path("virtuoso") / "virtuoso"  # where the flat-named model modules live
DEFAULT_YML = "virtuoso/ymls/shared/label19/han_bigger256_concat.yml"  # the only yml the scripts use

# Files the adapter needs; they are also what the content fingerprint covers.
REQUIRED_FILES: tuple[str, ...] = tuple(
    sorted(
        [
            *(str(CODE_DIR / name) for name in (
                "model_m2pf.py", "encoder_score.py", "module.py", "model_utils.py", "utils.py",
                "note_embedder.py", "encoder_perf.py",
            )),
            DEFAULT_YML,
        ]
    )
)

# The version the facts sheet and the parity checks were validated against.
VALIDATED_COMMIT = "e672299"
# sha256 fingerprint (see `fingerprint`) of REQUIRED_FILES in the unmodified snapshot at that commit.
VALIDATED_FINGERPRINT = "063645d30103d85f9c0bf1c4c8ac76cf1d2ec258dbd236d2b9072fb8ee3f6f55"

_CONFIG_FILES = ("parity.toml", "pyproject.toml")


@dataclass(frozen=True)
class CheckoutInfo:
    """Where the checkout is and which version of it this is."""

    root: Path
    commit: str | None  # full git commit, when the checkout is a git work tree
    fingerprint: str  # sha256 hex over REQUIRED_FILES
    validated: bool
    warnings: tuple[str, ...] = field(default=())

    @property
    def code_dir(self) -> Path:
        return self.root / CODE_DIR

    @property
    def revision(self) -> str:
        """The commit when known, else the content fingerprint (prefixed so the two cannot be confused)."""
        return self.commit if self.commit else f"sha256:{self.fingerprint}"


def find_project_config(start: str | Path | None = None) -> dict[str, Any]:
    """The `[tool.parity]` table of the nearest parity.toml / pyproject.toml, walking up from `start`.

    A relative `original` is made absolute against the file's folder, so the returned mapping can be
    handed to `resolve_root` from anywhere. Returns {} when no such file or table exists.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        for name in _CONFIG_FILES:
            path = folder / name
            if not path.is_file():
                continue
            try:
                data = tomllib.loads(path.read_text())
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise OriginalLoadError(f"cannot read {path}: {exc}") from None
            table = dict(data.get("tool", {}).get("parity", {}))
            if name == "parity.toml":
                table = {**{k: v for k, v in data.items() if k != "tool"}, **table}
            if "original" in table:
                table["original"] = str((path.parent / str(table["original"])).resolve())
                table["source"] = str(path)
            return table
    return {}


def _configured_original(config: Mapping[str, Any] | None) -> str | None:
    if not config:
        return None
    table: Any = config
    if "tool" in config:  # a whole parsed pyproject.toml
        table = config.get("tool", {}).get("parity", {})
    value = table.get("original") if isinstance(table, Mapping) else None
    return str(value) if value else None


def resolve_root(path: str | Path | None = None, config: Mapping[str, Any] | None = None) -> Path:
    """Checkout root from, in order: `path`, `config` ([tool.parity] original), `$PERCEPIANO_ORIGINAL`."""
    for candidate, origin in (
        (path, "the given path"),
        (_configured_original(config), "[tool.parity] original"),
        (os.environ.get(ENV_VAR) or None, f"${ENV_VAR}"),
    ):
        if candidate:
            return validate_layout(Path(candidate).expanduser(), origin)
    raise OriginalLoadError(
        "no PercePiano checkout given: pass its path, set [tool.parity] original in pyproject.toml "
        f"or parity.toml, or set {ENV_VAR}"
    )


def validate_layout(path: Path, origin: str = "the given path") -> Path:
    """Return the checkout root, accepting the root itself or its virtuoso/ or virtuoso/virtuoso/ folder."""
    if not path.exists():
        raise OriginalLoadError(f"PercePiano checkout not found: {path} ({origin}) does not exist")
    if not path.is_dir():
        raise OriginalLoadError(f"{path} ({origin}) is a file, not a PercePiano checkout folder")
    path = path.resolve()
    for root in (path, path.parent, path.parent.parent):
        if all((root / rel).is_file() for rel in REQUIRED_FILES):
            return root
    missing = [rel for rel in REQUIRED_FILES if not (path / rel).is_file()]
    raise OriginalLoadError(f"{path} ({origin}) is not a PercePiano checkout: missing {', '.join(missing)}")


def fingerprint(root: Path, files: tuple[str, ...] = REQUIRED_FILES) -> str:
    """sha256 over the sorted relative paths and bytes of `files` (unambiguous: each part is length-framed)."""
    digest = hashlib.sha256()
    for rel in sorted(files):
        data = (root / rel).read_bytes()
        for part in (rel.encode(), data):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()


def git_commit(root: Path) -> str | None:
    """`git rev-parse HEAD` when the checkout has a .git; None when there is none or git fails."""
    if not (root / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit or None


def describe(root: Path) -> CheckoutInfo:
    """Identify the checkout and compare it with the validated version."""
    commit = git_commit(root)
    digest = fingerprint(root)
    same_files = digest == VALIDATED_FINGERPRINT
    same_commit = bool(commit) and commit.startswith(VALIDATED_COMMIT)
    warnings: list[str] = []
    if same_commit and not same_files:
        warnings.append(
            f"the checkout is at the validated commit {VALIDATED_COMMIT} but its model files differ from it "
            f"(fingerprint {digest[:12]}): local edits change what is audited"
        )
    elif not (same_commit or same_files):
        seen = f"commit {commit[:12]}" if commit else f"fingerprint {digest[:12]}"
        warnings.append(
            f"unvalidated checkout ({seen}): the adapter was validated on commit {VALIDATED_COMMIT} "
            f"(fingerprint {VALIDATED_FINGERPRINT[:12]}); level names or shapes may not match"
        )
    return CheckoutInfo(root=root, commit=commit, fingerprint=digest, validated=same_files,
                        warnings=tuple(warnings))
