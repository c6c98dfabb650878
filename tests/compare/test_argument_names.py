"""A method call and a function call name their arguments alike (`x.softmax(-1)` and `torch.softmax(x, dim=1)`
differ in `dim`, not in "1=-1 vs dim=None"), and a named constant replaces the positional value it names."""

from __future__ import annotations

import torch

from percepiano_parity.compare.first_op import place_constants, tracing


def test_positional_and_keyword_arguments_get_the_same_name():
    x = torch.randn(2, 3, 4)
    with tracing() as trace:
        x.softmax(-1)
        torch.softmax(x, dim=1)
    method, function = [op for op in trace.ops if op.name == "softmax"]
    assert method.constants == {"dim": -1}
    assert function.constants == {"dim": 1}


def test_a_named_constant_replaces_the_positional_value():
    x = torch.randn(2, 3, 4)
    args, kwargs = [x, -1], {}
    place_constants(torch.Tensor.softmax, args, kwargs, {"dim": 1})
    assert args == [x, 1] and kwargs == {}
    assert torch.equal(torch.Tensor.softmax(*args, **kwargs), torch.softmax(x, dim=1))
