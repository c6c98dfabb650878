"""The original model as a parity subject: feed a canonical batch, record every level by observation.

The original's own code path is the one that runs. Levels are *observed*, never recomputed:

* module outputs through forward hooks (embedder, note LSTM, score encoder, head contractor/attention);
* values that only exist inside the encoder's methods through scoped wrappers around the functions it
  calls by global name (`make_higher_node`, `run_hierarchy_lstm_with_pack`, `span_beat_to_note_num` in
  the `encoder_score` module, `get_softmax_by_boundary` in `model_utils`), and around the instance's
  bound `run_voice_net`;
* the head's softmax weights through a stand-in for the `torch` global of the original's `module`
  module, which records `softmax` outputs while the head attention runs and delegates everything else.

Every hook and wrapper is undone in a `finally` (an ExitStack), whatever the original raises.
"""

from __future__ import annotations

import contextlib
import io
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence, pad_sequence

from percepiano_parity.batches.canonical import BatchError, CanonicalBatch, collate
from percepiano_parity.core.config import ModelConfig
from percepiano_parity.core.levels import ATTENTIONS, LEVELS
from percepiano_parity.original_adapter.errors import OriginalLoadError, describe_exception
from percepiano_parity.original_adapter.isolation import Isolated
from percepiano_parity.original_adapter.variants import HEADS
from percepiano_parity.subjects.subject import SubjectInfo, Taps


def _padded(value: Any) -> Tensor:
    """(N, T, C) batch-first tensor in the batch's own order, from a PackedSequence or a tensor."""
    if isinstance(value, PackedSequence):
        value, _ = pad_packed_sequence(value, batch_first=True)
    return value.detach().clone()


class _SoftmaxSpy:
    """Stands in for `torch` in one module's globals: records softmax outputs while `active()`."""

    def __init__(self, real: types.ModuleType, sink: list[Tensor], active: Callable[[], bool]) -> None:
        self._real, self._sink, self._active = real, sink, active

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def softmax(self, *args: Any, **kwargs: Any) -> Tensor:
        out = self._real.softmax(*args, **kwargs)
        if self._active():
            self._sink.append(out.detach().clone())
        return out


