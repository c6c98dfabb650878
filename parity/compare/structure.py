"""Structure descriptions: every module's type and settings, parameter shapes, counts per level.

A description is plain data (JSON-able), so it can be recorded into a bundle and diffed with deepdiff.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from percepiano_parity.compare.weight_mapping import container_parameters

# Which parameter-name prefixes (in the original's naming) make up each level; used for counts per level.
LEVEL_PREFIXES: dict[str, tuple[str, ...]] = {
    "embedding": ("note_embedder.",),
    "note": ("score_encoder.lstm.", "lstm."),
    "voice": ("score_encoder.voice_net.",),
    "beat_nodes": ("score_encoder.beat_attention.",),
    "beat": ("score_encoder.beat_rnn.",),
    "measure_nodes": ("score_encoder.measure_attention.",),
    "measure": ("score_encoder.measure_rnn.",),
    "contracted": ("performance_contractor.", "note_contractor.", "voice_contractor.",
                   "performance_encoder.performance_contractor."),
    "pooled": ("performance_final_attention.", "note_attention.", "voice_attention.", "beat_attention.",
               "measure_attention.", "performance_encoder.performance_final_attention."),
    "logits": ("out_fc.",),
}


def level_of(param_name: str) -> str:
    for level, prefixes in LEVEL_PREFIXES.items():
        if param_name.startswith(prefixes):
            return level
    return "other"


def module_settings(module: nn.Module) -> dict[str, Any]:
    """The settings that change what a module computes (not its weights)."""
    s: dict[str, Any] = {"type": type(module).__name__}
    if isinstance(module, nn.Linear):
        s.update(in_features=module.in_features, out_features=module.out_features, bias=module.bias is not None)
    elif isinstance(module, nn.RNNBase):
        s["type"] = module.mode  # an nn.LSTM subclass (e.g. a faster kernel) is still an LSTM
        s.update(mode=module.mode, input_size=module.input_size, hidden_size=module.hidden_size,
                 num_layers=module.num_layers, bidirectional=module.bidirectional, dropout=float(module.dropout),
                 batch_first=module.batch_first, bias=module.bias, proj_size=module.proj_size)
    elif isinstance(module, nn.Dropout):
        s.update(p=float(module.p))
    elif isinstance(module, nn.LayerNorm):
        s.update(normalized_shape=list(module.normalized_shape), eps=module.eps,
                 elementwise_affine=module.elementwise_affine)
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        s.update(num_features=module.num_features, eps=module.eps, momentum=module.momentum)
    elif isinstance(module, nn.GELU):
        s.update(approximate=module.approximate)
    elif isinstance(module, nn.Embedding):
        s.update(num_embeddings=module.num_embeddings, embedding_dim=module.embedding_dim)
    head = getattr(module, "num_head", None)
    if isinstance(head, int):
        s.update(num_head=head, head_size=getattr(module, "head_size", None))
    return s


@contextmanager
def recording_calls(model: nn.Module) -> Iterator[list[str]]:
    """Record every module's name in the order of its first call while the block runs."""
    order: list[str] = []
    seen: set[str] = set()
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(_m: nn.Module, _i: object, name: str = name) -> None:
            if name not in seen:
                seen.add(name)
                order.append(name)

        handles.append(module.register_forward_pre_hook(hook))
    try:
        yield order
    finally:
        for h in handles:
            h.remove()


# Functions whose calls stand for what a module would otherwise show: a dropout's rate, an activation's kind.
# (tanh and sigmoid are left out: they also run inside attentions and hand-written LSTM cells.)
RECORDED_FUNCTIONS = frozenset({"dropout", "alpha_dropout", "feature_alpha_dropout", "dropout1d", "dropout2d",
                                "dropout3d", "gelu", "relu", "silu", "elu", "leaky_relu", "softplus", "mish",
                                "selu", "celu", "hardswish", "relu6"})


class _FunctionCalls(TorchFunctionMode):
    def __init__(self, calls: list[dict[str, Any]], stack: list[str]) -> None:
        super().__init__()
        self.calls, self.stack = calls, stack

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's signature
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in RECORDED_FUNCTIONS:
            call: dict[str, Any] = {"fn": name, "module": self.stack[-1] if self.stack else ""}
            if "dropout" in name:
                p = kwargs.get("p", args[1] if len(args) > 1 else 0.5)
                call["p"] = float(p)
                call["training"] = bool(kwargs.get("training", args[2] if len(args) > 2 else True))
            elif name == "gelu":
                call["approximate"] = str(kwargs.get("approximate", "none"))
            self.calls.append(call)
        return func(*args, **kwargs)


@contextmanager
def recording_functions(model: nn.Module) -> Iterator[list[dict[str, Any]]]:
    """Calls of dropout and activation functions while the block runs, in call order, each with its rate or
    kind and the innermost submodule that made it: what a model does, whether through nn.Dropout/nn.GELU
    modules or through nn.functional calls."""
    calls: list[dict[str, Any]] = []
    stack: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def pre(_m: nn.Module, _a: object, name: str = name) -> None:
            stack.append(name)

        def post(_m: nn.Module, _a: object, _o: object, name: str = name) -> None:
            if stack and stack[-1] == name:
                stack.pop()

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post, always_call=True))
    try:
        with _FunctionCalls(calls, stack):
            yield calls
    finally:
        for h in handles:
            h.remove()


class _ParameterUses(TorchFunctionMode):
    """Appends a watched parameter's name to `order` at the first operation that reads it."""

    def __init__(self, order: list[str], watched: dict[int, str]) -> None:
        super().__init__()
        self.order, self.watched = order, watched

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's signature
        if self.watched:
            for a in (*args, *(kwargs or {}).values()):
                for t in (a if isinstance(a, list | tuple) else (a,)):
                    name = self.watched.pop(id(t), None) if isinstance(t, torch.Tensor) else None
                    if name is not None:
                        self.order.append(name)
        return func(*args, **(kwargs or {}))


def trace_calls(model: nn.Module, run: Callable[[], object], *, parameters: bool = False) -> list[str]:
    """Every module's name in the order of its first call during `run()` (no gradients); with `parameters`,
    also the name of each parameter held by a container (a loose `nn.Parameter`, see
    compare.weight_mapping.container_parameters) at its first use, in the same order."""
    watched: dict[int, str] = {}
    if parameters:
        loose = container_parameters(model)
        watched = {id(p): n for n, p in model.named_parameters() if n in loose}
    with recording_calls(model) as order, torch.no_grad(), _ParameterUses(order, watched):
        run()
    return order


def describe(model: nn.Module, call_order: list[str] | None = None,
             functions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """JSON-able description: modules (name -> settings), params (name -> shape), counts, call order, and the
    dropout and activation function calls of one forward when recorded (see recording_functions)."""
    modules = {name: module_settings(m) for name, m in model.named_modules() if name}
    params = {name: list(p.shape) for name, p in model.named_parameters()}
    per_level: dict[str, int] = {}
    for name, p in model.named_parameters():
        per_level[level_of(name)] = per_level.get(level_of(name), 0) + p.numel()
    leaf_calls = [n for n in (call_order or []) if n in modules and not any(
        True for _ in dict(model.named_modules())[n].children())]
    return {
        "modules": modules,
        "params": params,
        "total_params": sum(p.numel() for p in model.parameters()),
        "params_per_level": per_level,
        "call_order": leaf_calls,
        "dtypes": sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()}),
        **({"functions": functions} if functions is not None else {}),
    }
