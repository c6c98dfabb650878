"""`parity check` options: one declarative table behind the command line, the config file and the pytest plugin.

Every option is declared once in `OPTIONS` (its flag, its `[tool.parity]` key, its type and its constraint).
The command line, `[tool.parity]` in ./pyproject.toml or ./parity.toml (or the file given with `--config`),
and keyword arguments of the pytest fixture are all read through that table, then validated up front:
an unknown key, a value of the wrong type, a bad choice or two options that contradict each other stop the
run with one clear line (`UsageError`, exit code 2) before anything is loaded. Precedence: command line, then
config file, then `$PERCEPIANO_ORIGINAL` (for `original` only), then the defaults below.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from percepiano_parity.core.errors import UsageError
from percepiano_parity.core.findings import Severity
from percepiano_parity.core.options import EDGE_MAX_NOTES, MIN_NOTES, CheckOptions
from percepiano_parity.core.validation import InputError, got, read_toml, shown

CONFIG_FILES = ("pyproject.toml", "parity.toml")
ORIGINAL_ENV = "PERCEPIANO_ORIGINAL"
MODEL_CONFIGS = ("default", "small")
# Upper bounds of the integer options: what the libraries accept (numpy's legacy seeding takes 32 bits) and
# far beyond any sensible run, so a typo fails in one line instead of deep inside torch or numpy.
MAX_SEED = 2**32 - 1
MAX_BATCHES = 10_000
MAX_NOTES_CAP = 1_000_000
MAX_THREADS = 1024


# ------------------------------------------------------------------------------------------ option table


def _int(minimum: int, maximum: int) -> Callable[[Any], int]:
    """An integer in [minimum, maximum], from an int or its decimal text (command line, config strings)."""
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"expected an integer, got {got(value)}")
        text = value.strip() if isinstance(value, str) else str(value)
        if not re.fullmatch(r"[+-]?\d{1,40}", text):
            raise ValueError(f"expected an integer, got {shown(value)}")
        number = int(text)
        if number < minimum:
            raise ValueError(f"must be at least {minimum}, got {number}")
        if number > maximum:
            raise ValueError(f"must be at most {maximum}, got {shown(number)}")
        return number
    return parse


def _text(value: Any) -> str:
    if not isinstance(value, str | os.PathLike) or not str(value).strip():
        raise ValueError(f"expected a non-empty string, got {got(value)}")
    if "\0" in str(value):
        raise ValueError(f"expected text without NUL characters, got {shown(value)}")
    return str(value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = value.strip().lower() if isinstance(value, str) else None
    if text in ("1", "true", "yes", "on") or (type(value) is int and value == 1):
        return True
    if text in ("0", "false", "no", "off") or (type(value) is int and value == 0):
        return False
    raise ValueError(f"expected true or false, got {got(value)}")


def _formats(value: Any) -> str:
    from percepiano_parity.reports import parse_formats

    if isinstance(value, list | tuple):
        for i, item in enumerate(value, 1):
            if not isinstance(item, str):
                raise ValueError(f"item {i} of the list: expected a format name (a string), got {got(item)}")
        text = ",".join(value)
    else:
        text = _text(value)
    return ",".join(parse_formats(text))


def _severity(value: Any) -> str:
    return Severity.parse(_text(value)).label


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _text(value).strip()
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {text!r}")
        return text
    return parse


def _variant(value: Any) -> str:
    from percepiano_parity.replica.variants import VARIANTS

    text = _text(value).strip()
    if text not in VARIANTS:
        raise ValueError(f"unknown variant {text!r}; choose one of: {', '.join(VARIANTS)} (see `parity variants`)")
    return text


def _deviation(value: Any) -> str:
    from percepiano_parity.subjects.deviations import DEVIATIONS

    text = _text(value).strip()
    if text not in DEVIATIONS:
        raise ValueError(f"unknown deviation {text!r}; `parity deviations` lists them")
    return text


def _data_split(value: Any) -> str:
    from percepiano_parity.batches.real.splits import parse_split

    text = _text(value).strip()
    parse_split(text)
    return text


def _model_config(value: Any) -> str:
    text = _text(value).strip()
    if text in MODEL_CONFIGS or text.endswith((".yml", ".yaml")):
        return text
    raise ValueError(f"expected {', '.join(MODEL_CONFIGS)} or a path to an original .yml file, got {text!r}")


@dataclass(frozen=True)
class Option:
    """One option of `parity check`: attribute name, flag, config key, parser, default, help."""

    name: str
    flag: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    metavar: str | None = None
    is_path: bool = False  # relative values in a config file are relative to that file
    is_flag: bool = False  # a switch without a value on the command line
    const: Any = True  # the value a switch sets

    @property
    def key(self) -> str:
        return self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("original", "--original", _text, None, "a checkout of the original PercePiano code (live reference; "
           f"also [tool.parity] original or ${ORIGINAL_ENV})", "PATH", is_path=True),
    Option("replica", "--replica", _text, None, "the replica to audit: module:factory or path.py:factory "
           "(default: the bundled faithful replica); see docs/user_replica.md", "SPEC"),
    Option("reference", "--reference", _text, None, "a recorded reference bundle (default: the shipped bundle "
           "for the variant when no original is given)", "BUNDLE", is_path=True),
    Option("variant", "--variant", _variant, "han-total", "which model to compare (see `parity variants`)", "ID"),
    Option("batches", "--batches", _int(1, MAX_BATCHES), 3, "number of realistic batches (edge-case batches come "
           "on top)", "N"),
    Option("seed", "--seed", _int(0, MAX_SEED), 0, "seed for the batches and for building both models", "S"),
    Option("device", "--device", _choice("cpu", "cuda"), "cpu", "where the models run", "{cpu,cuda}"),
    Option("report_dir", "--report-dir", _text, "parity-report", "folder for the report files", "DIR",
           is_path=True),
    Option("format", "--format", _formats, "console,md,json,html,junit",
           "report formats, comma-separated: console, md, json, html, junit (or all)", "LIST"),
    Option("fail_on", "--fail-on", _severity, "warning",
           "lowest severity that makes the run fail (info, warning, error)", "{info,warning,error}"),
    Option("waivers", "--waivers", _text, None, "TOML file of accepted deviations, each with a reason", "FILE",
           is_path=True),
    Option("compare_to", "--compare-to", _text, None, "an earlier report.json: report new, gone and unchanged "
           "explanations", "OLD_REPORT.json", is_path=True),
    Option("fail_on_new", "--fail-on-new", _bool, False, "with --compare-to: only explanations that are new "
           "since that report decide the exit code", is_flag=True),
    Option("deviation", "--deviation", _deviation, None, "audit the bundled replica with this library "
           "deviation applied (see `parity deviations`)", "NAME"),
    Option("mapping", "--mapping", _text, None, "weight-map overrides: TOML with a [map] table of reference "
           "name = replica name", "FILE", is_path=True),
    Option("max_notes", "--max-notes", _int(MIN_NOTES, MAX_NOTES_CAP), None, "cap the notes per segment (at least "
           f"{MIN_NOTES}); edge cases are capped at {EDGE_MAX_NOTES} anyway", "N"),
    Option("model_config", "--model-config", _model_config, "default", "model size for a live original: "
           "default (the published yml), small (fast), or a path to one of the original's .yml files; a "
           "bundle fixes its own", "{default,small,FILE.yml}", is_path=False),
    Option("edge_cases", "--no-edge-cases", _bool, True, "leave out the edge-case batches", is_flag=True,
           const=False),
    Option("training_checks", "--no-training-checks", _bool, True, "leave out the recipe, trajectory and data "
           "checks (they take a few optimizer steps on both sides)", is_flag=True, const=False),
    Option("threads", "--threads", _int(1, MAX_THREADS), None, "torch CPU threads (default: torch's choice; 1 is "
           "often fastest for the small models on a busy machine)", "N"),
    Option("thorough", "--thorough", _bool, False, "also measure what only serves to explain a mismatch where "
           "nothing differs (gradient noise floors, teacher-forced local error of every level); same verdict, "
           "slower", is_flag=True, const=True),
    Option("data", "--data", _text, None, "a cache made by `parity data prepare`: feed batches of real segments "
           "(real features, lengths, note locations, labels) instead of synthetic ones; needs a live original",
           "CACHE", is_path=True),
    Option("data_split", "--data-split", _data_split, "performer4fold:0:train", "with --data: which split of which "
           "fold the loader batches (SCHEME:FOLD:SPLIT; train is shuffled as the original's loader does)",
           "SPLIT"),
    Option("dataset", "--dataset", _text, None, "with --data: your dataset and collate (module:function or "
           "path.py:function, or 'original' for the original's own loader), compared on one epoch of the split "
           "with what the original's loader hands the model", "SPEC"),
    Option("debug", "--debug", _bool, False, "show tracebacks", is_flag=True),
)
OPTION_BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}
OPTION_BY_KEY: dict[str, Option] = {o.key: o for o in OPTIONS}


# ------------------------------------------------------------------------------------------ config files


def find_config(start: str | Path | None = None) -> Path | None:
    """./pyproject.toml with a [tool.parity] table, else ./parity.toml (current folder only)."""
    folder = Path(start or Path.cwd())
    pyproject = folder / "pyproject.toml"
    if pyproject.is_file():
        try:
            tool = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {})
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return pyproject  # let read_config report it
        if not isinstance(tool, dict) or "parity" in tool:
            return pyproject  # a `tool` that is not a table: read_config says so
    parity_toml = folder / "parity.toml"
    return parity_toml if parity_toml.is_file() else None


def _table(data: dict[str, Any], p: Path) -> dict[str, Any]:
    """The parity table of a parsed config file ({} for a pyproject.toml without one)."""
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise InputError(f"config file {p}: tool: expected a table, got {got(tool)}")
    table = tool.get("parity")
    if table is None:
        if p.name == "pyproject.toml":
            return {}
        return {k: v for k, v in data.items() if k != "tool"}
    if not isinstance(table, dict):
        raise InputError(f"config file {p}: tool.parity: expected a table, got {got(table)}")
    return table


def read_config(path: str | Path) -> dict[str, Any]:
    """The parity table of a config file: [tool.parity] of a pyproject.toml; in parity.toml either [tool.parity]
    or top-level keys. Every value is checked against its option (`InputError` naming the file and the key);
    relative paths are made absolute against the file's folder."""
    p = Path(path)
    table = _table(read_toml(p, what="config file"), p)
    out: dict[str, Any] = {}
    for raw_key, value in table.items():
        key = str(raw_key).replace("_", "-")
        option = OPTION_BY_KEY.get(key)
        if option is None:
            known = ", ".join(o.key for o in OPTIONS)
            raise InputError(f"config file {p}: unknown key {raw_key!r} in the parity table; known keys: {known}")
        try:
            option.parse(value)
        except ValueError as exc:
            raise InputError(f"config file {p}: {option.key}: {exc}") from None
        if option.is_path and isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            value = str((p.parent / value).resolve())
        if option.name == "replica" and isinstance(value, str):
            value = _absolute_replica_spec(value, p.parent)
        if option.name == "model_config" and isinstance(value, str) and value.endswith((".yml", ".yaml")):
            value = str((p.parent / value).resolve()) if not Path(value).is_absolute() else value
        out[option.name] = value
    return out


