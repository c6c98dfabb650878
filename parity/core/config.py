"""Typed model configuration, and the original's model YAML (`--model-config FILE.yml`) read and checked
at the boundary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any

from pydantic import ConfigDict, Field

from percepiano_parity.core.validation import InputError, Schema, read_yaml, validated

# ----------------------------------------------------------------------------------------------------------
# Typed model configuration.
#
# Defaults are the values of the original's `virtuoso/ymls/shared/label19/han_bigger256_concat.yml` (the only
# yml its training scripts use), with the two values the scripts override at run time: the input width comes
# from the training pickles (79 features, not the yml's 78) and `--num_labels 19`.

DEFAULT_YML = "virtuoso/ymls/shared/label19/han_bigger256_concat.yml"


@dataclass(frozen=True)
class ModelConfig:
    input_size: int = 79
    num_label: int = 19
    note_size: int = 256
    note_layers: int = 2
    voice_size: int = 256
    voice_layers: int = 2
    beat_size: int = 256
    beat_layers: int = 2
    measure_size: int = 256
    measure_layers: int = 1
    encoder_size: int = 256
    num_heads: int = 8
    dropout: float = 0.2

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "dropout":
                if not 0.0 <= value < 1.0:
                    raise ValueError(f"dropout must be in [0, 1), got {value}")
            elif not isinstance(value, int) or value <= 0:
                raise ValueError(f"{f.name} must be a positive integer, got {value!r}")
        for width in (2 * (self.note_size + self.voice_size), 2 * self.beat_size, 2 * self.encoder_size):
            if width % self.num_heads:
                raise ValueError(f"attention width {width} is not divisible by num_heads={self.num_heads}")

    @property
    def head_width(self) -> int:
        """Width of the pooled vector and of out_fc (the original's `encoder.size * 2`)."""
        return 2 * self.encoder_size

    def with_(self, **changes: Any) -> ModelConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_nn_params(cls, nn: dict[str, Any], *, input_size: int = 79, num_label: int = 19) -> ModelConfig:
        """Read the `nn_params` block of an original YAML file.

        `input_size` and `num_label` are not taken from the yml because the original overrides both at run
        time (from the training pickles and from `--num_labels`).
        """

        def block(name: str) -> dict[str, Any]:
            value = nn.get(name)
            if not isinstance(value, dict):
                raise ValueError(f"nn_params.{name} is missing or not a mapping")
            return value

        try:
            return cls._from_blocks(block, nn, input_size, num_label)
        except KeyError as exc:
            raise ValueError(f"nn_params: missing key {exc}") from None
        except TypeError as exc:
            raise ValueError(f"nn_params: {exc}") from None

    @classmethod
    def _from_blocks(cls, block: Any, nn: dict[str, Any], input_size: int, num_label: int) -> ModelConfig:
        return cls(
            input_size=input_size,
            num_label=num_label,
            note_size=int(block("note")["size"]),
            note_layers=int(block("note")["layer"]),
            voice_size=int(block("voice")["size"]),
            voice_layers=int(block("voice")["layer"]),
            beat_size=int(block("beat")["size"]),
            beat_layers=int(block("beat")["layer"]),
            measure_size=int(block("measure")["size"]),
            measure_layers=int(block("measure")["layer"]),
            encoder_size=int(block("encoder")["size"]),
            num_heads=int(nn["num_attention_head"]),
            dropout=float(nn["drop_out"]),
        )

    @classmethod
    def from_yaml(cls, path: str | Path, *, input_size: int = 79, num_label: int = 19) -> ModelConfig:
        """Load any of the original's YAML model files (the `nn_params` block)."""
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ValueError(f"{path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("nn_params"), dict):
            raise ValueError(f"{path} has no nn_params block")
        return cls.from_nn_params(data["nn_params"], input_size=input_size, num_label=num_label)


DEFAULT_CONFIG = ModelConfig()

# A reduced configuration that keeps every structural feature (2-layer bi-LSTMs, 1-layer measure LSTM, 8 heads,
# dropout placement) at a size that records into a bundle of well under 2 MB and runs in a second on a CPU.
SMALL_CONFIG = ModelConfig(
    note_size=16, voice_size=16, beat_size=16, measure_size=16, encoder_size=16, num_heads=8
)


# ----------------------------------------------------------------------------------------------------------
# The original's model YAML (`--model-config FILE.yml`), read and checked at the boundary.
#
# Only the `nn_params` keys the model is built from are read (the original's files hold many more, which are
# ignored): `note`, `voice`, `beat`, `measure` (`size`, `layer`), `encoder` (`size`), `num_attention_head` and
# `drop_out`. A missing key, a value of the wrong type or out of range is one line naming the file and the key
# (`core.validation`); sizes the model cannot be built with (attention widths not divisible by the number of
# heads) are refused the same way. Sources: the original's `virtuoso/ymls/shared/label19/*.yml`.

MAX_SIZE = 4096  # hidden units per direction; the published model uses 256
MAX_LAYERS = 16
MAX_HEADS = 64

Size = Annotated[int, Field(ge=1, le=MAX_SIZE)]
Layers = Annotated[int, Field(ge=1, le=MAX_LAYERS)]


class _Block(Schema):
    model_config = ConfigDict(extra="ignore")


class LstmBlock(_Block):
    """`note`, `voice`, `beat`, `measure`: an LSTM's hidden size and number of layers."""

    size: Size
    layer: Layers


class EncoderBlock(_Block):
    """`encoder`: the width of the contractor and the final attention (its other keys are not used)."""

    size: Size


class NnParams(_Block):
    note: LstmBlock
    voice: LstmBlock
    beat: LstmBlock
    measure: LstmBlock
    encoder: EncoderBlock
    num_attention_head: Annotated[int, Field(ge=1, le=MAX_HEADS)]
    drop_out: Annotated[float, Field(ge=0.0, lt=1.0)]


class ModelYaml(_Block):
    nn_params: NnParams


def read_model_yaml(path: str | Path, *, input_size: int = 79, num_label: int = 19) -> ModelConfig:
    """The ModelConfig of one of the original's YAML files; `InputError` (exit code 2) when it is bad.

    `input_size` and `num_label` are not read from the file: the original overrides both at run time.
    """
    p = Path(path)
    source = f"model config {p}"
    data = read_yaml(p, what="model config")
    nn = validated(ModelYaml, data, source=source, table_word="mapping").nn_params
    try:
        return ModelConfig(
            input_size=input_size, num_label=num_label,
            note_size=nn.note.size, note_layers=nn.note.layer, voice_size=nn.voice.size,
            voice_layers=nn.voice.layer, beat_size=nn.beat.size, beat_layers=nn.beat.layer,
            measure_size=nn.measure.size, measure_layers=nn.measure.layer, encoder_size=nn.encoder.size,
            num_heads=nn.num_attention_head, dropout=nn.drop_out)
    except ValueError as exc:
        raise InputError(f"{source}: nn_params: {exc}") from None
