"""The original's effective training recipe for a variant: read from a checkout as text (nothing is
imported or run), or the recorded one.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from percepiano_parity.replica.recipe import ORIGINAL_RECIPE, SOURCES, Recipe

# ----------------------------------------------------------------------------------------------------------
# Reading the original's training recipe from its checkout, as text (nothing is imported or run).
#
# 1. argument defaults: every `add_argument` call of `virtuoso/virtuoso/parser.py`, parsed with `ast`
#    (dest -> default, type, action, with file:line);
# 2. overridden by the arguments of the published scripts that train the chosen variant;
# 3. plus facts of the training loop located in `train_m2pf.py` (and `__main__.py` for the criterion) by
#    regular expressions, with `ast` only to know which function or loop a line sits in.

PARSER = "virtuoso/virtuoso/parser.py"


TRAIN = "virtuoso/virtuoso/train_m2pf.py"


MAIN = "virtuoso/virtuoso/__main__.py"


README = "README.md"


# the order of replica.recipe.train_step (what a Recipe candidate runs)
REPLICA_UPDATE_ORDER = "forward+loss, zero_grad, backward, clip, optimizer.step, scheduler.step"


LONGEST_SEGMENT = 413  # most note-ons in one PercePiano performance MIDI (facts sheet section 6)


KEYS: tuple[str, ...] = (
    "optimizer", "lr", "weight_decay", "weight_decay_coupling", "betas", "eps", "amsgrad", "scheduler",
    "scheduler_step_size", "scheduler_gamma", "scheduler_interval", "grad_clip", "grad_clip_algorithm",
    "accumulate_grad_batches", "batch_size", "epochs", "precision", "loss", "loss_reduction", "r2_average",
    "key_augmentation", "slice_length", "slices_regenerated_each_epoch", "validation", "checkpoint_criterion",
    "checkpoint_mode", "early_stopping", "label_file", "seed",
)


# parser dests the recipe reads (disagreements between training runs on other dests, e.g. the fold's data
# folder, are expected and not reported)
RECIPE_DESTS = frozenset({"lr", "weight_decay", "lr_decay_step", "lr_decay_rate", "grad_clip", "batch_size",
                          "num_epochs", "no_augment", "len_slice", "label_file_path", "th_seed", "num_labels",
                          "loss_type", "pc_grad", "classification", "bayesian", "yml_path"})


@dataclass(frozen=True)
class Argument:
    """One `add_argument` of the original's parser."""

    dest: str
    options: tuple[str, ...]
    default: Any
    type_name: str | None  # "float", "int", "str", "Path", "lambda" (the parser's 'true'/'false' readers)
    action: str | None
    line: int
    end_line: int

    def convert(self, text: str) -> Any:
        """A command-line value as argparse would store it."""
        if self.action == "store_true":
            return True
        if self.action == "store_false":
            return False
        try:
            if self.type_name == "float":
                return float(text)
            if self.type_name == "int":
                return int(text)
        except ValueError:
            return text
        if self.type_name == "lambda":
            return text.lower() == "true"
        return text

    def where(self) -> str:
        lines = f"{self.line}" if self.end_line == self.line else f"{self.line}-{self.end_line}"
        kind = f"action={self.action}" if self.action else f"type={self.type_name}"
        return f"{PARSER}:{lines} {self.options[-1]} default={self.default!r} ({kind})"


