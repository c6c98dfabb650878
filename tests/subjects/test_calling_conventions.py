"""The one calling path: declared conventions build the inputs a replica expects, outputs are read back as
logits, bad declarations are one-line errors, and what an adapter leaves undeclared is probed and reported."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from percepiano_parity.batches.canonical import collate
from percepiano_parity.batches.synthetic import generate_batches
from percepiano_parity.replica import SMALL_CONFIG, build
from percepiano_parity.subjects.adapter import (
    Adapter,
    AdapterError,
    ConventionError,
    Conventions,
    read_conventions,
)
from percepiano_parity.subjects.calling import ULP32, ModelCall, read_output
from percepiano_parity.subjects.user_subject import call_factory, load_factory, make_user_subject

FOREIGN = Path(__file__).resolve().parents[1] / "fixtures" / "foreign_replica.py"


@pytest.fixture(scope="module")
def model_input():
    edges = generate_batches(0, 3, config=SMALL_CONFIG, max_notes=24, include_edge_cases=True)
    inp = collate(next(b for b in edges if "edge:unequal-lengths" in b.tags))
    assert len(set(inp.lengths.tolist())) > 1  # unequal lengths, so padding is visible
    return inp


class Spy(nn.Module):
    """Records what it is given; returns zeros of the logits' shape."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.seen: dict = {}

    def forward(self, feats, locs, attention_mask=None, lens=None):
        self.seen = {"x": feats, "locs": locs, "mask": attention_mask, "lengths": lens}
        return {"logits": torch.zeros(locs["beat"].shape[0], 19) + self.w}


def call_with(**declared) -> ModelCall:
    conventions = read_conventions(Adapter(**declared), "spec", reference_width=79)
    return ModelCall(conventions, num_label=19, source="spec")


def test_padded_input_with_extra_columns_base_1_locations_and_a_mask(model_input):
    spy = Spy()
    call_with(input="padded", input_width=84, location_base=1, mask=True)(spy, model_input)
    x, lengths = spy.seen["x"], model_input.lengths
    n, t = len(lengths), int(lengths.max())
    real = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
    assert x.shape == (n, t, 84) and bool((x[..., 79:] == 0).all()) and bool((x[~real] == 0).all())
    for key in ("beat", "measure"):
        given, canonical = spy.seen["locs"][key], model_input.note_locations[key]
        assert torch.equal(given[real], canonical[real] + 1) and bool((given[~real] == 0).all())
    assert torch.equal(spy.seen["locs"]["voice"], model_input.note_locations["voice"])
    assert torch.equal(spy.seen["mask"], real) and spy.seen["lengths"] is None


def test_time_first_lengths_and_a_function_for_the_extra_columns(model_input):
    spy = Spy()
    call_with(input="padded", batch_first=False, lengths=True, input_width=81,
              extra_columns=lambda f: f[..., :2] * 2)(spy, model_input)
    x = spy.seen["x"]
    assert x.shape[1] == len(model_input.lengths) and x.shape[2] == 81
    assert torch.allclose(x[..., 79:], 2 * x[..., :2])
    assert torch.equal(spy.seen["lengths"], model_input.lengths)


def test_packed_input_is_the_default_and_declared_argument_order_is_positional(model_input):
    seen = {}

    class Positional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, *args):
            seen["args"] = args
            return torch.zeros(len(model_input.lengths), 19)

    call_with(arguments=("note_locations", "x"))(Positional(), model_input)
    assert isinstance(seen["args"][1], PackedSequence) and isinstance(seen["args"][0], dict)


@pytest.mark.parametrize("declared, message", [
    ({"input": "dense"}, "input must be one of 'packed', 'padded'"),
    ({"location_base": 2}, "location_base must be 0 or 1"),
    ({"location_base": {"bar": 1}}, "location_base: 'bar'"),
    ({"mask": "yes"}, "mask must be True or False"),
    ({"input_width": 40}, "input_width must be an integer of at least 79"),
    ({"output": "probabilities"}, "output must be one of 'logits', 'predictions'"),
    ({"arguments": ("x", "beats")}, "arguments must list distinct names"),
    ({"extra_columns": "ones", "input_width": 84}, "extra_columns must be 'zeros' or a function"),
])
def test_bad_declarations_are_one_line_usage_errors(declared, message):
    with pytest.raises(ConventionError, match=message) as info:
        read_conventions(Adapter(**declared), "mine.py:build", reference_width=79)
    assert "\n" not in str(info.value) and "mine.py:build" in str(info.value)


