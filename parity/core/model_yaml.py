"""The original's model YAML (`--model-config FILE.yml`), read and checked at the boundary.

Only the `nn_params` keys the model is built from are read (the original's files hold many more, which are
ignored): `note`, `voice`, `beat`, `measure` (`size`, `layer`), `encoder` (`size`), `num_attention_head` and
`drop_out`. A missing key, a value of the wrong type or out of range is one line naming the file and the key
(`core.validation`); sizes the model cannot be built with (attention widths not divisible by the number of
heads) are refused the same way. Sources: the original's `virtuoso/ymls/shared/label19/*.yml`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import ConfigDict, Field

from percepiano_parity.core.schema import Schema, validated
from percepiano_parity.core.validation import InputError, read_yaml
from percepiano_parity.replica.config import ModelConfig

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


__all__ = ["MAX_HEADS", "MAX_LAYERS", "MAX_SIZE", "ModelYaml", "read_model_yaml"]