def parse_parser_defaults(path: str | Path) -> dict[str, Argument]:
    """dest -> Argument for every `*.add_argument(...)` call in the file, read with `ast`."""
    tree = ast.parse(Path(path).read_text(errors="replace"))
    found: dict[str, Argument] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add_argument"):
            continue
        options = tuple(a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str))
        if not options:
            continue
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        action = kw["action"].value if isinstance(kw.get("action"), ast.Constant) else None
        default: Any = None
        if "default" in kw:
            default = _literal(kw["default"])
        elif action == "store_true":
            default = False
        elif action == "store_false":
            default = True
        type_node = kw.get("type")
        type_name = None
        if isinstance(type_node, ast.Name):
            type_name = type_node.id
        elif isinstance(type_node, ast.Lambda):
            type_name = "lambda"
        if isinstance(kw.get("dest"), ast.Constant):
            dest = kw["dest"].value
        else:
            long = [o for o in options if o.startswith("--")]
            dest = (long[0] if long else options[0]).lstrip("-").replace("-", "_")
        found[dest] = Argument(dest, options, default, type_name, action, node.lineno, node.end_lineno or node.lineno)
    return found


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            return node.args[0].value  # Path("...") -> the string
        return ast.unparse(node)


@dataclass(frozen=True)
class Setting:
    """The original's value of one argument, and why."""

    value: Any
    sources: tuple[str, ...]
    alternatives: tuple[Any, ...] = ()  # other values some training run uses


def effective_arguments(parser_args: dict[str, Argument], scripts: Any, variant: str
                        ) -> tuple[dict[str, Setting], list[str]]:
    """Parser defaults overridden by the training runs of `variant` (adapter ScriptsAnalysis)."""
    notes: list[str] = []
    settings = {dest: Setting(arg.default, (arg.where(),)) for dest, arg in parser_args.items()}
    if scripts is None:
        notes.append("no scripts analysis: parser defaults only")
        return settings, notes
    runs = [r for r in scripts.training_runs if r.variant == variant]
    if not runs:
        runs = list(scripts.training_runs)
        notes.append(f"no published script trains {variant}; using the arguments of all {len(runs)} training runs")
    by_option = {opt: arg for arg in parser_args.values() for opt in arg.options}
    seen: dict[str, list[tuple[Any, tuple[str, ...]]]] = {}
    for run in runs:
        for flag, values in run.args.items():
            arg = by_option.get(flag)
            if arg is None:
                continue
            where = tuple(str(e) for e in run.arg_evidence.get(flag, run.evidence[:1]))
            for text in values:
                seen.setdefault(arg.dest, []).append((arg.convert(text), where))
    for dest, pairs in seen.items():
        counts = Counter(repr(v) for v, _ in pairs)
        top = counts.most_common(1)[0][0]
        value, _ = next((v, w) for v, w in pairs if repr(v) == top)
        lines = list(dict.fromkeys(line for v, w in pairs if repr(v) == top for line in w))
        others = tuple(dict.fromkeys(v for v, _ in pairs if repr(v) != top))
        shown = lines[:3] + ([f"(+{len(lines) - 3} more script lines)"] if len(lines) > 3 else [])
        if len(counts) > 1 and dest in RECIPE_DESTS:
            notes.append(f"training runs disagree on {dest}: {sorted(counts)}; using the most common")
        settings[dest] = Setting(value, (*settings[dest].sources, *shown) if dest in settings else tuple(shown),
                                 others)
    return settings, notes


@dataclass(frozen=True)
class LoopFact:
    value: Any
    source: str


def _line_at(lines: list[str], number: int) -> str:
    return lines[number - 1].strip() if 0 < number <= len(lines) else ""


def _find(lines: list[str], pattern: str, start: int = 1, end: int | None = None) -> list[tuple[int, re.Match]]:
    rx = re.compile(pattern)
    stop = len(lines) if end is None else end
    out = []
    for number in range(start, stop + 1):
        text = lines[number - 1]
        if text.lstrip().startswith("#"):
            continue
        m = rx.search(text)
        if m:
            out.append((number, m))
    return out


def _functions(tree: ast.AST) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def _call_text(lines: list[str], number: int) -> str:
    """The statement starting at `number`, continuation lines joined until the parentheses close."""
    text, depth, k = "", 0, number
    while k <= len(lines):
        part = lines[k - 1].split("#", 1)[0]
        text += " " + part.strip()
        depth += part.count("(") - part.count(")")
        if depth <= 0:
            break
        k += 1
    return text.strip()


