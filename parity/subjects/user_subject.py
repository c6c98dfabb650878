"""A user's own re-implementation as an audit subject: loading its factory, how to call it, and where its
levels are.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from percepiano_parity.batches.canonical import CanonicalBatch, ModelInput
from percepiano_parity.batches.features import ColumnPlan
from percepiano_parity.core.config import ModelConfig
from percepiano_parity.core.errors import UsageError, call_user, user_code
from percepiano_parity.core.levels import ATTENTIONS, LEVELS
from percepiano_parity.subjects.adapter import (
    DEFAULT_ADAPTER,
    Adapter,
    AdapterError,
    ReplicaAdapter,
    _module_path,
    custom_forward,
    read_conventions,
    resolve_mapping,
    validate_adapter,
)
from percepiano_parity.subjects.calling import CallResult, ModelCall, probe_conventions
from percepiano_parity.subjects.level_sites import Counts, LevelSite, SiteTap
from percepiano_parity.subjects.recording import Recorded, recording
from percepiano_parity.subjects.replica_subject import _model_input, preserved_state, training_loss
from percepiano_parity.subjects.subject import SubjectInfo, Taps

# ----------------------------------------------------------------------------------------------------------
# Loading a user's replica factory (`module:function` or `path/to/file.py:function`) and calling it seeded, with
# the keyword arguments it accepts; every failure is one line.


def _import_target(target: str, option: str = "--replica") -> Any:
    """A module from a dotted name or a .py file path."""
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target).expanduser()
        if not path.is_file():
            raise UsageError(f"{option}: {path} does not exist")
        path = path.resolve()
        name = "parity_user_replica_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise UsageError(f"{option}: cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))  # the file may import its neighbours
        sys.modules[name] = module
        try:
            with user_code("replica module"):
                spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # `parity` as a console script does not put the cwd on sys.path
    with user_code("replica module", context=target):  # finding it imports its parent packages
        found = _find_module(target)
    if found is None:
        raise UsageError(f"{option}: no module named {target!r} (on sys.path or in the working folder)")
    with user_code("replica module", context=target):
        return importlib.import_module(target)


def _find_module(target: str) -> Any:
    """The import spec of a dotted module name, None when it or a parent package does not exist."""
    try:
        return importlib.util.find_spec(target)
    except ModuleNotFoundError as exc:
        parts = target.split(".")
        if exc.name in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}:
            return None
        raise
    except ValueError:  # a relative or empty name
        return None


def load_factory(spec: str, option: str = "--replica") -> Callable[..., Any]:
    """The callable named by `module:attr` or `path.py:attr`; UsageError (one line, naming `option`) when it
    cannot be found."""
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        noun = "factory" if option == "--replica" else "function"
        raise UsageError(f"{option} {spec!r}: expected module:{noun} or path.py:{noun}")
    module = _import_target(target, option)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{option} {spec}: {target} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"{option} {spec}: {attr} is not callable")
    return obj


def call_factory(factory: Callable[..., Any], spec: str, *, variant: str, config: ModelConfig,
                 seed: int) -> tuple[nn.Module, Any]:
    """Seed, call the factory with the keyword arguments it accepts, validate what it returned."""
    offered = {"variant": variant, "config": config, "seed": seed}
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = offered
    else:
        kwargs = {k: v for k, v in offered.items() if k in params}
    torch.manual_seed(seed)
    made = call_user("factory", factory, context=spec, **kwargs)
    if isinstance(made, tuple) and len(made) == 2:
        model, adapter = made
    else:
        model, adapter = made, None
    if not isinstance(model, nn.Module):
        raise UsageError(f"the replica factory {spec} returned {type(made).__name__}; expected an nn.Module or "
                         "a (model, adapter) pair")
    if not any(True for _ in model.parameters()):
        raise UsageError(f"the replica factory {spec} returned a model without parameters")
    adapter = adapter if adapter is not None else DEFAULT_ADAPTER
    validate_adapter(model, adapter, spec)
    return model, adapter


# ----------------------------------------------------------------------------------------------------------
# A user's own re-implementation as an audit subject: how to call it, and where its levels are.
#
# `parity check --replica SPEC` names a factory, `module:function` or `path/to/file.py:function`, called after
# `torch.manual_seed(seed)` with whichever of the keyword arguments `variant`, `config` (a `replica.ModelConfig`)
# and `seed` it accepts (a model built in the original's order then gets the original's initial weights). It
# returns a model, or a pair `(model, adapter)`.
#
# The model is called through the one calling path (subjects.calling) with the conventions the adapter declares
# (subjects.adapter: input packed or padded, location_base, mask, lengths, output logits or predictions,
# input_width); whatever it leaves out is probed on a tiny batch (subjects.calling) and reported. Its levels are
# found by value (compare.locate over subjects.recording's recording of every intermediate tensor), so the adapter
# needs no hooks; optional adapter members override or add:
#
#     levels     {level name: module path}  the output of that module (forward hook) is the level;
#                "path:input" takes the module's first input instead. Level names: core.levels.LEVELS.
#                A tuple gives its first element, a PackedSequence is padded to its own lengths, a (sum of
#                lengths, C) tensor laid out like the packed input is unpacked to (N, T, C). If the module runs
#                more than once in one forward, its last output counts.
#     attention  {map name: module path}   a module whose output is softmax weights (N, L, heads);
#                names: attn.beat, attn.measure, attn.final.
#     mapping    {reference name: your name} for parameters or whole modules (longest prefix wins), or a
#                function reference name -> your name (None: no partner). Without it, parameters are paired by
#                name, then by shapes, call order and values.
#     forward(model, model_input) -> output   replaces the input side of the calling path; model_input is
#                replica.ModelInput (x, note_locations, labels, lengths). The output is read by the conventions.
#     run_level(model, level, inputs, model_input) -> Tensor   compute one level from the given inputs
#                (teacher forcing: tells a level's own error from the error it inherits). Optional.
#     level_inputs {level: (input level names)}   for run_level; default: the replica's level graph.
#     recipe(model) -> optimizer / (optimizer, scheduler) / a Lightning-like module   for the recipe check.
#                Default: the model itself when it has configure_optimizers.


def _normalise(value: Any, model_input: ModelInput) -> Tensor | None:
    """A module's output or input as a tensor in the tool's layout (see the module docstring)."""
    if isinstance(value, tuple | list) and value:
        value = value[0]
    if isinstance(value, PackedSequence):
        padded, _ = pad_packed_sequence(value, batch_first=True)  # to its own lengths (notes or nodes)
        return padded
    if not isinstance(value, Tensor):
        return None
    packed = model_input.x
    n = len(model_input.lengths)
    if value.dim() == 2 and value.shape[0] == packed.data.shape[0] and value.shape[0] != n:
        repacked = PackedSequence(value, packed.batch_sizes.cpu(), packed.sorted_indices, packed.unsorted_indices)
        padded, _ = pad_packed_sequence(repacked, batch_first=True, total_length=int(model_input.lengths.max()))
        return padded
    return value


@contextlib.contextmanager
def _captured(model: nn.Module, table: Mapping[str, str], model_input: ModelInput) -> Iterator[dict[str, Tensor]]:
    out: dict[str, Tensor] = {}
    handles = []
    for name, value in table.items():
        path, where = _module_path(value)
        module = model.get_submodule(path)

        if where == "input":
            def pre(_m: nn.Module, args: tuple, name: str = name) -> None:
                if args:
                    got = _normalise(args[0], model_input)
                    if got is not None:
                        out[name] = got
            handles.append(module.register_forward_pre_hook(pre))
        else:
            def post(_m: nn.Module, _args: tuple, output: Any, name: str = name) -> None:
                got = _normalise(output, model_input)
                if got is not None:
                    out[name] = got
            handles.append(module.register_forward_hook(post))
    try:
        yield out
    finally:
        for h in handles:
            h.remove()


def default_level_inputs(variant: str) -> dict[str, tuple[str, ...]]:
    """The replica's level graph for a variant (built at a tiny size without touching the global RNG)."""
    from percepiano_parity.core.config import SMALL_CONFIG
    from percepiano_parity.replica.variants import build

    with torch.random.fork_rng(devices=[]):
        return dict(build(variant, SMALL_CONFIG).level_graph())


