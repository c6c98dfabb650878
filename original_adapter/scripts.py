"""What the checkout's published shell scripts actually train, with the script lines as evidence.

The scripts under `virtuoso/scripts/` are small bash loops around `python virtuoso/__main__.py ...`
(training) or `eval_main.py` / `eval_case_study.py` (evaluation). This reads them well enough for that
shape: comments are skipped, backslash continuations joined, `NAME=(a b)` arrays and `for x in
"${NAME[@]}"` / `{0..3}` loops tracked, and `$x` / `${x}` in flag values expanded from them. The model
class follows `__main__`'s choice: `--multi_level X` -> VirtuosoNetMultiLevel(X), else `--ablation` ->
VirtuosoNetSingle, else VirtuosoNet. Training arguments are kept, with their lines, for a recipe check.
"""

from __future__ import annotations

import itertools
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from percepiano_parity.original_adapter.variants import VARIANT_BY_MULTI_LEVEL, VARIANTS

SCRIPTS_DIR = Path("virtuoso") / "scripts"
TRAINING_FLAGS = ("-yml", "--lr", "--batch_size", "--no_augment", "--label_file_path", "--num_labels")
_OTHER_MODEL_FLAGS = ("--classification", "--comparison")  # classes missing from model_m2pf (see facts §2)

_ARRAY = re.compile(r"^(\w+)=\((.*)\)$")
_SCALAR = re.compile(r"^(\w+)=(\S*)$")
_FOR = re.compile(r"^for\s+(\w+)\s+in\s+(.*?)\s*(?:;\s*do)?$")
_ARRAY_REF = re.compile(r"^\$\{(\w+)\[@\]\}$")
_BRACE_RANGE = re.compile(r"^\{(-?\d+)\.\.(-?\d+)\}$")
_VAR_REF = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass(frozen=True)
class Evidence:
    file: str  # relative to the checkout root
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


@dataclass(frozen=True)
class Run:
    """One model the scripts run: a python command, expanded over its loop variables."""

    kind: str  # "train" (__main__.py) or "eval" (any other entry script)
    entry: str  # the python file the command runs
    variant: str | None  # variant id, None when no known variant matches
    model: str  # how __main__ would choose the class, e.g. "--multi_level note", "no --multi_level flag"
    args: dict[str, tuple[str, ...]]  # flag -> expanded values ("" for a bare flag); absent flags absent
    evidence: tuple[Evidence, ...]  # for the model choice: the command line, the flag's line, its variables
    arg_evidence: dict[str, tuple[Evidence, ...]]  # flag -> its line and the variable definitions it used


@dataclass(frozen=True)
class ScriptsAnalysis:
    root: Path
    scripts: tuple[str, ...]
    runs: tuple[Run, ...]

    @property
    def training_runs(self) -> tuple[Run, ...]:
        return tuple(r for r in self.runs if r.kind == "train")

    def trained(self) -> dict[str, tuple[Evidence, ...]]:
        """Variant id -> evidence, for every variant some training script trains."""
        found: dict[str, list[Evidence]] = {}
        for run in self.training_runs:
            if run.variant is not None:
                found.setdefault(run.variant, []).extend(e for e in run.evidence if e not in found.get(run.variant, []))
        return {v: tuple(found[v]) for v in VARIANTS if v in found}

    def not_trained(self) -> dict[str, str]:
        """Variant id -> why no script trains it."""
        trained = self.trained()
        out = {}
        for vid, (class_name, multi_level) in VARIANTS.items():
            if vid in trained:
                continue
            if multi_level is not None:
                how = f"--multi_level {multi_level}"
            elif class_name == "VirtuosoNetSingle":
                how = "--ablation"
            else:
                how = "a run without --multi_level"
            out[vid] = f"no training script uses {how} ({len(self.scripts)} scripts under {SCRIPTS_DIR})"
        return out

    def training_args(self) -> dict[str, dict[str | None, tuple[Evidence, ...]]]:
        """Flag -> value -> evidence over all training runs; the value None means the flag is absent
        (evidence: the command lines of those runs)."""
        table: dict[str, dict[str | None, list[Evidence]]] = {flag: {} for flag in TRAINING_FLAGS}
        for run in self.training_runs:
            for flag in TRAINING_FLAGS:
                values: tuple[str | None, ...] = run.args.get(flag, (None,))
                lines = run.arg_evidence.get(flag, run.evidence[:1])
                for value in values:
                    bucket = table[flag].setdefault(value, [])
                    bucket.extend(e for e in lines if e not in bucket)
        return {flag: {v: tuple(ev) for v, ev in values.items()} for flag, values in table.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "scripts": list(self.scripts),
            "trained": {v: [str(e) for e in ev] for v, ev in self.trained().items()},
            "not_trained": self.not_trained(),
            "training_args": {
                flag: {("<absent>" if v is None else v): [str(e) for e in ev] for v, ev in values.items()}
                for flag, values in self.training_args().items()
            },
        }


@dataclass
class _Scope:
    """Bash variables seen so far in one script: name -> (possible values, where they were defined).
    Values are kept raw (they may mention other variables); expansion happens per command."""

    values: dict[str, tuple[tuple[str, ...], tuple[Evidence, ...]]] = field(default_factory=dict)

    def referenced(self, words: list[str]) -> list[str]:
        """Known variables the words mention, directly or through other variables' values."""
        seen: list[str] = []
        todo = [a or b for w in words for a, b in _VAR_REF.findall(w)]
        while todo:
            name = todo.pop(0)
            if name in self.values and name not in seen:
                seen.append(name)
                todo.extend(a or b for v in self.values[name][0] for a, b in _VAR_REF.findall(v))
        return seen

    def bindings(self, words: list[str]) -> list[dict[str, str]]:
        """One binding per combination of the loop values the words depend on."""
        names = self.referenced(words)
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(self.values[n][0] for n in names))]

    def evidence(self, word: str) -> list[Evidence]:
        return [e for name in self.referenced([word]) for e in self.values[name][1]]