def _kwarg_source(call: str, name: str) -> str | None:
    m = re.search(rf"\b{name}\s*=\s*([\w.]+)", call)
    return m.group(1) if m else None


def read_loop_facts(code_dir: str | Path, root: str | Path) -> tuple[dict[str, LoopFact], list[str]]:
    """Facts of the training loop, each with "file:line text" evidence. Missing facts are simply absent."""
    code_dir, root = Path(code_dir), Path(root)
    notes: list[str] = []
    facts: dict[str, LoopFact] = {}
    train_path = code_dir / "train_m2pf.py"
    if not train_path.is_file():
        return facts, [f"{train_path} not found: no loop facts"]
    rel = str(train_path.relative_to(root)) if train_path.is_relative_to(root) else str(train_path)
    source = train_path.read_text(errors="replace")
    lines = source.splitlines()
    funcs = _functions(ast.parse(source))

    def ev(number: int) -> str:
        return f"{rel}:{number} {_line_at(lines, number)}"

    train_fn = funcs.get("train")
    span = (train_fn.lineno, train_fn.end_lineno) if train_fn else (1, len(lines))
    if hits := _find(lines, r"(?:th|torch)\.optim\.(\w+)\(", *span):
        number, m = hits[0]
        call = _call_text(lines, number)
        facts["optimizer"] = LoopFact(m.group(1), f"{rel}:{number} {call}")
        facts["optimizer_call"] = LoopFact(call, f"{rel}:{number} {call}")
    if hits := _find(lines, r"lr_scheduler\.(\w+)\(", *span):
        number, m = hits[0]
        call = _call_text(lines, number)
        facts["scheduler"] = LoopFact(m.group(1), f"{rel}:{number} {call}")
        facts["scheduler_call"] = LoopFact(call, f"{rel}:{number} {call}")
    step_fn = funcs.get("train_step")
    if step_fn is not None:
        order = []
        for pattern, label in ((r"get_batch_result\(", "forward+loss"), (r"\.zero_grad\(", "zero_grad"),
                               (r"\.backward\(", "backward"), (r"clip_grad_norm_\(", "clip"),
                               (r"optimizer\.step\(", "optimizer.step"), (r"scheduler\.step\(", "scheduler.step")):
            for number, _ in _find(lines, pattern, step_fn.lineno, step_fn.end_lineno):
                order.append((number, label))
        order.sort()
        facts["update_order"] = LoopFact(", ".join(label for _, label in order),
                                         f"{rel}:{step_fn.lineno}-{step_fn.end_lineno} def train_step")
        if hits := _find(lines, r"clip_grad_(norm|value)_\(\s*([^,]+),\s*([^)]+)\)", step_fn.lineno,
                         step_fn.end_lineno):
            number, m = hits[0]
            facts["clip"] = LoopFact(m.group(3).strip(), ev(number))
            facts["clip_algorithm"] = LoopFact(m.group(1), ev(number))
        if hits := _find(lines, r"optimizer\.step\(", step_fn.lineno, step_fn.end_lineno):
            per_batch = train_fn is not None and _called_in_loader_loop(train_fn, "train_step")
            if per_batch and not _under_any_if(step_fn, hits[0][0]):
                facts["accumulate_grad_batches"] = LoopFact(
                    1, ev(hits[0][0]) + " (unconditional in train_step, which runs once per batch)")
        if hits := _find(lines, r"scheduler\.step\(", step_fn.lineno, step_fn.end_lineno):
            number, _ = hits[0]
            per_batch = train_fn is not None and _called_in_loader_loop(train_fn, "train_step")
            facts["scheduler_interval"] = LoopFact("iteration" if per_batch else "unknown",
                                                   ev(number) + (" (train_step runs once per batch)" if per_batch
                                                                 else ""))
    if "scheduler_interval" not in facts and train_fn is not None:
        if hits := _find(lines, r"scheduler\.step\(", *span):
            facts["scheduler_interval"] = LoopFact("epoch", ev(hits[0][0]))
    batch_fn = funcs.get("get_batch_result")
    if batch_fn is not None:
        squashers = {"sigmoid"} | _sigmoid_aliases(batch_fn)
        squashed = re.compile(r"\b(?:" + "|".join(sorted(squashers)) + r")\(")
        for number, m in _find(lines, r"loss_calculator\((.*)\)", batch_fn.lineno, batch_fn.end_lineno):
            branch = "multi_level" if _under_if(batch_fn, number, "multi_level") else "single"
            kind = "mse_after_sigmoid" if squashed.search(m.group(1)) else "mse_on_logits"
            facts.setdefault(f"loss_call_{branch}", LoopFact(kind, ev(number)))
    valid_fn = funcs.get("get_validation_loss")
    if valid_fn is not None:
        if hits := _find(lines, r"^\s*r2\s*=\s*r2_score\((.*)\)", valid_fn.lineno, valid_fn.end_lineno):
            number, m = hits[0]
            mo = re.search(r"multioutput\s*=\s*['\"](\w+)['\"]", m.group(1))
            facts["r2_average"] = LoopFact(mo.group(1) if mo else "uniform_average",
                                           ev(number) + ("" if mo else " (sklearn default multioutput)"))
        if hits := _find(lines, r"valid_loss\s*=\s*sum\(valid_loss\)\s*/\s*len\(([\w.]+)\)",
                         valid_fn.lineno, valid_fn.end_lineno):
            number, m = hits[0]
            facts["valid_loss_divisor"] = LoopFact(m.group(1), ev(number))
    if hits := _find(lines, r"iters_per_checkpoint\s*=\s*len\(\w*loader\w*\)", *span):
        facts["validation"] = LoopFact("every_epoch", ev(hits[-1][0]))
    if hits := _find(lines, r"update_slice_info\(\)", *span):
        facts["slices_regenerated_each_epoch"] = LoopFact(True, ev(hits[0][0]))
    else:
        facts["slices_regenerated_each_epoch"] = LoopFact(False, f"{rel}: no update_slice_info() call in train()")
    if hits := _find(lines, r"is_best\s*=\s*(\w+)\s*([<>])\s*(\w+)", *span):
        number, m = hits[0]
        crit = "valid_loss" if "loss" in m.group(1) else ("valid_r2" if "r2" in m.group(1).lower() else m.group(1))
        facts["checkpoint_criterion"] = LoopFact(crit, ev(number))
        facts["checkpoint_mode"] = LoopFact("min" if m.group(2) == "<" else "max", ev(number))
    stops = _find(lines, r"patience|early_?stop", *span)
    epochs = _find(lines, r"for\s+epoch\s+in\b", *span)
    if stops:
        facts["early_stopping"] = LoopFact("see source", ev(stops[0][0]))
    elif epochs:
        facts["early_stopping"] = LoopFact("none", ev(epochs[0][0]) + " (every epoch runs: no patience or "
                                                                     "early stop in train())")
    precision_hits = _find(lines, r"autocast|\.half\(\)|bfloat16|float16|GradScaler")
    facts["precision"] = LoopFact(
        "fp32" if not precision_hits else "mixed",
        f"{rel}: no autocast, half() or GradScaler anywhere" if not precision_hits else ev(precision_hits[0][0]))
    main_path = code_dir / "__main__.py"
    if main_path.is_file():
        facts.update(_criterion_facts(main_path, root))
    else:
        notes.append("__main__.py not found: criterion assumed MSELoss")
    readme = root / README
    if readme.is_file():
        rlines = readme.read_text(errors="replace").splitlines()
        if hits := _find(rlines, r"`(labels/[\w.\-]+\.json)`"):
            number, m = hits[0]
            facts["label_file_intended"] = LoopFact(m.group(1), f"{README}:{number} {_line_at(rlines, number)}")
    return facts, notes


