"""Record (or check) the golden reports: `parity check` on the shipped bundle for the faithful replica and
four library deviations, report.json without its volatile `run` section, machine paths replaced; each
report.json is validated against the shipped schema first.

    python tools/golden_reports.py --update      # rewrite tests/golden/*.json (after an intended change)
    python tools/golden_reports.py               # compare on meaning, exit 1 on any difference

A golden report is compared with a fresh run on what carries meaning (`differences`), not byte for byte: the
float64 noise floors and the float32 figures of another CPU (another summation order) differ in their last
digits, and a noise floor, being the size of the rounding error itself, can differ by a factor of a few.

* exactly: the structure (keys, list lengths, types), every id, kind, location, severity, status and verdict,
  every text once its numbers are taken out, and every integer (counts, indices, layer numbers);
* figures (floats, and the decimal numbers inside texts): within `REL` (1e-3) relative, plus one unit of the last
  printed digit for a number in a text ("0.186" and "0.187" are the same figure printed to three digits), plus
  the noise scale of the figure: the report's own tolerance for its row (`tolerance`, `tolerance_abs`,
  `tolerance_rel`, or `floor_multiple` times its noise floor: the threshold the audit itself uses to call a
  difference rounding), a noise floor's own tolerance for a floor, anything for the difference figures of a row
  the report judged within tolerance (status "ok"), and `ABS_NOISE` (1e-7) where the report states none;
* table rows are paired by their names (their strings and integers), not their positions: a table sorted by a
  figure at noise level (the gradients of a faithful run) comes out in another order on another CPU, and a table
  cut to its largest rows may then hold other rows judged within tolerance (as many, none of them flagged). The
  order of checks, findings and explanations is compared as it is.

Byte identity is what identical runs on one machine promise (README): `without_run` gives the bytes of a
report.json up to its `run` section, and the tests compare two runs' bytes. The test
`tests/commands/test_reports_unchanged.py` runs both comparisons.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
SCENARIOS: dict[str, list[str]] = {
    "faithful": [],
    "layernorm-han-output": ["--deviation", "layernorm-han-output"],
    "head-512-128": ["--deviation", "head-512-128"],
    "padded-lstm": ["--deviation", "padded-lstm"],
    "boundaries-any-change": ["--deviation", "boundaries-any-change"],
}

# Three significant digits: what the console and Markdown reports print (e.g. "0.186"). The largest drift of a
# figure above noise level measured between two CPUs on the five scenarios is 1.3e-4 relative (the cosine between
# two gradients that are themselves rounding noise), so 1e-3 holds with a margin and still catches a change in
# the third digit of any figure a reader sees.
REL = 1e-3
# Where the report states no tolerance for a figure (an explanation's measured effect, a cosine): float32's unit
# roundoff (2**-24, 6e-8) of a quantity of magnitude 1, rounded up. The report's figures are differences of logits,
# losses and activations of magnitude 1 or below, so two such differences closer than 1e-7 differ by rounding
# (e.g. a loss difference of 2.749e-06 on one CPU and 2.746e-06 on another; a residual of 0 or 1.5e-08).
ABS_NOISE = 1e-7
FLOOR_MULTIPLE = 5.0  # the report's own (settings.tolerances.floor_multiple) when it states one

_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.])")
_TOLERANCES = {"abs": ("tolerance", "tolerance_abs"), "rel": ("tolerance_rel",)}
_FLOORS = {"abs": ("floor", "floor_abs"), "rel": ("floor_rel",)}
_WITHIN_TOLERANCE = ("ok",)  # a row status that says the report judged its difference rounding


# ------------------------------------------------------------------------------------------ running a scenario

def normalise(text: str) -> str:
    """Machine paths out: the checkout root and the shared folder beside it."""
    shared = str(ROOT.parent / "shared")
    return text.replace(str(ROOT), "<repo>").replace(shared, "<shared>")


def _schema_errors(report: dict) -> list[str]:
    """The shipped schema's verdict on a report (every report written here validates); [] without jsonschema."""
    from percepiano_parity.core.report import schema_errors

    try:
        return schema_errors(report)
    except ImportError as exc:
        print(f"golden: not validated: {exc}", file=sys.stderr)
        return []