class UserSubject:
    """Runs a user's model through the one calling path (subjects.calling) and records levels, attention maps,
    loss and gradients. Levels come from the adapter's explicit `levels` / `attention` (hooks), else from the
    sites where they were found by value (`use_sites`, after compare.locate)."""

    def __init__(self, model: nn.Module, adapter: Any, info: SubjectInfo, num_label: int, call: ModelCall,
                 variant: str = "han-total") -> None:
        self.model = model
        self.adapter = adapter
        self.info = info
        self.num_label = num_label
        self.call = call
        self.variant = variant
        self.sites: dict[str, LevelSite] = {}
        given = getattr(adapter, "level_inputs", None)
        self._graph = {k: tuple(v) for k, v in dict(given).items()} if given else None

    # -- locating levels by value ---------------------------------------------------------------------
    def level_graph(self) -> dict[str, tuple[str, ...]]:
        """Level -> the levels it is computed from (the adapter's level_inputs, else the replica's graph)."""
        if self._graph is None:
            self._graph = default_level_inputs(self.variant)
        return self._graph

    def explicit(self) -> set[str]:
        """Levels and attention maps the adapter names explicitly (they are not looked for by value)."""
        return set(getattr(self.adapter, "levels", {}) or {}) | set(getattr(self.adapter, "attention", {}) or {})

    def capture(self, batch: CanonicalBatch) -> tuple[list[Recorded], Counts]:
        """Every intermediate tensor of one eval-mode forward (no gradients), for compare.locate."""
        inp = _model_input(self.model, batch)
        with preserved_state(self.model), torch.no_grad(), recording(self.model) as recorder:
            self.model.eval()
            self._call(inp, batch)
        return recorder.records, Counts.of(inp)

    def use_sites(self, sites: Mapping[str, LevelSite]) -> None:
        self.sites = dict(sites)

    @property
    def input_plan(self) -> ColumnPlan | None:
        """Which batch columns the model takes when it was built for another input width (probed), else None."""
        return self.call.conventions.input_plan

    # -- running ----------------------------------------------------------------------------------------
    @staticmethod
    def _on(batch: CanonicalBatch) -> str:
        return f"on a batch ({', '.join(batch.tags) or 'generated'})"

    def _call(self, inp: ModelInput, batch: CanonicalBatch) -> CallResult:
        """One call through the calling path, as the user's code (core.errors: one line with the user's
        file:line; the tool's own AdapterError / ConventionError pass through unchanged)."""
        what = "adapter.forward" if self.call.adapter_forward is not None else "forward"
        with user_code(what, context=self._on(batch)):
            return self.call(self.model, inp)

    def run(self, batch: CanonicalBatch, *, grads: bool = True, train: bool = False) -> Taps:
        taps = Taps(subject=self.info.name)
        inp = _model_input(self.model, batch)
        levels = dict(getattr(self.adapter, "levels", {}) or {})
        attention = dict(getattr(self.adapter, "attention", {}) or {})
        tap = SiteTap(list(self.sites.values())) if self.sites else None
        with preserved_state(self.model):
            self.model.train(train)
            for p in self.model.parameters():
                p.grad = None
            with torch.set_grad_enabled(grads), _captured(self.model, levels, inp) as got, \
                    _captured(self.model, attention, inp) as maps:
                with tap.recording(self.model) if tap is not None else contextlib.nullcontext():
                    result = self._call(inp, batch)
                found = tap.levels(Counts.of(inp)) if tap is not None else {}
                for level in LEVELS:
                    if level in got:
                        taps.record_level(level, got[level])
                    elif level in found and level != "logits":
                        taps.record_level(level, found[level])
                        taps.located.add(level)
                taps.record_level("logits", result.logits)
                if result.logits_slack:
                    taps.slack["logits"] = result.logits_slack
                for name in ATTENTIONS:
                    if name in maps:
                        taps.record_attention(name, maps[name])
                    elif name in found:
                        taps.record_attention(name, found[name])
                if result.predictions is not None:
                    loss = nn.functional.mse_loss(result.predictions.float(), inp.labels.float())
                else:
                    loss = training_loss(result.logits, inp.labels)
                taps.loss = float(loss.detach())
                if grads:
                    with user_code("backward", context=self._on(batch)):
                        loss.backward()
                    taps.record_grads(dict(self.model.named_parameters()))
        return taps