def _sigmoid_aliases(fn: ast.FunctionDef) -> set[str]:
    """Local names bound to a sigmoid inside fn (`sigmoid = torch.nn.Sigmoid()`, `squash = torch.sigmoid`)."""
    names = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign) and "sigmoid" in ast.unparse(node.value).lower():
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def _called_in_loader_loop(fn: ast.FunctionDef, callee: str) -> bool:
    """Whether `callee(...)` is called inside a for-loop over a data loader (its iterable mentions "loader")."""
    for loop in ast.walk(fn):
        if isinstance(loop, ast.For) and "loader" in ast.unparse(loop.iter):
            for node in ast.walk(loop):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == callee:
                    return True
    return False


def _under_any_if(fn: ast.FunctionDef, line: int) -> bool:
    """Whether `line` sits inside any `if` block of fn."""
    return any(isinstance(node, ast.If) and node.lineno < line <= (node.end_lineno or node.lineno)
               for node in ast.walk(fn))


def _under_if(fn: ast.FunctionDef, line: int, attr: str) -> bool:
    """Whether `line` sits in the body (not the else) of an `if args.<attr>:` inside fn."""
    for node in ast.walk(fn):
        if isinstance(node, ast.If) and attr in ast.unparse(node.test):
            body_lines = [n.lineno for stmt in node.body for n in ast.walk(stmt) if hasattr(n, "lineno")]
            if body_lines and min(body_lines) <= line <= max(getattr(s, "end_lineno", s.lineno) for s in node.body):
                return True
    return False