def run_scenario(name: str) -> str:
    """The report.json text `parity check` writes for one scenario (a fresh process, the original's checkout
    and the test hooks out of its environment)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PERCEPIANO_ORIGINAL", "PARITY_TEST_REFERENCE")}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "percepiano_parity", "check", *SCENARIOS[name], "--format", "json",
               "--report-dir", tmp]
        done = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
        path = Path(tmp) / "report.json"
        if done.returncode not in (0, 1) or not path.is_file():
            raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode} without report.json: "
                               f"{done.stderr.strip()[-500:]}")
        return path.read_text(encoding="utf-8")


def golden_text(report_json: str, name: str = "report") -> str:
    """A report.json as a golden file: validated, `run` removed, paths normalised, canonical JSON text."""
    report = json.loads(report_json)
    problems = _schema_errors(report)
    if problems:
        raise RuntimeError(f"report.json of {name} does not validate against the shipped schema: "
                           + "; ".join(problems[:5]))
    report.pop("run", None)
    return normalise(json.dumps(report, indent=1, sort_keys=True)) + "\n"


def report_text(name: str) -> str:
    """report.json of one scenario as a golden file (`golden_text` of `run_scenario`)."""
    return golden_text(run_scenario(name), name)


def without_run(report_json: str) -> str:
    """The text of a report.json up to its `run` section, which is its last member (`Report.to_dict`) and the
    only one allowed to differ between identical runs; ValueError when `run` is not last."""
    data = json.loads(report_json)
    if list(data)[-1:] != ["run"]:
        raise ValueError(f"report.json does not end with its run section (members: {', '.join(data)})")
    cut = report_json.rfind('"run":')
    return report_json[:cut]


# ------------------------------------------------------------------------------------------ meaning

def differences(expected: Any, got: Any, *, limit: int = 40) -> list[str]:
    """What differs in meaning between two reports (see the module docstring); [] when they say the same."""
    tolerances = expected.get("settings", {}).get("tolerances", {}) if isinstance(expected, dict) else {}
    multiple = float(tolerances.get("floor_multiple", FLOOR_MULTIPLE))
    found: list[str] = []
    for problem in _walk(expected, got, "", _Context(multiple)):
        found.append(problem)
        if len(found) >= limit:
            found.append(f"... (stopped after {limit})")
            break
    return found


class _Context:
    """Where a value sits: the row (dict) holding it on either side, whether under noise_floors or a table."""

    def __init__(self, multiple: float, rows: tuple[dict, dict] | None = None, floors: bool = False,
                 table: bool = False) -> None:
        self.multiple, self.rows, self.floors, self.table = multiple, rows, floors, table

    def inside(self, a: dict, b: dict, key: str) -> _Context:
        return _Context(self.multiple, (a, b), self.floors or key == "noise_floors",
                        key == "tables" or (self.table and not isinstance(a.get(key), dict)))


def _walk(a: Any, b: Any, path: str, ctx: _Context) -> Iterator[str]:
    where = path or "/"
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a) != list(b) and set(a) != set(b):
            missing, extra = sorted(set(a) - set(b)), sorted(set(b) - set(a))
            yield f"{where}: keys differ (missing {missing}, extra {extra})"
            return
        for key in a:
            child = ctx.inside(a, b, key)
            yield from _walk(a[key], b[key], f"{path}/{key}", child)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"{where}: {len(a)} items, now {len(b)}"
            return
        pairs = _table_pairs(a, b) if ctx.table else None
        if pairs is None:
            pairs = [(str(i), x, y) for i, (x, y) in enumerate(zip(a, b, strict=True))]
        for label, x, y in pairs:
            if x is None or y is None:
                if (x if y is None else y).get("status") not in _WITHIN_TOLERANCE:
                    yield f"{where}: row {label} {'missing' if y is None else 'new'}"
            else:
                yield from _walk(x, y, f"{path}[{label}]", ctx)
    elif isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        if a is not b and a != b or type(a) is not type(b):
            yield f"{where}: {a!r}, now {b!r}"
    elif isinstance(a, str) and isinstance(b, str):
        yield from _text(a, b, where, ctx)
    elif isinstance(a, int) and isinstance(b, int):
        if a != b:
            yield f"{where}: {a}, now {b}"
    elif isinstance(a, int | float) and isinstance(b, int | float) and (isinstance(a, float) or isinstance(b, float)):
        key = path.rsplit("/", 1)[-1]
        if not _same_figure(float(a), float(b), _noise(key, float(a), float(b), ctx)):
            yield f"{where}: {a!r}, now {b!r}"
    else:
        yield f"{where}: {type(a).__name__} {a!r}, now {type(b).__name__} {b!r}"


def _name(row: Any) -> tuple | None:
    """A table row's name: its strings (numbers in them blanked) and integers; None for a non-dict."""
    if not isinstance(row, dict):
        return None
    return tuple(sorted((k, _NUMBER.sub("#", v) if isinstance(v, str) else v) for k, v in row.items()
                        if isinstance(v, str | int) or v is None))