def _substitute(word: str, binding: dict[str, str]) -> str:
    for _ in range(5):  # values may mention other variables
        new = _VAR_REF.sub(lambda m: binding.get(m.group(1) or m.group(2), m.group(0)), word)
        if new == word:
            break
        word = new
    return word


def _logical_lines(lines: list[str]) -> list[list[tuple[int, str]]]:
    """Commands as lists of (line number, text) parts: comments dropped, continuations joined."""
    commands: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if not current and (not text or text.startswith("#")):
            continue
        continued = text.endswith("\\")
        current.append((number, text[:-1].strip() if continued else text))
        if not continued:
            commands.append(current)
            current = []
    if current:
        commands.append(current)
    return commands


def _loop_values(spec: str, scope: _Scope) -> tuple[tuple[str, ...], tuple[Evidence, ...]]:
    """The words a `for` loop iterates over, and where the arrays it reads were defined."""
    values: list[str] = []
    evidence: list[Evidence] = []
    for word in shlex.split(spec):
        if m := _ARRAY_REF.match(word):
            found, where = scope.values.get(m.group(1), ((), ()))
            values.extend(found)
            evidence.extend(where)
        elif m := _BRACE_RANGE.match(word):
            values.extend(str(i) for i in range(int(m.group(1)), int(m.group(2)) + 1))
        else:
            values.append(word)
    return tuple(values), tuple(evidence)


def _flags(words: list[str]) -> dict[str, str]:
    """`--flag value` / bare `--flag` ("") pairs, up to a pipe."""
    words = words[: words.index("|")] if "|" in words else words
    found: dict[str, str] = {}
    i = 0
    while i < len(words):
        if words[i].startswith("-"):
            has_value = i + 1 < len(words) and not words[i + 1].startswith("-")
            found[words[i]] = words[i + 1] if has_value else ""
            i += 2 if has_value else 1
        else:
            i += 1
    return found


def _model_choice(args: dict[str, str]) -> tuple[str | None, str, str | None]:
    """(variant id, how __main__ picks the class, the deciding flag) in __main__'s order of checks."""
    if "--multi_level" in args:
        level = args["--multi_level"]
        return VARIANT_BY_MULTI_LEVEL.get(level), f"--multi_level {level}", "--multi_level"
    for flag in _OTHER_MODEL_FLAGS:
        if flag in args:
            return None, flag, flag
    if "--ablation" in args:
        return "single-7layer", "--ablation", "--ablation"
    return "virtuosonet-skip", "no --multi_level flag", None


def _parse_command(parts: list[tuple[int, str]], rel: str, scope: _Scope) -> list[Run]:
    try:
        words = shlex.split(" ".join(t for _, t in parts), comments=True)
    except ValueError:
        return []
    entry_at = next((i for i, w in enumerate(words) if w.endswith(".py")), None)
    if entry_at is None or not any(w.startswith("python") for w in words[:entry_at]):
        return []
    entry = words[entry_at]
    raw = _flags(words[entry_at + 1:])
    command_line = Evidence(rel, parts[0][0], parts[0][1])
    arg_evidence = {
        flag: tuple(dict.fromkeys(
            [*(Evidence(rel, n, t) for n, t in parts if flag in t.split()), *scope.evidence(value)]
        ))
        for flag, value in raw.items()
    }
    kind = "train" if Path(entry).name == "__main__.py" else "eval"
    runs = []
    for binding in scope.bindings(list(raw.values())):
        args = {flag: _substitute(value, binding) for flag, value in raw.items()}
        variant, model, deciding = _model_choice(args)
        evidence = tuple(dict.fromkeys([command_line, *arg_evidence.get(deciding or "", ())]))
        runs.append(Run(kind, entry, variant, model, {f: (v,) for f, v in args.items()}, evidence, arg_evidence))
    return runs


def _parse_script(path: Path, rel: str) -> list[Run]:
    scope = _Scope()
    runs: list[Run] = []
    for parts in _logical_lines(path.read_text(errors="replace").splitlines()):
        first_line, first = parts[0]
        where = (Evidence(rel, first_line, first),)
        try:
            if m := _ARRAY.match(first):
                scope.values[m.group(1)] = (tuple(shlex.split(m.group(2))), where)
            elif m := _FOR.match(first):
                values, arrays = _loop_values(m.group(2), scope)
                scope.values[m.group(1)] = (values, (*arrays, *where))
            elif (m := _SCALAR.match(first)) and not first.startswith("export"):
                scope.values[m.group(1)] = ((shlex.split(m.group(2))[0] if m.group(2) else "",), where)
            else:
                runs.extend(_parse_command(parts, rel, scope))
        except ValueError:  # unbalanced quotes: not a line this reader understands
            continue
    return runs


def analyse_scripts(root: Path) -> ScriptsAnalysis:
    """Read every `virtuoso/scripts/**/*.sh` of the checkout (sorted, so the result is stable)."""
    folder = root / SCRIPTS_DIR
    paths = sorted(folder.rglob("*.sh")) if folder.is_dir() else []
    runs: list[Run] = []
    for path in paths:
        runs.extend(_parse_script(path, str(path.relative_to(root))))
    return ScriptsAnalysis(root=root, scripts=tuple(str(p.relative_to(root)) for p in paths), runs=tuple(runs))