def _criterion_facts(main_path: Path, root: Path) -> dict[str, LoopFact]:
    """The loss criterion __main__ builds: the `criterion = nn.X(...)` assignments and the `if args.Y` tests
    around them, evaluated later against the effective arguments."""
    lines = main_path.read_text(errors="replace").splitlines()
    rel = str(main_path.relative_to(root)) if main_path.is_relative_to(root) else str(main_path)
    tree = ast.parse("\n".join(lines))
    options: list[tuple[str, str, int]] = []  # (condition, class, line)

    def visit(stmts: list[ast.stmt], condition: str) -> None:
        for stmt in stmts:
            if isinstance(stmt, ast.If):
                test = ast.unparse(stmt.test)
                visit(stmt.body, f"{condition} and {test}" if condition else test)
                visit(stmt.orelse, f"{condition} and not ({test})" if condition else f"not ({test})")
            elif isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "criterion"
                                                      for t in stmt.targets):
                call = stmt.value
                if isinstance(call, ast.Call):
                    name = ast.unparse(call.func).split(".")[-1]
                    options.append((condition, f"{name}({', '.join(ast.unparse(k) for k in call.keywords)})",
                                    stmt.lineno))
            elif isinstance(stmt, (ast.FunctionDef, ast.With, ast.For, ast.While, ast.Try)):
                visit(getattr(stmt, "body", []), condition)

    visit(tree.body, "")
    return {f"criterion_{i}": LoopFact((cond, cls), f"{rel}:{line} {_line_at(lines, line)}")
            for i, (cond, cls, line) in enumerate(options)}


def _evaluate_condition(condition: str, args: dict[str, Any]) -> bool | None:
    """Truth of a condition made only of `args.X`, `not`, `and`, `or` (None when it uses anything else)."""
    if not condition:
        return True

    def value(node: ast.expr) -> bool | None:
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "args":
            return bool(args.get(node.attr))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = value(node.operand)
            return None if inner is None else not inner
        if isinstance(node, ast.BoolOp):
            parts = [value(v) for v in node.values]
            if any(p is None for p in parts):
                return None
            return all(parts) if isinstance(node.op, ast.And) else any(parts)
        return None

    try:
        return value(ast.parse(condition, mode="eval").body)
    except SyntaxError:
        return None


