"""A user's own re-implementation as an audit subject: how to call it, and where its levels are.

`parity check --replica SPEC` names a factory, `module:function` or `path/to/file.py:function`. The factory
returns either

* a bare `nn.Module` whose forward takes the replica's arguments, `model(x, note_locations)` with `x` a
  PackedSequence of note features and `note_locations` a dict of zero-padded (N, T) int64 tensors, and
  returns logits (N, num_labels); only the logits and the gradients can then be compared, or
* a pair `(model, adapter)`, where the adapter tells the tool how to call the model and where its levels are.

The factory is called after `torch.manual_seed(seed)`, with whichever of the keyword arguments `variant`,
`config` (a `replica.ModelConfig`) and `seed` it accepts, so a model built in the original's order gets the
original's initial weights and the init check can compare them.

An adapter is any object with these attributes (all optional; subclass `Adapter` for the defaults):

    levels     {level name: module path}  the output of that module (forward hook) is the level;
               "path:input" takes the module's first input instead. Level names: parity.levels.LEVELS.
               Outputs are normalised: a tuple gives its first element, a PackedSequence is padded to
               (N, T, C), a (sum of lengths, C) tensor laid out like the packed input is unpacked to (N, T, C).
               If the module runs more than once in one forward, its last output counts.
    attention  {map name: module path}   a module whose output is softmax weights (N, L, heads);
               names: attn.beat, attn.measure, attn.final.
    mapping    {reference name: your name} for parameters or whole modules (longest prefix wins), or a
               function reference name -> your name (None: no partner). Used to copy the reference's weights.
    forward(model, model_input) -> logits   model_input is replica.ModelInput (x, note_locations, labels,
               lengths). Default: model(model_input.x, model_input.note_locations).
    run_level(model, level, inputs, model_input) -> Tensor   compute one level from the given inputs
               (teacher forcing: tells a level's own error from the error it inherits). Optional.
    level_inputs {level: (input level names)}   for run_level; default: the replica's level graph.
    recipe(model) -> optimizer / (optimizer, scheduler) / a Lightning-like module   for the recipe check.
               Default: the model itself when it has configure_optimizers.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from parity.config import UsageError
from parity.levels import ATTENTIONS, LEVELS
from parity.replica_subject import _model_input, preserved_state, training_loss
from parity.subject import SubjectInfo
from parity.taps import Taps
from replica.batch import CanonicalBatch, ModelInput
from replica.config import ModelConfig


class AdapterError(UsageError):
    """The user's model or adapter cannot be driven as described (wrong shapes, missing modules...)."""


@runtime_checkable
class ReplicaAdapter(Protocol):
    """What the tool reads from an adapter (every member optional; see the module docstring)."""

    levels: Mapping[str, str]

    def forward(self, model: nn.Module, model_input: ModelInput) -> Tensor: ...


@dataclass
class Adapter:
    """A ready-made adapter: give `levels` (and optionally the rest), or subclass and override methods."""

    levels: Mapping[str, str] = field(default_factory=dict)
    attention: Mapping[str, str] = field(default_factory=dict)
    mapping: Mapping[str, str] | Callable[[str], str | None] | None = None
    level_inputs: Mapping[str, Sequence[str]] | None = None

    def forward(self, model: nn.Module, model_input: ModelInput) -> Tensor:
        return model(model_input.x, model_input.note_locations)

    def recipe(self, model: nn.Module) -> Any:
        return model if callable(getattr(model, "configure_optimizers", None)) else None


DEFAULT_ADAPTER = Adapter()


# ------------------------------------------------------------------------------------------ loading


def _import_target(target: str) -> Any:
    """A module from a dotted name or a .py file path."""
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target).expanduser()
        if not path.is_file():
            raise UsageError(f"--replica: {path} does not exist")
        path = path.resolve()
        name = "parity_user_replica_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise UsageError(f"--replica: cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))  # the file may import its neighbours
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # `parity` as a console script does not put the cwd on sys.path
    return importlib.import_module(target)


