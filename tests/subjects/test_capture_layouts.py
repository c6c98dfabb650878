"""Recording a user's forward (every tensor, with its operation, module and source line) and bringing a level kept
in a replica's own layout back to the tool's; the private copy keeps the user's hooks recording."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from percepiano_parity.subjects.calling import invoke
from percepiano_parity.subjects.level_sites import Counts, Layout, LevelSite, SiteTap, row_at, to_canonical
from percepiano_parity.subjects.recording import private_copy, recording

COUNTS = torch.tensor([5, 3, 4])


def level() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 6, generator=g)
    return x * (torch.arange(5).unsqueeze(0) < COUNTS.unsqueeze(1)).unsqueeze(-1)


def counts() -> Counts:
    return Counts(3, {"note": COUNTS, "beat": COUNTS})


def test_every_layout_comes_back_to_the_tools():
    ref = level()
    real = torch.arange(5).unsqueeze(0) < COUNTS.unsqueeze(1)
    padded_more = torch.cat([ref, torch.full((3, 4, 6), -7.0)], dim=1)  # other padding value and count
    packed = pack_padded_sequence(ref, COUNTS, batch_first=True, enforce_sorted=False).data
    rows = torch.cat([ref[i, : int(c)] for i, c in enumerate(COUNTS)])
    wide = torch.cat([torch.ones(3, 5, 2), ref, torch.zeros(3, 5, 3)], dim=-1)
    cases = [(padded_more, Layout("batch_first", "beat")), (ref.transpose(0, 1), Layout("time_first", "beat")),
             (packed, Layout("packed", "beat")), (rows, Layout("rows", "beat")),
             (wide, Layout("batch_first", "beat", offset=2, width=6)),
             (ref.transpose(1, 2).unsqueeze(-1), Layout("batch_first", "beat", squeeze=1, transpose=True))]
    for tensor, layout in cases:
        got = to_canonical(tensor, layout, counts())
        assert got is not None and got.shape == ref.shape, layout
        assert torch.equal(got[real], ref[real]) and bool((got[~real] == 0).all()), layout
        assert torch.equal(row_at(tensor, layout, counts(), 2, 3)[layout.offset:layout.offset + 6], ref[2, 3])
    assert to_canonical(rows[:-1], Layout("rows", "beat"), counts()) is None  # does not fit this batch


def test_note_space_keeps_the_replicas_own_padding():
    ref = level() + 5.0
    got = to_canonical(ref, Layout("batch_first", "note"), counts())
    assert torch.equal(got, ref)


class Loopy(nn.Module):
    """A level computed in a plain function, per item, into a preallocated buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        buffer = x.new_zeros(x.shape[0], x.shape[1], 8)
        fill(buffer[..., 2:], self.proj(x))
        return per_item(buffer)


def fill(out: torch.Tensor, values: torch.Tensor) -> None:
    for i in range(values.shape[0]):
        out[i] = torch.tanh(values[i])


def per_item(buffer: torch.Tensor) -> torch.Tensor:
    return torch.stack([buffer[i].sum(0) for i in range(buffer.shape[0])])


def test_the_recording_has_sites_with_source_lines_callers_and_in_place_buffers():
    model = Loopy()
    x = torch.randn(3, 5, 4)
    with torch.no_grad(), recording(model) as rec:
        invoke(model, x)  # the tool calls every user model here; the sites' caller chains stop at it
    by_op = {}
    for r in rec.records:
        by_op.setdefault((r.site.op, r.role), []).append(r)
    linear = by_op[("linear", "output")][0]
    assert linear.site.module == "proj" and linear.site.file == __file__ and linear.site.function == "forward"
    tanh = by_op[("tanh", "output")]
    assert [r.occurrence for r in tanh] == [0, 1, 2] and tanh[0].site.function == "fill"
    assert tanh[0].site.callers and tanh[0].site.callers[0].startswith(__file__)
    # the buffer, written in place through a view, is recorded when it is next read
    buffer_reads = [r for r in rec.records if r.role.startswith("input") and r.tensor.shape == (3, 5, 8)]
    assert buffer_reads and buffer_reads[0].site.function == "per_item"
    assert torch.allclose(buffer_reads[0].tensor[..., 2:], torch.tanh(model.proj(x)))
    assert not linear.stale


def test_a_site_tap_records_all_occurrences_of_a_loop_concatenated():
    model = Loopy()
    x = torch.randn(3, 5, 4)
    with torch.no_grad(), recording(model) as rec:
        invoke(model, x)
    tanh = next(r for r in rec.records if r.site.op == "tanh")
    site = LevelSite("voice", tanh.site, tanh.role, 0, 3, True, Layout("rows", "note"), True, 0.0)
    tap = SiteTap([site])
    with torch.no_grad(), tap.recording(model):
        invoke(model, x)
    got = tap.levels(Counts(3, {"note": torch.tensor([5, 5, 5])}))["voice"]
    assert torch.allclose(got, torch.tanh(model.proj(x)))


def test_the_private_copy_keeps_user_hooks_and_taps_recording():
    class Tapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 2)
            self.taps: dict[str, torch.Tensor] = {}
            self.fc.register_forward_hook(self._save)

        def _save(self, module, inputs, output):
            self.taps["fc"] = output

        def forward(self, x):
            return self.fc(x)

    model = Tapped()
    seen = []
    model.fc.register_forward_hook(lambda m, i, o: seen.append(o))
    copy = private_copy(model)
    with torch.no_grad():
        copy.fc.weight.zero_()
    copy(torch.ones(1, 2))
    assert "fc" in model.taps and len(seen) == 1  # recorded where the user reads them
    assert copy.fc.weight is not model.fc.weight and bool(model.fc.weight.abs().sum() > 0)