def test_a_required_parameter_the_tool_cannot_fill_is_a_usage_error(model_input):
    class NeedsBatch(nn.Module):
        def forward(self, batch):
            return batch

    with pytest.raises(ConventionError, match=r"\(batch\) has no parameter for note_locations.*`arguments`"):
        ModelCall(Conventions(), num_label=19, source="s").arguments(NeedsBatch(), model_input)

    class NeedsMore(nn.Module):
        def forward(self, x, note_locations, graph):
            return x

    with pytest.raises(ConventionError, match="requires a parameter 'graph'.*declare `arguments`"):
        ModelCall(Conventions(), num_label=19, source="s").arguments(NeedsMore(), model_input)


def test_sigmoid_outputs_are_inverted_in_float64_with_the_rounding_they_carry():
    logits = torch.linspace(-4, 4, 19 * 2).view(2, 19)
    result = read_output({"predictions": torch.sigmoid(logits)}, Conventions(output="predictions"), batch=2,
                         num_label=19, source="s")
    assert result.predictions is not None
    assert float((result.logits - logits).abs().max()) <= result.logits_slack
    p = torch.sigmoid(logits).double()
    assert result.logits_slack == pytest.approx(float((ULP32 / torch.minimum(p, 1 - p)).max()))
    with pytest.raises(AdapterError, match=r"returned a dict with keys hidden.*declare `output`"):
        read_output({"hidden": torch.zeros(2)}, Conventions(), batch=2, num_label=19, source="s")


def test_undeclared_conventions_of_the_foreign_style_replica_are_probed_and_reported():
    model = call_factory(load_factory(f"{FOREIGN}:build_undeclared"), "fx", variant="han-total",
                         config=SMALL_CONFIG, seed=0)[0]
    subject = make_user_subject(model, Adapter(), spec="fx", variant="han-total", config=SMALL_CONFIG)
    c = subject.call.conventions
    assert (c.input, c.mask, c.output, dict(c.location_base)["beat"]) == ("padded", True, "logits", 1)
    assert set(c.detected) >= {"input", "mask", "output", "location_base"} and not c.declared
    rows = {r["convention"]: r for r in subject.info.extra["conventions"]}
    assert rows["location_base"]["how"] == "detected" and "0 means padding" in rows["location_base"]["note"]
    assert "'logits' entry" in rows["output"]["note"]


def test_a_model_that_needs_wider_input_and_returns_sigmoid_outputs_is_probed():
    class Wide(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(84, 19)

        def forward(self, x, note_locations):
            return torch.sigmoid(self.fc(x).mean(1))

    subject = make_user_subject(Wide(), Adapter(), spec="w", variant="han-total", config=SMALL_CONFIG)
    c = subject.call.conventions
    assert (c.input, c.input_width, c.output) == ("padded", 84, "predictions")
    assert "79 columns are refused" in c.detected["input_width"]


def test_a_model_no_convention_fits_is_one_line():
    class Picky(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x, note_locations):
            raise TypeError("expects a dict batch")

    with pytest.raises(AdapterError, match="could not call the replica.*declare them in the adapter"):
        make_user_subject(Picky(), Adapter(), spec="p", variant="han-total", config=SMALL_CONFIG)


def test_a_model_failing_with_declared_conventions_names_its_line_not_a_declaration_to_add():
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x, note_locations):
            return x @ torch.zeros(3, 3)  # the user's own bug

    class Declared:
        input = "padded"

    with pytest.raises(AdapterError) as caught:
        make_user_subject(Broken(), Declared(), spec="b", variant="han-total", config=SMALL_CONFIG)
    message = str(caught.value)
    assert "test_calling_conventions.py:" in message and "in forward" in message
    assert "declared conventions (input" in message and "declare them" not in message


def test_the_bundled_replica_probes_to_the_original_conventions():
    subject = make_user_subject(build("han-total", SMALL_CONFIG), Adapter(), spec="r", variant="han-total",
                                config=SMALL_CONFIG)
    c = subject.call.conventions
    # its forward takes optional `lengths` (the note counts the voice and hierarchy code would otherwise derive
    # from the PackedSequence): a parameter named like one is passed
    assert (c.input, c.mask, c.lengths, c.output, dict(c.location_base)["beat"]) == ("packed", False, True,
                                                                                     "logits", 0)
    assert "does not change" in c.detected["location_base"]