def _absolute_replica_spec(spec: str, base: Path) -> str:
    target, sep, attr = spec.rpartition(":")
    if sep and target.endswith(".py") and not Path(target).is_absolute():
        return f"{(base / target).resolve()}:{attr}"
    return spec


# ------------------------------------------------------------------------------------------ resolution


def resolve_options(cli: Mapping[str, Any], *, config_path: str | None = None, cwd: str | Path | None = None,
                    use_config_file: bool = True, environ: Mapping[str, str] | None = None) -> CheckOptions:
    """Merge command-line values (None = not given) over the config file over the defaults, and validate."""
    environ = os.environ if environ is None else environ
    unknown = sorted(set(cli) - set(OPTION_BY_NAME))
    if unknown:
        raise UsageError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; known: "
                         f"{', '.join(OPTION_BY_NAME)}")
    file_values: dict[str, Any] = {}
    source = None
    if config_path is not None:
        file_values, source = read_config(config_path), str(config_path)
    elif use_config_file:
        found = find_config(cwd)
        if found is not None:
            file_values, source = read_config(found), str(found)
    options = CheckOptions(config_file=source)
    for option in OPTIONS:
        for where, values in (("command line", cli), (source or "config", file_values)):
            value = values.get(option.name)
            if value is None:
                continue
            try:
                parsed = option.parse(value)
            except ValueError as exc:
                label = option.flag if where == "command line" else f"config file {where}: {option.key}"
                raise InputError(f"{label}: {exc}") from None
            setattr(options, option.name, parsed)
            options.explicit[option.name] = where
            break
    if options.original is None and "original" not in options.explicit and environ.get(ORIGINAL_ENV):
        options.original = environ[ORIGINAL_ENV]
        options.original_from_env = True
    validate(options)
    return options