def load_factory(spec: str) -> Callable[..., Any]:
    """The callable named by `module:attr` or `path.py:attr`; UsageError (one line) when it cannot be found."""
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise UsageError(f"--replica {spec!r}: expected module:factory or path.py:factory")
    try:
        module = _import_target(target)
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure while importing the user's code
        raise UsageError(f"--replica {spec}: importing {target} failed: {_one_line(exc)}") from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"--replica {spec}: {target} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"--replica {spec}: {attr} is not callable")
    return obj


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
    try:
        made = factory(**kwargs)
    except Exception as exc:  # noqa: BLE001 - the user's factory: any failure is a usage error
        raise UsageError(f"the replica factory {spec} failed: {_one_line(exc)}") from exc
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


def _module_path(spec_value: str) -> tuple[str, str]:
    path, sep, where = str(spec_value).partition(":")
    where = where or "output"
    if where not in ("output", "input"):
        raise ValueError(f"{spec_value!r}: the part after ':' must be input or output")
    return path, where


def validate_adapter(model: nn.Module, adapter: Any, spec: str) -> None:
    """Check the adapter's names against the model and the known level names, before anything runs."""
    levels = dict(getattr(adapter, "levels", {}) or {})
    attention = dict(getattr(adapter, "attention", {}) or {})
    unknown = sorted(set(levels) - set(LEVELS))
    if unknown:
        raise AdapterError(f"the adapter of {spec} names unknown level{'s' if len(unknown) > 1 else ''} "
                           f"{', '.join(map(repr, unknown))}; levels are: {', '.join(LEVELS)}")
    unknown = sorted(set(attention) - set(ATTENTIONS))
    if unknown:
        raise AdapterError(f"the adapter of {spec} names unknown attention map{'s' if len(unknown) > 1 else ''} "
                           f"{', '.join(map(repr, unknown))}; maps are: {', '.join(ATTENTIONS)}")
    modules = dict(model.named_modules())
    for kind, table in (("level", levels), ("attention map", attention)):
        for name, value in table.items():
            try:
                path, _ = _module_path(value)
            except ValueError as exc:
                raise AdapterError(f"the adapter of {spec}: {kind} {name}: {exc}") from None
            if path not in modules:
                raise AdapterError(f"the adapter of {spec}: {kind} {name} points at {path!r}, which is not a "
                                   "module of the model (see model.named_modules())")
    if not callable(getattr(adapter, "forward", DEFAULT_ADAPTER.forward)):
        raise AdapterError(f"the adapter of {spec}: forward is not callable")


# ------------------------------------------------------------------------------------------ mapping


