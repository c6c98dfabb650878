"""The one calling path into a user's model: conventions + the tool's batch -> the model's own inputs, one
call, its output back; probing the conventions an adapter leaves undeclared; and how the training
checks call it (forward, training loss, randomness).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence
from torch.overrides import TorchFunctionMode

from percepiano_parity.batches.canonical import CanonicalBatch, ModelInput, collate
from percepiano_parity.batches.features import column_plan
from percepiano_parity.batches.synthetic import generate_batches
from percepiano_parity.core.config import ModelConfig
from percepiano_parity.core.errors import describe, is_code_failure, location, user_code
from percepiano_parity.subjects.adapter import AdapterError, ConventionError, Conventions, plan_note
from percepiano_parity.subjects.replica_subject import preserved_state

# ----------------------------------------------------------------------------------------------------------
# The one calling path into a user's model: conventions + the tool's batch -> the model's own inputs, one call,
# and its output read back as logits.
#
#     call = ModelCall(conventions, num_label=19, source="mypkg.model:build")
#     result = call(model, model_input)        # CallResult(logits (N, 19), predictions or None, raw output)
#     args, kwargs = call.arguments(model, model_input)   # what the model is given, to call it yourself
#
# Every check that runs a user's model (forward, gradients, teacher forcing, the trajectory, the recipe) goes through
# `ModelCall`; the user's forward itself runs in exactly one place, `invoke`, so a guard around user code has one
# place to wrap. Inputs are built from `batches.canonical.ModelInput` (packed features, zero-padded note locations,
# lengths) as `subjects.adapter` describes; outputs are read as `Conventions.output` says (a dict at its key,
# a tuple by its first element, sigmoid outputs inverted in float64). The original's own convention, the default:
# a PackedSequence (dataset.py:223 pack_sequence(enforce_sorted=False)), zero-padded int64 (N, T) locations, and
# logits out (the loss applies the sigmoid, train_m2pf.py:122-155).
#
# Errors: ConventionError (a declaration the forward cannot take: one line, exit 2), AdapterError (an output
# without an (N, num_label) tensor: one line, exit 2); anything the user's forward raises propagates unchanged
# from `invoke` to the caller, which reports it.

ALIASES: dict[str, frozenset[str]] = {
    "x": frozenset({"x", "inputs", "input", "features", "feats", "note_features", "batch_x", "src", "seq",
                    "sequence", "notes", "x_padded", "padded"}),
    "note_locations": frozenset({"note_locations", "locations", "note_locs", "locs", "loc", "location",
                                 "note_location", "positions"}),
    "mask": frozenset({"mask", "masks", "note_mask", "attention_mask", "padding_mask", "pad_mask", "attn_mask",
                       "valid_mask"}),
    "lengths": frozenset({"lengths", "length", "lens", "seq_lengths", "seq_lens", "note_lengths", "num_notes"}),
}
LOGIT_KEYS = ("logits", "logit", "scores", "output", "out")
PREDICTION_KEYS = ("predictions", "prediction", "preds", "pred", "probs", "probabilities", "y_hat")
ULP32 = 2.0 ** -23  # one float32 ulp at 1: the rounding of a sigmoid output, relative


@dataclass
class CallResult:
    """One call's output: logits (N, num_label) in the model's dtype, the sigmoid outputs when the model returns
    those, the raw output, and `logits_slack`: the largest error the inversion of sigmoid outputs can add to the
    logits (absolute; 0 when the model returns logits)."""

    logits: Tensor
    predictions: Tensor | None
    raw: Any
    logits_slack: float = 0.0


def invoke(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The single place where the user's forward (or the adapter's forward) runs."""
    return fn(*args, **kwargs)


def forward_parameters(model: nn.Module) -> list[inspect.Parameter]:
    """The parameters of `model.forward` (without self); empty when they cannot be read."""
    try:
        return list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return []


def named_like(parameter: str) -> str | None:
    """Which of x, note_locations, mask, lengths a forward parameter's name says it is (None: none)."""
    low = parameter.lower()
    for role, names in ALIASES.items():
        if low in names:
            return role
    return None