class TeacherForcedUserSubject(UserSubject):
    """A user subject whose adapter can compute one level from given inputs (local error available).

    A level found nowhere by value (kept in a layout no known one fits, e.g. node tensors built inside a
    loop) is computed by the adapter's `run_level` from the replica's own recorded inputs, so it is still
    compared, and a difference there is located at that level rather than at the next one found."""

    derived: frozenset[str] = frozenset()

    def derive_missing(self, names: Sequence[str]) -> None:
        """Compute these levels through run_level on every later batch (called after locating)."""
        self.derived = frozenset(n for n in names if n in LEVELS and n != "logits")

    def run(self, batch: CanonicalBatch, *, grads: bool = True, train: bool = False) -> Taps:
        taps = super().run(batch, grads=grads, train=train)
        for level in LEVELS:
            if level not in self.derived or level in taps.levels:
                continue
            deps = self.level_inputs(level)
            if deps and all(d in taps.levels for d in deps):
                taps.record_level(level, self.run_level(level, {d: taps.levels[d] for d in deps}, batch))
                taps.located.add(level)
        return taps

    def level_inputs(self, level: str) -> tuple[str, ...]:
        return self.level_graph().get(level, ())

    def run_level(self, level: str, inputs: Mapping[str, Tensor], batch: CanonicalBatch) -> Tensor:
        inp = _model_input(self.model, batch)
        param = next(self.model.parameters())
        with preserved_state(self.model), torch.no_grad():
            self.model.eval()
            cast = {k: v.to(device=param.device, dtype=param.dtype) for k, v in inputs.items()}
            out = call_user("adapter.run_level", self.adapter.run_level, self.model, level, cast, inp,
                            context=f"for level {level}")
            got = _normalise(out, inp)
            if got is None:
                raise AdapterError(f"the adapter's run_level({level!r}) returned {type(out).__name__}, not a tensor")
            return got.detach().cpu()