def validate(options: CheckOptions) -> None:
    """Contradictions and dependencies between options, each refused with one line."""
    ex = options.explicit
    if options.reference and options.original and not options.original_from_env:
        same_level = ex.get("reference") == ex.get("original")
        if same_level:
            raise UsageError("--reference and --original both name a reference; give one of them")
        # the command line wins over the config file
        if ex.get("reference") == "command line":
            options.original = None
        else:
            options.reference = None
    if options.reference and options.original_from_env:
        options.original = None  # an explicit bundle wins over the environment
        options.original_from_env = False
    if options.replica and options.deviation:
        raise UsageError("--deviation applies to the bundled replica; it cannot be combined with --replica")
    if options.deviation and not ex.get("variant"):
        from percepiano_parity.subjects.deviations import get_deviation

        options.variant = get_deviation(options.deviation).variant  # where the deviation's effect shows
    if options.fail_on_new and not options.compare_to:
        raise UsageError("--fail-on-new needs --compare-to OLD_REPORT.json")
    if options.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: CUDA is not available on this machine (torch "
                             f"{torch.__version__}); use --device cpu")
    if options.replica:
        target, sep, attr = options.replica.rpartition(":")
        if not sep or not target or not attr:
            raise UsageError(f"--replica {options.replica!r}: expected module:factory or path.py:factory")
    for name in ("waivers", "mapping", "compare_to", "reference"):
        value = getattr(options, name)
        if value and not Path(value).expanduser().exists():
            raise UsageError(f"{OPTION_BY_NAME[name].flag} {value}: no such file or folder")
    if options.model_config not in MODEL_CONFIGS:  # a YAML file: checked now even if a bundle will ignore it
        from percepiano_parity.core.config import read_model_yaml

        read_model_yaml(options.model_config)
    if options.data:
        _validate_data(options)
    elif options.dataset:
        raise UsageError("--dataset needs --data CACHE: the user's dataset is compared on real segments")


def _validate_data(options: CheckOptions) -> None:
    """--data: a readable cache, and a reference that can run on it (a bundle fixes its own batches)."""
    from percepiano_parity.batches.real.cache import CacheError, read_manifest
    from percepiano_parity.subjects.sides import REPLICA_REFERENCE_HOOK

    try:
        read_manifest(options.data)
    except CacheError as exc:
        raise UsageError(f"--data: {exc}") from None
    if options.max_notes is not None:
        raise UsageError("--max-notes cannot be combined with --data: the original's loader feeds real segments whole")
    if options.reference:
        raise UsageError("--data cannot be combined with --reference: a bundle fixes its own (synthetic) batches")
    if not options.original and os.environ.get(REPLICA_REFERENCE_HOOK) != "replica":
        raise UsageError("--data needs a live original: give --original PATH (or set PERCEPIANO_ORIGINAL); the "
                         "shipped bundles were recorded on synthetic batches")


__all__ = ["OPTIONS", "OPTION_BY_KEY", "OPTION_BY_NAME", "CheckOptions", "Option", "UsageError", "find_config",
           "read_config", "resolve_options", "validate"]