def _features(conventions: Conventions, model_input: ModelInput, dtype: torch.dtype) -> Tensor | PackedSequence:
    x = model_input.x
    width = conventions.input_width
    if conventions.input == "packed" and (width is None or width == x.data.shape[-1]):
        return x if x.data.dtype == dtype else PackedSequence(x.data.to(dtype), x.batch_sizes, x.sorted_indices,
                                                              x.unsorted_indices)
    padded, _ = pad_packed_sequence(x, batch_first=True)
    padded = padded.to(dtype)
    real = _real(model_input).to(padded.device)
    plan = conventions.input_plan
    if plan is not None:  # a model of another width: the columns both have, in its own order; zeros elsewhere
        taken = [j for j, c in enumerate(plan.columns) if c is not None]
        fed = padded.new_zeros(*padded.shape[:2], plan.model_width)
        fed[..., taken] = padded[..., [plan.columns[j] for j in taken]]
        padded = fed
    elif width is not None and width > padded.shape[-1]:
        extra_width = width - padded.shape[-1]
        if conventions.extra_columns == "zeros":
            extra = padded.new_zeros(*padded.shape[:2], extra_width)
        else:
            extra = conventions.extra_columns(padded.clone())
            if not isinstance(extra, Tensor) or tuple(extra.shape) != (*padded.shape[:2], extra_width):
                raise ConventionError(f"the adapter's extra_columns returned "
                                      f"{tuple(extra.shape) if isinstance(extra, Tensor) else type(extra).__name__}; "
                                      f"expected {(*padded.shape[:2], extra_width)}")
            extra = extra.to(device=padded.device, dtype=dtype)
        padded = torch.cat([padded, extra * real.unsqueeze(-1).to(dtype)], dim=-1)
    if conventions.input == "packed":
        return pack_padded_sequence(padded, model_input.lengths.cpu(), batch_first=True, enforce_sorted=False)
    return padded if conventions.batch_first else padded.transpose(0, 1)


