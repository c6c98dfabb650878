"""Build a variant from the original's own classes, configured the way its `__main__` configures them.

The original reads its yml with its own `utils.read_model_setting` (PyYAML + OmegaConf) and hands
`config.nn_params` to the model; the scripts then override `input_size` (from the training pickles) and
`num_label` (`--num_labels`). We do the same through the original's function, then apply a
`ModelConfig` on top so a reduced configuration can drive the real classes. Construction is the first
consumer of torch's RNG in `__main__` (after `torch.manual_seed(th_seed)`), so seeding right before it
reproduces the original's initial weights. The constructor prints ("levels: ..."); that is swallowed.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from percepiano_parity.core.config import DEFAULT_CONFIG, ModelConfig
from percepiano_parity.original_adapter.errors import OriginalLoadError, describe_exception
from percepiano_parity.original_adapter.isolation import Isolated
from percepiano_parity.original_adapter.locate import DEFAULT_YML
from percepiano_parity.original_adapter.variants import check_variant


def resolve_yml(root: Path, yml: str | Path | None) -> Path:
    """The yml as given absolute, or relative to the checkout root or to its virtuoso/ folder (as the
    scripts write it: `ymls/shared/...`)."""
    given = Path(yml) if yml is not None else Path(DEFAULT_YML)
    candidates = [given] if given.is_absolute() else [root / given, root / "virtuoso" / given]
    for path in candidates:
        if path.is_file():
            return path
    raise OriginalLoadError(f"YAML file not found: {given} (looked in {', '.join(str(c) for c in candidates)})")


def read_net_params(isolated: Isolated, yml_path: Path) -> Any:
    """`nn_params` of the yml, read by the original's own reader."""
    try:
        with isolated.running():
            config = isolated["utils"].read_model_setting(str(yml_path))
    except Exception as exc:
        raise OriginalLoadError(f"the original could not read {yml_path}: {describe_exception(exc)}") from exc
    net_params = config.get("nn_params") if hasattr(config, "get") else None
    if net_params is None:
        raise OriginalLoadError(f"{yml_path} has no nn_params block")
    return net_params


def apply_config(net_params: Any, config: ModelConfig) -> Any:
    """Write a ModelConfig into the yml's nn_params keys (in place; returns it)."""
    net_params.input_size = config.input_size
    net_params.num_label = config.num_label
    for block, size, layers in (
        ("note", config.note_size, config.note_layers),
        ("voice", config.voice_size, config.voice_layers),
        ("beat", config.beat_size, config.beat_layers),
        ("measure", config.measure_size, config.measure_layers),
    ):
        net_params[block].size = size
        net_params[block].layer = layers
    net_params.encoder.size = config.encoder_size
    net_params.num_attention_head = config.num_heads
    net_params.drop_out = config.dropout
    return net_params


def data_stats() -> dict[str, Any]:
    """The stats dict the constructors take. MixEmbedder only needs `key_to_dim['input']` to exist
    (it reads feature ranges only with use_continuos_feature_only); a fresh dict each time, because the
    constructors write `graph_keys` into it."""
    return {"key_to_dim": {"input": {}}}


def build_model(
    isolated: Isolated,
    root: Path,
    variant_id: str,
    config: ModelConfig | None = None,
    seed: int = 7,
    yml: str | Path | None = None,
) -> nn.Module:
    """Construct `variant_id` from the original's classes on the CPU, seeded as `__main__` seeds it."""
    class_name, multi_level = check_variant(variant_id)
    net_params = apply_config(read_net_params(isolated, resolve_yml(root, yml)), config or DEFAULT_CONFIG)
    cls = getattr(isolated["model_m2pf"], class_name, None)
    if cls is None:
        raise OriginalLoadError(f"the original's model_m2pf has no class {class_name} (needed by {variant_id})")
    kwargs = {"multi_level": multi_level} if multi_level is not None else {}
    torch.manual_seed(seed)
    try:
        with isolated.running(), contextlib.redirect_stdout(io.StringIO()):
            model = cls(net_params, data_stats(), **kwargs)
    except Exception as exc:
        raise OriginalLoadError(
            f"the original could not build {variant_id} ({class_name}): {describe_exception(exc)}"
        ) from exc
    return model.cpu()