def _table_pairs(a: list, b: list) -> list[tuple[str, Any, Any]] | None:
    """Rows of two tables paired by name when every row's name is unique on both sides; None otherwise."""
    names_a, names_b = [_name(r) for r in a], [_name(r) for r in b]
    if None in names_a or None in names_b or len(set(names_a)) < len(a) or len(set(names_b)) < len(b):
        return None
    by_b = dict(zip(names_b, b, strict=True))
    pairs = [(_label(n, i), x, by_b.get(n)) for i, (n, x) in enumerate(zip(names_a, a, strict=True))]
    pairs += [(_label(n, i), None, y) for i, (n, y) in enumerate(zip(names_b, b, strict=True)) if n not in set(names_a)]
    return pairs


def _label(name: tuple, index: int) -> str:
    strings = [str(v) for _, v in name if isinstance(v, str) and v]
    return strings[0] if strings else str(index)


def _family(key: str) -> str | None:
    if key.endswith("_rel"):
        return "rel"
    if key.endswith("_abs") or key in ("floor", "tolerance"):
        return "abs"
    return None


def _stated(row: dict, family: str, multiple: float) -> list[float]:
    """The noise scales a row states for one family: its tolerances, and its floors times the floor multiple
    (also those in its `metrics`)."""
    out: list[float] = []
    for source in (row, row.get("metrics") if isinstance(row.get("metrics"), dict) else {}):
        out += [abs(v) for k in _TOLERANCES[family] if isinstance(v := source.get(k), int | float)
                and not isinstance(v, bool) and math.isfinite(v)]
        out += [multiple * abs(v) for k in _FLOORS[family] if isinstance(v := source.get(k), int | float)
                and not isinstance(v, bool) and math.isfinite(v)]
    return out


def _noise(key: str, a: float, b: float, ctx: _Context, *, families: tuple[str, ...] | None = None) -> float:
    """How far apart two values of `key` may be by rounding alone, besides `REL` (see the module docstring)."""
    family = _family(key)
    if ctx.floors or key in _FLOORS["abs"] + _FLOORS["rel"]:
        return ctx.multiple * max(abs(a), abs(b))  # a noise floor, known to within its own tolerance
    chosen = families if families is not None else ((family,) if family else ())
    if not chosen or ctx.rows is None:
        return ABS_NOISE
    if any(row.get("status") in _WITHIN_TOLERANCE for row in ctx.rows) and family is not None:
        return math.inf  # the report judged this row's difference rounding: its size is rounding too
    scales = [s for row in ctx.rows for f in chosen for s in _stated(row, f, ctx.multiple)]
    return max(scales) if scales else ABS_NOISE


def _same_figure(a: float, b: float, noise: float, printed: float = 0.0) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= REL * max(abs(a), abs(b)) + noise + printed


def _printed_unit(token: str) -> float:
    """One unit of the last digit a number was printed with: 0.001 for "0.186", 1e-09 for "1.2e-08"."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.split(".", 1)[1]) if "." in mantissa else 0
    return 10.0 ** (-decimals + (int(exponent) if exponent else 0))


def _text(a: str, b: str, where: str, ctx: _Context) -> Iterator[str]:
    """Texts: equal with their numbers blanked; integers exact, decimals as figures (`_same_figure`), with the
    noise scale of the row the text belongs to (either family: a text does not say its unit)."""
    if a == b:
        return
    if _NUMBER.sub("#", a) != _NUMBER.sub("#", b):
        yield f"{where}: text {a[:160]!r}, now {b[:160]!r}"
        return
    for x, y in zip(_NUMBER.findall(a), _NUMBER.findall(b), strict=True):
        if x == y:
            continue
        decimal = any(c in x + y for c in ".eE")
        same = decimal and _same_figure(float(x), float(y), _noise("", float(x), float(y), ctx,
                                                                    families=("abs", "rel")),
                                        max(_printed_unit(x), _printed_unit(y)))
        if not same:
            yield f"{where}: {x} in {a[:120]!r}, now {y}"
            return


# ------------------------------------------------------------------------------------------ command line

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="rewrite the golden files")
    args = parser.parse_args(argv)
    GOLDEN.mkdir(parents=True, exist_ok=True)
    differ = []
    for name in SCENARIOS:
        text = report_text(name)
        path = GOLDEN / f"{name}.json"
        if args.update:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
            continue
        problems = differences(json.loads(path.read_text()), json.loads(text)) if path.exists() else ["no golden"]
        if problems:
            differ.append(name)
            print(f"{name}:\n  " + "\n  ".join(problems))
    if differ:
        print(f"reports differ in meaning from tests/golden: {', '.join(differ)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