# ----------------------------------------------------------------------------------------------------------
# The original's effective recipe for a variant: read from a checkout (see recipe_source), or the recorded one
# (`replica.recipe.ORIGINAL_RECIPE` with `SOURCES`) when there is no checkout or a bundle recorded it.


@dataclass
class OriginalRecipe:
    """The original's effective configuration for one variant."""

    values: dict[str, Any]
    sources: dict[str, str]
    mode: str  # "checkout" or "recorded"
    root: Path | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # update order, valid-loss divisor...

    def as_recipe(self) -> Recipe:
        """The configuration as a replica Recipe (keys the checkout did not tell keep the recorded values)."""
        fields = {k: v for k, v in self.values.items() if k in Recipe.__dataclass_fields__ and v is not None}
        if "betas" in fields:
            fields["betas"] = tuple(fields["betas"])
        if fields.get("grad_clip") is not None:
            fields["grad_clip"] = float(fields["grad_clip"])
        return ORIGINAL_RECIPE.with_(**fields)


def recipe_values(recipe: Recipe) -> dict[str, Any]:
    """A Recipe as the recipe check's values: its fields (betas as a tuple) and the weight-decay coupling."""
    values = recipe.to_dict()
    values["betas"] = tuple(values["betas"])
    values["weight_decay_coupling"] = recipe.weight_decay_coupling
    return values


def recorded_recipe() -> OriginalRecipe:
    values = recipe_values(ORIGINAL_RECIPE)
    return OriginalRecipe(values, {k: f"recorded: {SOURCES.get(k, 'replica.recipe.ORIGINAL_RECIPE')}" for k in values},
                          "recorded", notes=["no checkout: compared against the recorded recipe "
                                             "(replica.recipe.ORIGINAL_RECIPE and SOURCES)"])


def _roots(source: Any) -> tuple[Path, Path, Any] | None:
    """(checkout root, code dir, scripts analysis) of an adapter Original or a checkout path."""
    if source is None:
        return None
    if isinstance(source, (str, Path)):
        from percepiano_parity.original_adapter.scripts import analyse_scripts

        root = Path(source)
        code = root / "virtuoso" / "virtuoso"
        if not (code / "parser.py").is_file():
            return None
        return root, code, analyse_scripts(root)
    root = Path(source.root)
    code = Path(source.checkout.code_dir) if hasattr(source, "checkout") else root / "virtuoso" / "virtuoso"
    return root, code, source.scripts() if hasattr(source, "scripts") else None