class _Recording:
    """Installs the observers for one run on an ExitStack and collects what they see."""

    def __init__(self, model: nn.Module, isolated: Isolated, variant_id: str, stack: contextlib.ExitStack) -> None:
        self.model, self.isolated, self.stack = model, isolated, stack
        self.levels: dict[str, Tensor] = {}
        self.softmax_pieces: dict[str, list[list[Tensor]]] = {"attn.beat": [], "attn.measure": []}
        self.head_softmax: list[Tensor] = []
        self._phase: str | None = None  # which attention map get_softmax_by_boundary is feeding
        self._in_head = False
        contractor, attention = HEADS[variant_id]
        self._install_module_hooks(contractor, attention)
        if hasattr(model, "score_encoder"):
            self._install_hierarchy_wrappers()

    # -- installation -------------------------------------------------------------------------------
    def _hook(self, module: nn.Module, fn: Callable[[nn.Module, Any, Any], None]) -> None:
        self.stack.callback(module.register_forward_hook(fn).remove)

    def _swap_global(self, module: types.ModuleType, name: str, new: Any) -> None:
        old = vars(module)[name]
        setattr(module, name, new)
        self.stack.callback(setattr, module, name, old)

    def _keep(self, name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            self.levels[name] = _padded(output)

        return hook

    def _install_module_hooks(self, contractor: str | None, attention: str) -> None:
        model = self.model
        self._hook(model.note_embedder, self._keep("embedding"))
        note_lstm = model.score_encoder.lstm if hasattr(model, "score_encoder") else model.lstm
        self._hook(note_lstm, lambda m, i, out: self.levels.__setitem__("note", _padded(out[0])))
        if hasattr(model, "score_encoder"):
            self._hook(model.score_encoder,
                       lambda m, i, out: self.levels.__setitem__("total_note_cat", _padded(out["total_note_cat"])))
        if contractor is not None:
            self._hook(model.get_submodule(contractor), self._keep("contracted"))
        head = model.get_submodule(attention)

        def enter_head(_module: nn.Module, _inputs: Any) -> None:
            self._in_head = True

        def leave_head(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
            self._in_head = False
            self.levels["pooled"] = output.detach().clone()

        self.stack.callback(head.register_forward_pre_hook(enter_head).remove)
        self._hook(head, leave_head)
        module_mod = self.isolated["module"]
        self._swap_global(module_mod, "torch",
                          _SoftmaxSpy(vars(module_mod)["torch"], self.head_softmax, lambda: self._in_head))

    def _install_hierarchy_wrappers(self) -> None:
        encoder = self.model.score_encoder
        run_voice_net = encoder.run_voice_net  # the bound method of the class

        def voice(*args: Any, **kwargs: Any) -> Tensor:
            out = run_voice_net(*args, **kwargs)
            self.levels["voice"] = out.detach().clone()
            return out

        vars(encoder)["run_voice_net"] = voice  # instance attribute shadows the method for this run only
        self.stack.callback(vars(encoder).pop, "run_voice_net", None)

        enc_mod = self.isolated["encoder_score"]
        self._swap_global(enc_mod, "make_higher_node",
                          self._nth_call(vars(enc_mod)["make_higher_node"], ("beat_nodes", "measure_nodes"),
                                         phases=("attn.beat", "attn.measure")))
        self._swap_global(enc_mod, "run_hierarchy_lstm_with_pack",
                          self._nth_call(vars(enc_mod)["run_hierarchy_lstm_with_pack"], ("beat", "measure")))
        self._swap_global(enc_mod, "span_beat_to_note_num",
                          self._nth_call(vars(enc_mod)["span_beat_to_note_num"], ("beat_spanned", "measure_spanned")))

        utils_mod = self.isolated["model_utils"]
        real_softmax_by_boundary = vars(utils_mod)["get_softmax_by_boundary"]

        def softmax_by_boundary(*args: Any, **kwargs: Any) -> list[Tensor]:
            pieces = real_softmax_by_boundary(*args, **kwargs)
            if self._phase is not None:  # one call per batch item, in item order
                self.softmax_pieces[self._phase].append([p.detach().clone() for p in pieces])
            return pieces

        self._swap_global(utils_mod, "get_softmax_by_boundary", softmax_by_boundary)

    def _nth_call(
        self, real: Callable[..., Any], names: tuple[str, ...], phases: tuple[str, ...] | None = None
    ) -> Callable[..., Any]:
        """Wrapper recording the k-th call's result as names[k] (HanEncoder calls each twice: beat, then
        measure; see run_beat_and_measure). With phases, marks which attention map is being computed."""
        count = 0

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            nonlocal count
            k, count = count, count + 1
            self._phase = phases[k] if phases and k < len(phases) else None
            try:
                out = real(*args, **kwargs)
            finally:
                self._phase = None
            if k < len(names):
                self.levels[names[k]] = out.detach().clone()
            return out

        return wrapper

    # -- results ------------------------------------------------------------------------------------
    def attention_maps(self) -> dict[str, Tensor]:
        """Per-item segment softmaxes laid out as make_higher_node lays them out (concatenated per item,
        zero-padded across the batch), and the head attention's softmax weights."""
        maps: dict[str, Tensor] = {}
        for name, per_item in self.softmax_pieces.items():
            if per_item:
                maps[name] = pad_sequence([torch.cat(pieces) for pieces in per_item], batch_first=True)
        if self.head_softmax:
            maps["attn.final"] = self.head_softmax[0]
        return maps


class OriginalSubject:
    """One variant of the original model, driven as the original's training loop drives it."""

    def __init__(self, model: nn.Module, variant_id: str, isolated: Isolated, info: SubjectInfo,
                 config: ModelConfig) -> None:
        self.model = model
        self.variant = variant_id
        self.info = info
        self.config = config
        self._isolated = isolated
        self.last_stdout = ""  # what the original printed during the last run (it prints on some inputs)

    def run(self, batch: CanonicalBatch, *, grads: bool = True, train: bool = False) -> Taps:
        """Forward (eval mode unless train), record levels and attention maps; with grads, backpropagate
        MSE(sigmoid(logits), labels) and record every non-None gradient. Mode and grads are restored."""
        try:
            batch.validate(self.config.input_size, self.config.num_label)
        except BatchError as exc:
            raise OriginalLoadError(f"the batch does not fit the original model: {exc}") from exc
        params = dict(self.model.named_parameters())
        device = next(iter(params.values())).device if params else torch.device("cpu")
        inputs = collate(batch).to(device)  # note locations stay on the CPU, as in the original's loop
        saved_grads = {name: p.grad for name, p in params.items()}
        saved_modes = {m: m.training for m in self.model.modules()}
        taps = Taps(subject="original")
        out = io.StringIO()
        try:
            for p in params.values():
                p.grad = None
            self.model.train(train)
            with contextlib.ExitStack() as stack:
                stack.enter_context(contextlib.redirect_stdout(out))
                stack.enter_context(self._isolated.running())
                stack.enter_context(torch.enable_grad() if grads else torch.no_grad())
                recording = _Recording(self.model, self._isolated, self.variant, stack)
                try:
                    result = self.model(inputs.x, None, None, inputs.note_locations)
                    logits = result[-1] if isinstance(result, tuple) else result
                    loss = nn.MSELoss()(torch.sigmoid(logits), inputs.labels)
                    if grads:
                        loss.backward()
                except Exception as exc:
                    lengths = ", ".join(str(n) for n in batch.lengths)
                    raise OriginalLoadError(
                        f"the original rejected batch ({len(batch)} segments, lengths {lengths}): "
                        f"{describe_exception(exc)}"
                    ) from exc
            recording.levels["logits"] = logits.detach().clone()
            for name in LEVELS:
                if name in recording.levels:
                    taps.record_level(name, recording.levels[name])
            maps = recording.attention_maps()
            for name in ATTENTIONS:
                if name in maps:
                    taps.record_attention(name, maps[name])
            taps.loss = float(loss.detach())
            if grads:
                taps.record_grads(params)
        finally:
            self.last_stdout = out.getvalue()
            for name, p in params.items():
                p.grad = saved_grads[name]
            for module, mode in saved_modes.items():
                module.training = mode
        return taps