def _real(model_input: ModelInput) -> Tensor:
    lengths = model_input.lengths
    t = int(lengths.max())
    return torch.arange(t, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def _locations(conventions: Conventions, model_input: ModelInput) -> dict[str, Tensor]:
    real = _real(model_input).cpu()
    out = {}
    for key, value in model_input.note_locations.items():
        base = int(dict(conventions.location_base).get(key, 0))
        out[key] = value + real.to(value.dtype) * base if base else value
    return out


class ModelCall:
    """How to call one user model on the tool's batches (see the module docstring).

    `adapter_forward`, when the adapter has its own `forward(model, model_input)`, replaces the input side:
    the tool then passes the canonical ModelInput to it and only reads the output by the conventions."""

    def __init__(self, conventions: Conventions, *, num_label: int, source: str,
                 adapter_forward: Callable[[nn.Module, ModelInput], Any] | None = None) -> None:
        self.conventions = conventions
        self.num_label = num_label
        self.source = source
        self.adapter_forward = adapter_forward

    def with_conventions(self, conventions: Conventions) -> ModelCall:
        return ModelCall(conventions, num_label=self.num_label, source=self.source,
                         adapter_forward=self.adapter_forward)

    # -- inputs ------------------------------------------------------------------------------------------
    def values(self, model: nn.Module, model_input: ModelInput) -> dict[str, Any]:
        """The four things a model may take, in its conventions: x, note_locations, mask, lengths."""
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        return {"x": _features(self.conventions, model_input, dtype),
                "note_locations": _locations(self.conventions, model_input),
                "mask": _real(model_input).to(model_input.x.data.device),
                "lengths": model_input.lengths}

    def roles(self, model: nn.Module) -> list[tuple[str | None, str]]:
        """(role, parameter name) for the forward's parameters the tool fills, in order (role None: left out)."""
        c = self.conventions
        wanted = {"x", "note_locations"} | ({"mask"} if c.mask else set()) | ({"lengths"} if c.lengths else set())
        if c.arguments is not None:
            return [(name, name) for name in c.arguments]
        params = [p for p in forward_parameters(model)
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not params or any(p.kind is p.VAR_POSITIONAL for p in forward_parameters(model)):
            return [(r, r) for r in ("x", "note_locations", "mask", "lengths") if r in wanted]
        out: list[tuple[str | None, str]] = []
        unnamed = ["x", "note_locations"]
        taken: set[str] = set()
        for p in params:
            role = named_like(p.name)
            if role is None and p.default is p.empty and p.kind is not p.KEYWORD_ONLY and unnamed:
                role = next((r for r in unnamed if r not in taken), None)
            if role is not None and role in taken:
                role = None
            if role is not None and role not in wanted and p.default is not p.empty:
                role = None  # an optional mask or lengths the conventions do not pass
            if role is None and p.default is p.empty:
                raise ConventionError(f"the forward of {self.source} requires a parameter {p.name!r} the tool "
                                      "cannot supply; declare `arguments` in the adapter (names from x, "
                                      "note_locations, mask, lengths)")
            if role is not None:
                taken.add(role)
                if role in unnamed:
                    unnamed.remove(role)
            out.append((role, p.name))
        missing = sorted(wanted - taken)
        if missing:
            names = ", ".join(p.name for p in params)
            raise ConventionError(f"the forward of {self.source} ({names}) has no parameter for "
                                  f"{', '.join(missing)}; declare `arguments` in the adapter (names from x, "
                                  "note_locations, mask, lengths) or give it a forward(model, model_input)")
        return out

    def arguments(self, model: nn.Module, model_input: ModelInput) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Positional and keyword arguments for `model(...)`: positional in the forward's order until a parameter
        is left out (or is keyword-only), by name from there."""
        values = self.values(model, model_input)
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        params = {p.name: p for p in forward_parameters(model)}
        by_name = False
        for role, name in self.roles(model):
            if role is None:
                by_name = True
                continue
            keyword_only = name in params and params[name].kind is inspect.Parameter.KEYWORD_ONLY
            if by_name or keyword_only:
                kwargs[name] = values[role]
            else:
                args.append(values[role])
        return tuple(args), kwargs

    # -- the call ----------------------------------------------------------------------------------------
    def raw(self, model: nn.Module, model_input: ModelInput) -> Any:
        """The model's own output for one batch (the user's forward runs in `invoke`)."""
        if self.adapter_forward is not None:
            return invoke(self.adapter_forward, model, model_input)
        args, kwargs = self.arguments(model, model_input)
        return invoke(model, *args, **kwargs)

    def __call__(self, model: nn.Module, model_input: ModelInput) -> CallResult:
        raw = self.raw(model, model_input)
        return read_output(raw, self.conventions, batch=len(model_input.lengths), num_label=self.num_label,
                           source=self.source)


def output_tensor(raw: Any, conventions: Conventions) -> tuple[Tensor | None, str]:
    """The tensor an output holds as the conventions read it, and what it is ("logits" or "predictions")."""
    kind = conventions.output
    if isinstance(raw, Mapping):
        key = conventions.output_key
        if key is None:
            keys = LOGIT_KEYS if kind == "logits" else PREDICTION_KEYS
            key = next((k for k in keys if k in raw), None)
        value = raw.get(key) if key is not None else None
        return (value if isinstance(value, Tensor) else None), kind
    if isinstance(raw, tuple | list):
        value = next((v for v in raw if isinstance(v, Tensor)), None)
        return value, kind
    return (raw if isinstance(raw, Tensor) else None), kind


def read_output(raw: Any, conventions: Conventions, *, batch: int, num_label: int, source: str) -> CallResult:
    """Logits (and predictions) from one output; AdapterError (one line) when it holds no (N, num_label) tensor."""
    value, kind = output_tensor(raw, conventions)
    expected = (batch, num_label)
    if value is None:
        what = f"a dict with keys {', '.join(map(str, raw))}" if isinstance(raw, Mapping) else type(raw).__name__
        raise AdapterError(f"the replica ({source}) returned {what} from forward; expected {conventions.output} of "
                           f"shape {expected} (declare `output` / `output_key` in the adapter)")
    if tuple(value.shape) != expected:
        raise AdapterError(f"the replica ({source}) returned {conventions.output} of shape {tuple(value.shape)} for "
                           f"a batch of {batch}; expected {expected}: check the adapter and the model's num_label")
    if kind == "logits":
        return CallResult(value, None, raw)
    p = value.double()
    logits = (torch.log(p) - torch.log1p(-p)).to(value.dtype)
    with torch.no_grad():
        slack = float((ULP32 / torch.minimum(p, 1 - p).clamp_min(1e-300)).max()) if p.numel() else 0.0
    return CallResult(logits, value, raw, logits_slack=slack)


# ----------------------------------------------------------------------------------------------------------
# Probing the calling conventions an adapter leaves undeclared, on a tiny batch, and saying what was found.
#
# Each undeclared convention is settled by running the model (eval mode, no gradients, the global RNG untouched):
#
# * mask / lengths: the forward has a parameter named like one (`mask`, `attention_mask`, `lengths`, ...);
# * input: a PackedSequence first (the original's collate), then a zero-padded (N, T, F) tensor; the first the
#   model accepts wins;
# * input width: when neither is accepted, the input widths of the model's Linear and LSTM modules other than the
#   reference's (wider first, then narrower, nearest first), fed the columns both have
#   (batches.features.column_plan: by key name where a layout of that width is known, else by position; zeros in
#   the model's columns the batch lacks);
# * location base: the original's output does not change when every beat and measure number is shifted by a
#   constant (its spans and measure boundaries are zero-shifted: model_utils.py:25 and :61; its beat boundaries
#   depend on differences only, utils.py:234). A replica that fails with numbers from 0 but runs with numbers
#   from 1, or whose output changes between numbering from 0 and from 1 but not between 1 and 2, treats 0 as
#   padding, so it takes location_base=1;
# * output: a dict is read at `logits` (else `predictions`, ...); a tensor whose every value lies in (0, 1) on
#   the tiny batch is taken as sigmoid outputs.

SAME = 1e-6  # relative: two outputs of one model on the same batch within float32 noise of each other


def probe_batch(config: ModelConfig) -> ModelInput:
    """Two short segments (at most 10 notes) with the statistics of the real excerpts."""
    with torch.random.fork_rng(devices=[]):
        batch = generate_batches(1, 0, batch_size=2, config=config, max_notes=10, include_edge_cases=False)[0]
    return collate(batch)


def _try(call: ModelCall, model: nn.Module, inp: ModelInput, *, only: bool = False) -> tuple[Any, str | None]:
    """The raw output of one trial call, or the one-line reason it failed. `only`: the one convention there is
    (declared, or the adapter's own forward): a failure is then the user's code failing (core.errors), with the
    file:line of the user's frame."""
    what = "adapter.forward" if call.adapter_forward is not None else "forward"
    if only:
        with user_code(what, context="on the probe batch (2 short segments)"), torch.no_grad(), \
                torch.random.fork_rng(devices=[]):
            return call.raw(model, inp), None
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            return call.raw(model, inp), None
    except ConventionError:
        raise
    except BaseException as exc:  # the user's model rejecting one convention is what we probe for
        if not is_code_failure(exc):
            raise
        if not isinstance(exc, Exception):
            return None, describe(exc)
        where = location(exc)  # the user's line that raised, so a bug in the model is told from a convention
        return None, _one_line(exc) + (f" (at {where})" if where else "")


def _readable(raw: Any, call: ModelCall, inp: ModelInput) -> bool:
    value, _ = output_tensor(raw, call.conventions)
    if value is None and isinstance(raw, dict):
        value, _ = output_tensor(raw, call.conventions.with_(output="predictions"))
    return value is not None and tuple(value.shape) == (len(inp.lengths), call.num_label)


def _widths(model: nn.Module, reference_width: int) -> list[int]:
    """The input widths of the model's Linear and RNN modules other than the reference's: wider ones first (in
    module order), then narrower ones, nearest first (a model built for fewer columns, e.g. 78)."""
    found: list[int] = []
    for module in model.modules():
        width = getattr(module, "in_features", None) if isinstance(module, nn.Linear) else \
            getattr(module, "input_size", None) if isinstance(module, nn.RNNBase) else None
        if isinstance(width, int) and width != reference_width and width not in found:
            found.append(width)
    return [w for w in found if w > reference_width] + sorted((w for w in found if w < reference_width),
                                                              reverse=True)


def _detect_arguments(model: nn.Module, c: Conventions) -> Conventions:
    names = {named_like(p.name): p.name for p in forward_parameters(model)}
    detected = dict(c.detected)
    changes: dict[str, Any] = {}
    for role in ("mask", "lengths"):
        if role not in c.declared and c.arguments is None and role in names:
            changes[role] = True
            detected[role] = f"the forward has a parameter {names[role]!r}"
    return c.with_(**changes, detected=detected)


BASE_1 = {"beat": 1, "measure": 1, "voice": 0, "section": 0}


def _trials(call: ModelCall, model: nn.Module, reference_width: int) -> list[tuple[str, int | None, bool]]:
    """(input kind, width, numbered from 1) in the order tried: the original's conventions first."""
    c = call.conventions
    own = call.adapter_forward is not None
    kinds = [c.input] if "input" in c.declared or own else ["packed", "padded"]
    bases = [False] if "location_base" in c.declared or own else [False, True]
    widths: list[int | None] = [c.input_width] if "input_width" in c.declared or own else \
        [None, *_widths(model, reference_width)]
    return [(kind, width, base) for width in widths for base in bases for kind in kinds]


def _detect_input(model: nn.Module, call: ModelCall, inp: ModelInput, reference_width: int) -> tuple[ModelCall, Any]:
    """The first input convention the model accepts (kind, width, and numbering from 1 if it only runs so)."""
    c = call.conventions
    errors = []
    trials = _trials(call, model, reference_width)
    for kind, width, base in trials:
        changes: dict[str, Any] = {"input": kind, "input_width": width}
        if width is not None and "input_width" not in c.declared and width != reference_width:
            changes["input_plan"] = column_plan(reference_width, width)
        if base:
            changes["location_base"] = BASE_1
        trial = call.with_conventions(c.with_(**changes))
        raw, error = _try(trial, model, inp, only=len(trials) == 1)
        if error is None and not _readable(raw, trial, inp):  # it ran: say what it returned
            read_output(raw, trial.conventions, batch=len(inp.lengths), num_label=trial.num_label,
                        source=trial.source)
        if error is not None:
            errors.append(f"{kind}{'' if width is None else f' x{width}'}{', from 1' if base else ''}: {error}")
            continue
        detected = dict(c.detected)
        if "input" not in c.declared and call.adapter_forward is None:
            what = "PackedSequence" if kind == "packed" else "padded (N, T, F) tensor"
            detected["input"] = f"the forward accepts a {what}" + (f" (tried first: {errors[0]})" if errors else "")
        if width is not None and "input_width" not in c.declared:
            plan = trial.conventions.input_plan
            detected["input_width"] = (f"{reference_width} columns are refused; the model takes {width}"
                                       + (f": fed {plan_note(plan)}" if plan is not None else ""))
        if base:
            detected["location_base"] = ("the model fails with beats and measures numbered from 0 and runs with "
                                         "them numbered from 1: 0 means padding to this model")
        return trial.with_conventions(trial.conventions.with_(detected=detected)), raw
    if len(errors) == 1:
        raise AdapterError(f"the replica ({call.source}) failed on the probe batch (2 short segments) with "
                           f"{errors[0]}")
    declared = sorted(call.conventions.declared)
    hint = (f"your code fails with the declared conventions ({', '.join(declared)}) too, at the lines given"
            if "input" in declared else "declare them in the adapter (input, mask, lengths, input_width, "
            "location_base: see docs/user_replica.md)")
    raise AdapterError(f"could not call the replica ({call.source}) with the usual conventions "
                       f"({'; '.join(errors[:3])}); {hint}")


def _shifted(inp: ModelInput, by: int) -> ModelInput:
    real = torch.arange(inp.note_locations["beat"].shape[1]).unsqueeze(0) < inp.lengths.cpu().unsqueeze(1)
    loc = dict(inp.note_locations)
    for key in ("beat", "measure"):
        loc[key] = loc[key] + real.to(loc[key].dtype) * by
    return ModelInput(inp.x, loc, inp.labels, inp.lengths)


def _close(a: Any, b: Any, call: ModelCall) -> bool:
    ta, _ = output_tensor(a, call.conventions)
    tb, _ = output_tensor(b, call.conventions)
    if ta is None or tb is None or ta.shape != tb.shape:
        return False
    scale = float(ta.detach().abs().max()) or 1.0
    return float((ta.detach() - tb.detach()).abs().max()) <= SAME * scale


def _detect_base(model: nn.Module, call: ModelCall, inp: ModelInput, first: Any) -> ModelCall:
    c = call.conventions
    if "location_base" in c.declared or "location_base" in c.detected or call.adapter_forward is not None:
        return call
    one, error_one = _try(call, model, _shifted(inp, 1))
    two, _ = _try(call, model, _shifted(inp, 2))
    detected = dict(c.detected)
    if error_one is None and one is not None and two is not None and not _close(first, one, call) and \
            _close(one, two, call):
        base = BASE_1
        detected["location_base"] = ("the output changes when beats and measures are numbered from 0 instead of 1 "
                                     "but not from 1 to 2: 0 means padding to this model")
        return call.with_conventions(c.with_(location_base=base, detected=detected))
    if one is not None and _close(first, one, call):
        detected["location_base"] = "the output does not change when beat and measure numbers are shifted"
    else:
        detected["location_base"] = ("the output changes whenever beat and measure numbers are shifted (the "
                                     "original's does not); kept at 0")
    return call.with_conventions(c.with_(detected=detected))


def _detect_output(call: ModelCall, raw: Any) -> ModelCall:
    c = call.conventions
    if "output" in c.declared:
        return call
    detected = dict(c.detected)
    if isinstance(raw, dict):
        if c.output_key is not None:
            return call
        logits = next((k for k in LOGIT_KEYS if k in raw and torch.is_tensor(raw[k])), None)
        if logits is not None:
            detected["output"] = f"a dict; its {logits!r} entry"
            return call.with_conventions(c.with_(output="logits", detected=detected))
        preds = next((k for k in PREDICTION_KEYS if k in raw and torch.is_tensor(raw[k])), None)
        if preds is not None:
            detected["output"] = f"a dict without logits; its {preds!r} entry, taken as sigmoid outputs"
            return call.with_conventions(c.with_(output="predictions", detected=detected))
        return call
    value, _ = output_tensor(raw, c)
    if value is not None and bool(((value > 0) & (value < 1)).all()):
        detected["output"] = "every value lies in (0, 1) on the probe batch: taken as sigmoid outputs"
        return call.with_conventions(c.with_(output="predictions", detected=detected))
    detected["output"] = "values outside (0, 1): logits"
    return call.with_conventions(c.with_(output="logits", detected=detected))


def probe_conventions(model: nn.Module, call: ModelCall, config: ModelConfig) -> ModelCall:
    """`call` with every undeclared convention settled on a tiny batch (see the module docstring).

    Raises AdapterError (one line) when no usual convention lets the model run, ConventionError when a
    declaration contradicts the forward's signature."""
    inp = probe_batch(config)
    with preserved_state(model):
        model.eval()
        if call.adapter_forward is None:
            call = call.with_conventions(_detect_arguments(model, call.conventions))
        call, first = _detect_input(model, call, inp, config.input_size)
        call = _detect_output(call, first)
        call = _detect_base(model, call, inp, first)
    return call


# ----------------------------------------------------------------------------------------------------------
# How the training checks call a candidate: its forward (through the adapter), its training loss as it computes
# it (the adapter's `loss`, else the model's own `training_step`), and its training-mode randomness switched off.
#
# Every call of a candidate model by the recipe and trajectory checks goes through `forward` and `loss_call`
# here, so the calling conventions can be switched in one place.

F = nn.functional

# functions that draw a random mask in training mode; under `no_randomness` they return their input unchanged
_DROPOUTS = frozenset({
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout,
    torch.dropout, torch.dropout_, torch.alpha_dropout, torch.alpha_dropout_, torch.feature_dropout,
    torch.feature_dropout_, torch.feature_alpha_dropout, torch.feature_alpha_dropout_,
})


class _NoRandomness(TorchFunctionMode):
    """Dropout in any form (modules, `nn.functional.dropout` in a custom cell, `torch.dropout`) becomes the
    identity; `F.rrelu` takes its deterministic (evaluation) slope."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = dict(kwargs or {})
        if func in _DROPOUTS:
            return args[0] if args else kwargs["input"]
        if func is F.rrelu:
            kwargs["training"] = False
        return func(*args, **kwargs)


@contextlib.contextmanager
def no_randomness() -> Iterator[None]:
    """Training-mode code runs without dropout of any kind while inside (both sides of a trajectory)."""
    with _NoRandomness():
        yield


def without_dropout(model: nn.Module) -> nn.Module:
    """A private deep copy in train mode with every Dropout's p and every RNN's inter-layer dropout set to 0
    (the fused RNN kernels draw their masks inside, where `no_randomness` cannot reach)."""
    clone = copy.deepcopy(model)
    for module in clone.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.p = 0.0
        elif isinstance(module, nn.RNNBase):
            module.dropout = 0.0
    clone.train()
    return clone


def logits_of(out: Any) -> Tensor:
    """Logits from what a forward returns: a tensor, the last of a tuple (the original's logitss), or a dict's
    "logits"."""
    if isinstance(out, (tuple, list)):
        return out[-1]
    if isinstance(out, dict):
        return out["logits"]
    return out


def model_input(model: nn.Module, batch: CanonicalBatch) -> ModelInput:
    """A batch collated as the replica's models take it, on the model's device."""
    param = next(model.parameters(), None)
    inp = collate(batch)
    return inp.to(param.device) if param is not None and param.device.type != "cpu" else inp


def forward(adapter: Any, model: nn.Module, model_input: ModelInput) -> Tensor:
    """The candidate's logits (N, labels) for one batch: `adapter.forward(model, model_input)` when the adapter
    has one, else `model(x, note_locations)`."""
    call = getattr(adapter, "forward", None)
    out = call(model, model_input) if callable(call) else model(model_input.x, model_input.note_locations)
    return logits_of(out)


class CalledThrough:
    """The user's adapter as the training checks see it, with `forward` replaced by the audit's one calling path
    (subjects.calling.ModelCall: the declared or probed conventions), so a model that takes padded input, a mask
    or returns a dict is stepped exactly as the forward check called it. Every other attribute (loss,
    training_batch, trainer, ...) is the adapter's own."""

    def __init__(self, adapter: Any, call: Callable[[nn.Module, ModelInput], Any]) -> None:
        self._adapter = adapter
        self._call = call

    def forward(self, model: nn.Module, model_input: ModelInput) -> Tensor:
        return self._call(model, model_input).logits

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter, name)


@dataclass(frozen=True)
class LossCall:
    """The candidate's own training loss: `run(model, model_input, batch_index)` returns the scalar loss tensor
    its training computes; `source` says where it comes from (e.g. "PercePianoLit.training_step")."""

    run: Callable[[nn.Module, ModelInput, int], Tensor]
    source: str


def loss_call(model: nn.Module | None, adapter: Any) -> LossCall | None:
    """The loss as the replica's training computes it: `adapter.loss(model, model_input)`, else the model's
    `training_step(batch, batch_idx)` with `batch = adapter.training_batch(model_input)` (default: the
    ModelInput itself); None when neither exists."""
    custom = getattr(adapter, "loss", None)
    if callable(custom):
        return LossCall(lambda m, inp, _i: _scalar(custom(m, inp), "adapter.loss"), "adapter.loss")
    if model is None or not callable(getattr(model, "training_step", None)):
        return None
    to_batch = getattr(adapter, "training_batch", None)
    name = f"{type(model).__name__}.training_step"

    def run(m: nn.Module, inp: ModelInput, index: int) -> Tensor:
        batch = to_batch(inp) if callable(to_batch) else inp
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Lightning's self.log() without a Trainer only warns
            return _scalar(m.training_step(batch, index), name)

    return LossCall(run, name)


def _scalar(out: Any, source: str) -> Tensor:
    if isinstance(out, dict):
        out = out.get("loss")
    if not isinstance(out, Tensor) or out.numel() != 1:
        raise TypeError(f"{source} returned {type(out).__name__}, not a scalar loss tensor (or a dict with 'loss')")
    return out.reshape(())


# two training-mode calls with different seeds differ "randomly" above this, relative to the output's magnitude
# (bitwise equal on the CPU; GPU kernels with atomic additions differ by ~1e-7 relative)
RANDOMNESS_RTOL = 1e-6


def residual_randomness(model: nn.Module, adapter: Any, model_input: ModelInput,
                        loss: LossCall | None = None) -> float:
    """Greatest difference between two training-mode calls (the logits, and the loss when given) of a
    dropout-free copy under `no_randomness` with different seeds, relative to the output's magnitude; 0.0
    when they agree within RANDOMNESS_RTOL."""
    clone = without_dropout(model)
    worst = 0.0
    calls: list[Callable[[], Tensor]] = [lambda: forward(adapter, clone, model_input)]
    if loss is not None:
        calls.append(lambda: loss.run(clone, model_input, 0))
    for call in calls:
        outs = []
        for seed in (1, 2):
            with torch.random.fork_rng(devices=[]), torch.no_grad(), no_randomness():
                torch.manual_seed(seed)
                outs.append(call().detach().double())
        scale = float(outs[0].abs().max()) if outs[0].numel() else 0.0
        diff = float((outs[0] - outs[1]).abs().max()) if outs[0].numel() else 0.0
        relative = diff / scale if scale else (0.0 if diff == 0 else math.inf)
        worst = max(worst, relative if math.isfinite(relative) else math.inf)
    return worst if worst > RANDOMNESS_RTOL else 0.0


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