def resolve_mapping(adapter: Any, reference: nn.Module, candidate: nn.Module) -> dict[str, str]:
    """The adapter's mapping as reference parameter name -> candidate parameter name (only existing pairs)."""
    mapping = getattr(adapter, "mapping", None)
    if not mapping:
        return {}
    ref_names = [n for n, _ in reference.named_parameters()]
    cand_names = {n for n, _ in candidate.named_parameters()}
    out: dict[str, str] = {}
    if callable(mapping):
        for name in ref_names:
            target = mapping(name)
            if target:
                out[name] = str(target)
    else:
        prefixes = sorted(mapping.items(), key=lambda kv: -len(kv[0]))
        for name in ref_names:
            for ref_prefix, cand_prefix in prefixes:
                if name == ref_prefix:
                    out[name] = cand_prefix
                    break
                if name.startswith(ref_prefix + "."):
                    out[name] = cand_prefix + name[len(ref_prefix):]
                    break
    missing = sorted(c for c in out.values() if c not in cand_names)
    if missing:
        raise AdapterError(f"the adapter's mapping names parameters the replica does not have: "
                           f"{', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
    return out


# ------------------------------------------------------------------------------------------ capture


def _normalise(value: Any, model_input: ModelInput) -> Tensor | None:
    """A module's output or input as a tensor in the tool's layout (see the module docstring)."""
    if isinstance(value, tuple | list) and value:
        value = value[0]
    if isinstance(value, PackedSequence):
        total = int(model_input.lengths.max())
        padded, _ = pad_packed_sequence(value, batch_first=True, total_length=total)
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
    from replica.config import SMALL_CONFIG
    from replica.variants import build

    with torch.random.fork_rng(devices=[]):
        return dict(build(variant, SMALL_CONFIG).level_graph())


class UserSubject:
    """Runs a user's model through its adapter and records levels, attention maps, loss and gradients."""

    def __init__(self, model: nn.Module, adapter: Any, info: SubjectInfo, num_label: int) -> None:
        self.model = model
        self.adapter = adapter
        self.info = info
        self.num_label = num_label

    def _forward(self, inp: ModelInput) -> Tensor:
        forward = getattr(self.adapter, "forward", None) or DEFAULT_ADAPTER.forward
        logits = forward(self.model, inp)
        if isinstance(logits, tuple | list) and logits:
            logits = logits[0]
        expected = (len(inp.lengths), self.num_label)
        if not isinstance(logits, Tensor):
            raise AdapterError(f"the replica ({self.info.source}) returned {type(logits).__name__} from forward; "
                               f"expected logits of shape {expected}")
        if tuple(logits.shape) != expected:
            raise AdapterError(f"the replica ({self.info.source}) returned logits of shape {tuple(logits.shape)} "
                               f"for a batch of {expected[0]}; expected {expected}: check the adapter's forward "
                               "and the model's num_label")
        return logits

    def run(self, batch: CanonicalBatch, *, grads: bool = True, train: bool = False) -> Taps:
        taps = Taps(subject=self.info.name)
        inp = _model_input(self.model, batch)
        levels = dict(getattr(self.adapter, "levels", {}) or {})
        attention = dict(getattr(self.adapter, "attention", {}) or {})
        with preserved_state(self.model):
            self.model.train(train)
            for p in self.model.parameters():
                p.grad = None
            with torch.set_grad_enabled(grads), _captured(self.model, levels, inp) as got, \
                    _captured(self.model, attention, inp) as maps:
                try:
                    logits = self._forward(inp)
                except AdapterError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the user's model failing on a batch
                    raise AdapterError(f"the replica ({self.info.source}) failed on a batch "
                                       f"({', '.join(batch.tags) or 'generated'}): {_one_line(exc)}") from exc
                for level in LEVELS:
                    if level in got:
                        taps.record_level(level, got[level])
                taps.record_level("logits", logits)
                for name in ATTENTIONS:
                    if name in maps:
                        taps.record_attention(name, maps[name])
                if grads:
                    loss = training_loss(logits, inp.labels)
                    loss.backward()
                    taps.loss = float(loss.detach())
                    taps.record_grads(dict(self.model.named_parameters()))
        return taps


class TeacherForcedUserSubject(UserSubject):
    """A user subject whose adapter can compute one level from given inputs (local error available)."""

    def __init__(self, model: nn.Module, adapter: Any, info: SubjectInfo, num_label: int, variant: str) -> None:
        super().__init__(model, adapter, info, num_label)
        given = getattr(adapter, "level_inputs", None)
        self._graph = {k: tuple(v) for k, v in dict(given).items()} if given else default_level_inputs(variant)

    def level_inputs(self, level: str) -> tuple[str, ...]:
        return self._graph.get(level, ())

    def run_level(self, level: str, inputs: Mapping[str, Tensor], batch: CanonicalBatch) -> Tensor:
        inp = _model_input(self.model, batch)
        param = next(self.model.parameters())
        with preserved_state(self.model), torch.no_grad():
            self.model.eval()
            cast = {k: v.to(device=param.device, dtype=param.dtype) for k, v in inputs.items()}
            out = self.adapter.run_level(self.model, level, cast, inp)
            got = _normalise(out, inp)
            if got is None:
                raise AdapterError(f"the adapter's run_level({level!r}) returned {type(out).__name__}, not a tensor")
            return got.detach().cpu()


def make_user_subject(model: nn.Module, adapter: Any, *, spec: str, variant: str, config: ModelConfig,
                      name: str = "replica") -> UserSubject:
    info = SubjectInfo(name=name, kind="user-replica", variant=variant, source=spec,
                       extra={"class": f"{type(model).__module__}.{type(model).__qualname__}",
                              "adapter": type(adapter).__qualname__ if adapter is not DEFAULT_ADAPTER else "default",
                              "levels": sorted(getattr(adapter, "levels", {}) or {}, key=LEVELS.index)})
    if callable(getattr(adapter, "run_level", None)):
        return TeacherForcedUserSubject(model, adapter, info, config.num_label, variant)
    return UserSubject(model, adapter, info, config.num_label)


def recipe_source(model: nn.Module, adapter: Any) -> Any:
    """What the user's side offers for the recipe check (None when nothing)."""
    get = getattr(adapter, "recipe", None)
    if callable(get):
        return get(model)
    return model if callable(getattr(model, "configure_optimizers", None)) else None