def original_recipe(source: Any, variant: str) -> OriginalRecipe:
    """The original's effective recipe for `variant`, from a checkout (Original or path), else recorded. An
    OriginalRecipe (e.g. replayed from a bundle) is returned as it is."""
    if isinstance(source, OriginalRecipe):
        return source
    found = _roots(source)
    if found is None:
        return recorded_recipe()
    root, code_dir, scripts = found
    parser_path = code_dir / "parser.py"
    if not parser_path.is_file():
        rec = recorded_recipe()
        rec.notes.append(f"{parser_path} missing")
        return rec
    args, notes = effective_arguments(parse_parser_defaults(parser_path), scripts, variant)
    facts, fact_notes = read_loop_facts(code_dir, root)
    notes += fact_notes
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    plain = {k: s.value for k, s in args.items()}

    def from_arg(key: str, dest: str, transform: Callable[[Any], Any] = lambda v: v, prefix: str = "") -> None:
        if dest in args:
            values[key] = transform(args[dest].value)
            sources[key] = "; ".join(([prefix] if prefix else []) + list(args[dest].sources))

    def from_fact(key: str, fact: str, value: Any = None) -> None:
        if fact in facts:
            values[key] = facts[fact].value if value is None else value
            sources[key] = facts[fact].source

    from_fact("optimizer", "optimizer")
    call = facts.get("optimizer_call")
    opt_class = values.get("optimizer")
    given = _call_keywords(call.value) if call else {}
    convert: dict[str, Callable[[Any], Any]] = {"lr": float, "weight_decay": float, "eps": float, "amsgrad": bool,
                                                "decoupled_weight_decay": bool, "betas": tuple}
    for key in ("lr", "weight_decay", "betas", "eps", "amsgrad", "decoupled_weight_decay"):
        ref = given.get(key)
        if ref and ref.startswith("args."):
            from_arg(key, ref[5:], convert[key], prefix=f"{call.source} ({key}={ref})")
        elif ref is not None:
            try:
                values[key], sources[key] = convert[key](ast.literal_eval(ref)), f"{call.source} ({key}={ref})"
            except (ValueError, SyntaxError, TypeError):
                notes.append(f"{key}={ref} in the optimizer call is not a literal: not read")
        elif opt_class and hasattr(torch.optim, opt_class):
            default = inspect.signature(getattr(torch.optim, opt_class)).parameters.get(key)
            if default is not None and default.default is not inspect.Parameter.empty:
                values[key] = tuple(default.default) if key == "betas" else default.default
                sources[key] = f"{call.source if call else TRAIN} (not passed: torch.optim.{opt_class} default)"
    if opt_class:
        decoupled = opt_class == "AdamW" or bool(values.pop("decoupled_weight_decay", False))
        values["weight_decay_coupling"] = "decoupled" if decoupled else "l2"
        sources["weight_decay_coupling"] = (
            f"{sources.get('optimizer', TRAIN)}: " + ("weight decay decoupled from the adaptive step" if decoupled
                                                      else "weight decay added to the gradient (L2), not decoupled"))
    sources.pop("decoupled_weight_decay", None)
    from_fact("scheduler", "scheduler")
    sched_call = facts.get("scheduler_call")
    for key, kw in (("scheduler_step_size", "step_size"), ("scheduler_gamma", "gamma")):
        ref = _kwarg_source(sched_call.value, kw) if sched_call else None
        if ref and ref.startswith("args."):
            from_arg(key, ref[5:], prefix=f"{sched_call.source} ({kw}={ref})")
    from_fact("scheduler_interval", "scheduler_interval")
    if "clip" in facts:
        ref = facts["clip"].value
        if ref.startswith("args."):
            from_arg("grad_clip", ref[5:], float, prefix=facts["clip"].source)
        else:
            try:
                values["grad_clip"], sources["grad_clip"] = float(ref), facts["clip"].source
            except ValueError:
                pass
        from_fact("grad_clip_algorithm", "clip_algorithm")
    else:
        values["grad_clip"], sources["grad_clip"] = None, f"{TRAIN}: no clip_grad_norm_ in train_step"
    from_fact("accumulate_grad_batches", "accumulate_grad_batches")
    from_arg("batch_size", "batch_size", int)
    from_arg("epochs", "num_epochs", int)
    from_fact("precision", "precision")
    loss_kind = _loss_kind(facts, plain, variant)
    if loss_kind:
        values["loss"], sources["loss"] = loss_kind
    reduction = _loss_reduction(facts, plain)
    if reduction:
        values["loss_reduction"], sources["loss_reduction"] = reduction
    from_fact("r2_average", "r2_average")
    if "no_augment" in args:
        values["key_augmentation"] = not bool(args["no_augment"].value)
        sources["key_augmentation"] = "; ".join(args["no_augment"].sources)
    from_arg("slice_length", "len_slice", int)
    from_fact("slices_regenerated_each_epoch", "slices_regenerated_each_epoch")
    from_fact("validation", "validation")
    from_fact("checkpoint_criterion", "checkpoint_criterion")
    from_fact("checkpoint_mode", "checkpoint_mode")
    from_fact("early_stopping", "early_stopping")
    if "label_file_path" in args:
        given = args["label_file_path"].value
        intended = facts.get("label_file_intended")
        values["label_file"] = intended.value if intended else given
        sources["label_file"] = "; ".join(
            ([f"intended per {intended.source}"] if intended else [])
            + [f"scripts pass {given!r} relative to virtuoso/, where no such file exists"]
            + list(args["label_file_path"].sources[-2:]))
        values["label_file_as_passed"] = given
    from_arg("seed", "th_seed", int)
    extra = {k: facts[k].value for k in ("update_order", "valid_loss_divisor") if k in facts}
    for key in KEYS:
        if key not in values:
            values[key] = recipe_values(ORIGINAL_RECIPE).get(key)
            sources[key] = f"recorded: {SOURCES.get(key, '')} (not found in the checkout)"
            notes.append(f"{key}: not found in the checkout, recorded value used")
    return OriginalRecipe(values, sources, "checkout", root=root, notes=notes, extra=extra)


