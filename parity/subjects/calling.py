"""The one calling path into a user's model: conventions + the tool's batch -> the model's own inputs, one call,
and its output read back as logits.

    call = ModelCall(conventions, num_label=19, source="mypkg.model:build")
    result = call(model, model_input)        # CallResult(logits (N, 19), predictions or None, raw output)
    args, kwargs = call.arguments(model, model_input)   # what the model is given, to call it yourself

Every check that runs a user's model (forward, gradients, teacher forcing, the trajectory, the recipe) goes through
`ModelCall`; the user's forward itself runs in exactly one place, `invoke`, so a guard around user code has one
place to wrap. Inputs are built from `replica.batch.ModelInput` (packed features, zero-padded note locations,
lengths) as `subjects.conventions` describes; outputs are read as `Conventions.output` says (a dict at its key,
a tuple by its first element, sigmoid outputs inverted in float64). The original's own convention, the default:
a PackedSequence (dataset.py:223 pack_sequence(enforce_sorted=False)), zero-padded int64 (N, T) locations, and
logits out (the loss applies the sigmoid, train_m2pf.py:122-155).

Errors: ConventionError (a declaration the forward cannot take: one line, exit 2), AdapterError (an output
without an (N, num_label) tensor: one line, exit 2); anything the user's forward raises propagates unchanged
from `invoke` to the caller, which reports it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from percepiano_parity.replica.batch import ModelInput
from percepiano_parity.subjects.adapter import AdapterError
from percepiano_parity.subjects.conventions import ConventionError, Conventions

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
    if width is not None and width > padded.shape[-1]:
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
