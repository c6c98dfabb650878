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
               "path:input" takes the module's first input instead. Level names: core.levels.LEVELS.
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
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from percepiano_parity.core.guard import call_user, user_code
from percepiano_parity.core.levels import ATTENTIONS, LEVELS
from percepiano_parity.replica.batch import CanonicalBatch, ModelInput
from percepiano_parity.replica.config import ModelConfig
from percepiano_parity.subjects.adapter import (
    DEFAULT_ADAPTER,
    Adapter,
    AdapterError,
    ReplicaAdapter,
    _module_path,
    resolve_mapping,
    validate_adapter,
)
from percepiano_parity.subjects.factory import call_factory, load_factory
from percepiano_parity.subjects.replica_subject import _model_input, preserved_state, training_loss
from percepiano_parity.subjects.subject import SubjectInfo
from percepiano_parity.subjects.taps import Taps

# ------------------------------------------------------------------------------------------ loading


# ------------------------------------------------------------------------------------------ mapping


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
    from percepiano_parity.replica.config import SMALL_CONFIG
    from percepiano_parity.replica.variants import build

    with torch.random.fork_rng(devices=[]):
        return dict(build(variant, SMALL_CONFIG).level_graph())


class UserSubject:
    """Runs a user's model through its adapter and records levels, attention maps, loss and gradients."""

    def __init__(self, model: nn.Module, adapter: Any, info: SubjectInfo, num_label: int) -> None:
        self.model = model
        self.adapter = adapter
        self.info = info
        self.num_label = num_label

    @staticmethod
    def _on(batch: CanonicalBatch) -> str:
        return f"on a batch ({', '.join(batch.tags) or 'generated'})"

    def _forward(self, inp: ModelInput, batch: CanonicalBatch) -> Tensor:
        forward = getattr(self.adapter, "forward", None) or DEFAULT_ADAPTER.forward
        own = getattr(type(self.adapter), "forward", None) not in (None, Adapter.forward)
        with user_code("adapter.forward" if own else "forward", context=self._on(batch)):
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
                logits = self._forward(inp, batch)
                for level in LEVELS:
                    if level in got:
                        taps.record_level(level, got[level])
                taps.record_level("logits", logits)
                for name in ATTENTIONS:
                    if name in maps:
                        taps.record_attention(name, maps[name])
                if grads:
                    loss = training_loss(logits, inp.labels)
                    with user_code("backward", context=self._on(batch)):
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
            out = call_user("adapter.run_level", self.adapter.run_level, self.model, level, cast, inp,
                            context=f"for level {level}")
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
        return call_user("adapter.recipe", get, model)
    return model if callable(getattr(model, "configure_optimizers", None)) else None


# `parity.user_subject` was the public home of all of these (docs/user_replica.md): they stay importable here
__all__ = ["DEFAULT_ADAPTER", "Adapter", "AdapterError", "ReplicaAdapter", "TeacherForcedUserSubject", "UserSubject",
           "call_factory", "load_factory", "make_user_subject", "recipe_source", "resolve_mapping",
           "validate_adapter"]
