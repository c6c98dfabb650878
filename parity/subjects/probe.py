"""Probing the calling conventions an adapter leaves undeclared, on a tiny batch, and saying what was found.

Each undeclared convention is settled by running the model (eval mode, no gradients, the global RNG untouched):

* mask / lengths: the forward has a parameter named like one (`mask`, `attention_mask`, `lengths`, ...);
* input: a PackedSequence first (the original's collate), then a zero-padded (N, T, F) tensor; the first the
  model accepts wins;
* input width: when neither is accepted, the input widths of the model's Linear and LSTM modules wider than the
  reference's, with zeros in the extra columns;
* location base: the original's output does not change when every beat and measure number is shifted by a
  constant (its spans and measure boundaries are zero-shifted: model_utils.py:25 and :61; its beat boundaries
  depend on differences only, utils.py:234). A replica that fails with numbers from 0 but runs with numbers
  from 1, or whose output changes between numbering from 0 and from 1 but not between 1 and 2, treats 0 as
  padding, so it takes location_base=1;
* output: a dict is read at `logits` (else `predictions`, ...); a tensor whose every value lies in (0, 1) on
  the tiny batch is taken as sigmoid outputs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from percepiano_parity.batches.synthetic import generate_batches
from percepiano_parity.core.guard import describe, is_code_failure, location, user_code
from percepiano_parity.replica.batch import ModelInput, collate
from percepiano_parity.replica.config import ModelConfig
from percepiano_parity.subjects.adapter import AdapterError
from percepiano_parity.subjects.calling import (
    LOGIT_KEYS,
    PREDICTION_KEYS,
    ModelCall,
    forward_parameters,
    named_like,
    output_tensor,
    read_output,
)
from percepiano_parity.subjects.conventions import ConventionError, Conventions
from percepiano_parity.subjects.factory import _one_line
from percepiano_parity.subjects.replica_subject import preserved_state

SAME = 1e-6  # relative: two outputs of one model on the same batch within float32 noise of each other


def probe_batch(config: ModelConfig) -> ModelInput:
    """Two short segments (at most 10 notes) with the statistics of the real excerpts."""
    with torch.random.fork_rng(devices=[]):
        batch = generate_batches(1, 0, batch_size=2, config=config, max_notes=10, include_edge_cases=False)[0]
    return collate(batch)


def _try(call: ModelCall, model: nn.Module, inp: ModelInput, *, only: bool = False) -> tuple[Any, str | None]:
    """The raw output of one trial call, or the one-line reason it failed. `only`: the one convention there is
    (declared, or the adapter's own forward): a failure is then the user's code failing (core.guard), with the
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
    found: list[int] = []
    for module in model.modules():
        width = getattr(module, "in_features", None) if isinstance(module, nn.Linear) else \
            getattr(module, "input_size", None) if isinstance(module, nn.RNNBase) else None
        if isinstance(width, int) and width > reference_width and width not in found:
            found.append(width)
    return found


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
            detected["input_width"] = (f"{reference_width} columns are refused; the model takes {width} (extra "
                                       "columns filled with zeros)")
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