def make_user_subject(model: nn.Module, adapter: Any, *, spec: str, variant: str, config: ModelConfig,
                      name: str = "replica", probe: bool = True) -> UserSubject:
    """A subject for the user's model: the adapter's declared conventions, the rest probed on a tiny batch."""
    conventions = read_conventions(adapter, spec, reference_width=config.input_size)
    call = ModelCall(conventions, num_label=config.num_label, source=spec, adapter_forward=custom_forward(adapter))
    if probe:
        call = probe_conventions(model, call, config)
    info = SubjectInfo(name=name, kind="user-replica", variant=variant, source=spec,
                       extra={"class": f"{type(model).__module__}.{type(model).__qualname__}",
                              "adapter": type(adapter).__qualname__ if adapter is not DEFAULT_ADAPTER else "default",
                              "levels": sorted(getattr(adapter, "levels", {}) or {}, key=LEVELS.index),
                              "conventions": call.conventions.describe()})
    kind = TeacherForcedUserSubject if callable(getattr(adapter, "run_level", None)) else UserSubject
    return kind(model, adapter, info, config.num_label, call, variant)


def recipe_source(model: nn.Module, adapter: Any) -> Any:
    """What the user's side offers for the recipe check (None when nothing)."""
    get = getattr(adapter, "recipe", None)
    if callable(get):
        return call_user("adapter.recipe", get, model)
    return model if callable(getattr(model, "configure_optimizers", None)) else None


# `parity.user_subject` was the public home of all of these (docs/user_replica.md): they stay importable here
__all__ = ["DEFAULT_ADAPTER", "Adapter", "AdapterError", "ReplicaAdapter", "TeacherForcedUserSubject", "UserSubject",
           "call_factory", "load_factory", "make_user_subject", "recipe_source", "resolve_mapping",
           "validate_adapter"]