def _loss_kind(facts: dict[str, LoopFact], args: dict[str, Any], variant: str) -> tuple[str, str] | None:
    criterion, where = None, ""
    for key in sorted(k for k in facts if k.startswith("criterion_")):
        condition, cls = facts[key].value
        truth = _evaluate_condition(condition, args)
        if truth:
            criterion, where = cls, facts[key].source
    branch = "multi_level" if args.get("multi_level") or variant.startswith(("han-", "bilstm")) else "single"
    call = facts.get(f"loss_call_{branch}")
    if call is None:
        return None
    kind = call.value
    if criterion is not None and not criterion.startswith("MSELoss"):
        kind = {"BCEWithLogitsLoss": "bce_with_logits", "BCELoss": "bce"}.get(criterion.split("(")[0], criterion)
    return kind, f"{call.source}; criterion {criterion or 'MSELoss (assumed)'} at {where or MAIN}"


def _loss_reduction(facts: dict[str, LoopFact], args: dict[str, Any]) -> tuple[str, str] | None:
    """The reduction of the criterion __main__ builds for these arguments (torch's default "mean")."""
    for key in sorted(k for k in facts if k.startswith("criterion_")):
        condition, cls = facts[key].value
        if _evaluate_condition(condition, args):
            found = re.search(r"reduction\s*=\s*['\"](\w+)['\"]", cls)
            return (found.group(1) if found else "mean"), (
                f"{facts[key].source}" + ("" if found else " (torch's default reduction 'mean')"))
    return None


def _call_keywords(call: str) -> dict[str, str]:
    """keyword -> source text of the first call in a statement (`x = th.optim.Adam(..., lr=args.lr)`)."""
    try:
        tree = ast.parse(call.strip())
    except SyntaxError:
        return {m.group(1): m.group(2).strip() for m in re.finditer(r"\b(\w+)\s*=\s*([^,()]+)", call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.keywords:
            return {k.arg: ast.unparse(k.value) for k in node.keywords if k.arg}
    return {}


def from_bundle(bundle: Any) -> OriginalRecipe | None:
    """The recipe a reference bundle recorded from the checkout (None when it recorded none)."""
    recorded = getattr(bundle, "recipe", None)
    if recorded is None:
        return None
    values = dict(recorded["values"])
    if isinstance(values.get("betas"), list):
        values["betas"] = tuple(values["betas"])
    sources = dict(recorded.get("sources", {}))
    later = [k for k in KEYS if k not in values]  # keys this version reads that the bundle did not record
    recorded_values = recorded_recipe()
    for key in later:
        values[key] = recorded_values.values.get(key)
        sources[key] = recorded_values.sources.get(key, "")
    notes = list(recorded.get("notes", [])) + ([f"not in the bundle, recorded values used: {', '.join(later)}"]
                                               if later else []) + [
        f"read from the checkout ({recorded.get('mode')}) at recording time, revision "
        f"{bundle.manifest.get('original', {}).get('revision', '?')}; replayed from the bundle {bundle.path}"]
    return OriginalRecipe(values, sources, "recorded", notes=notes,
                          extra=dict(recorded.get("extra", {})))
