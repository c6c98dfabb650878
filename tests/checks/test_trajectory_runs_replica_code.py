"""The trajectory steps the replica's own training code: its loss (training_step), called through its adapter's
forward, with randomness switched off in any module (functional dropout in a hand-written cell included) and
randomness it cannot switch off reported as such; its probe batches have unequal lengths, and every finding
says whether the eval-mode forward already differed before training."""

from __future__ import annotations

import pytest
import torch
from lightning_variants import (
    EXAMPLE_PAIRING,
    build_functional_head_dropout,
    build_hand_cell_notes,
    build_noisy_logits,
    build_sorted_labels,
    build_sum_loss,
    build_takes_batch,
)

from percepiano_parity.batches.synthetic import generate_batches
from percepiano_parity.checks import recipe as recipe_check
from percepiano_parity.checks import trajectory
from percepiano_parity.compare.engine import Engine
from percepiano_parity.core.config import SMALL_CONFIG
from percepiano_parity.core.findings import Severity
from percepiano_parity.diagnosis import diagnose
from percepiano_parity.replica.variants import build
from percepiano_parity.subjects.calling import forward, model_input, no_randomness, without_dropout
from percepiano_parity.subjects.replica_subject import ReplicaSubject
from percepiano_parity.subjects.subject import SubjectInfo
from percepiano_parity.subjects.user_subject import make_user_subject, resolve_mapping

VARIANT = "han-total"


@pytest.fixture(scope="module")
def reference():
    return trajectory.reference_run(VARIANT, SMALL_CONFIG)


def _run(reference, factory, *, adapter_forward=True):
    torch.manual_seed(7)
    model, adapter = factory(config=SMALL_CONFIG)
    inputs = [model_input(model, b) for b in reference.batches[:2]]
    candidate = recipe_check.read_candidate(model, model=model, adapter=adapter, inputs=inputs)
    overrides = resolve_mapping(adapter, reference.start_model, model) or \
        resolve_mapping(_Pairing(), reference.start_model, model)
    return trajectory.run(candidate, VARIANT, candidate_model=model, adapter=adapter if adapter_forward else None,
                          overrides=overrides, reference=reference)


class _Pairing:
    mapping = EXAMPLE_PAIRING


def test_the_engine_pairs_the_worked_example_as_the_direct_runs_here_do():
    model, adapter = build_hand_cell_notes(config=SMALL_CONFIG)
    reference = ReplicaSubject(build(VARIANT, SMALL_CONFIG, seed=7), SubjectInfo(name="original", kind="fake", variant=VARIANT))
    candidate = make_user_subject(model, adapter, spec="hand-cell", variant=VARIANT, config=SMALL_CONFIG)
    engine = Engine(reference, candidate, variant=VARIANT, config=SMALL_CONFIG)
    engine.prepare(generate_batches(1, 7, batch_size=3, config=SMALL_CONFIG, max_notes=24, include_edge_cases=False)[0])
    expected = resolve_mapping(_Pairing(), reference.model, model)
    assert engine.state.weight_map.pairs == expected


def _significant(result):
    return [f for f in result.findings if f.severity >= Severity.WARNING]


def _summary(result):
    return next(f for f in result.findings if f.kind == "trajectory.summary")


def test_the_probe_batches_have_unequal_lengths(reference):
    for batch in reference.batches:
        lengths = [len(s.beat) for s in batch.segments]
        assert len(set(lengths)) == len(lengths)
    assert len({[len(s.beat) for s in b.segments].index(reference.probe.max_notes) for b in reference.batches}) > 1


def test_the_replicas_own_loss_is_what_steps_it(reference):
    result = _run(reference, build_sum_loss)
    ref_loss, cand_loss = trajectory.series_of(result, "loss")
    # same weights, same batch: at step 0 the summed loss is the mean times 4 items x 19 labels (float32)
    assert cand_loss[0] / ref_loss[0] == pytest.approx(4 * 19, rel=1e-5)
    assert {"trajectory.loss", "trajectory.grad_norm"} <= {f.kind for f in _significant(result)}
    assert "with its own loss (SumLoss.training_step)" in _summary(result).evidence["candidate"]["description"]
    assert _summary(result).metrics["forward_differs"] is False


def test_the_model_is_called_through_the_adapters_forward(reference):
    assert not _significant(_run(reference, build_takes_batch))
    # called directly (model(x, note_locations)) the same model cannot even run
    direct = _run(reference, build_takes_batch, adapter_forward=False)
    (error,) = [f for f in direct.findings if f.kind == "trajectory.error"]
    assert "TypeError" in error.message and "after 0 steps" in error.message


def test_a_hand_written_lstm_cell_with_its_own_dropout_is_not_flagged(reference):
    result = _run(reference, build_hand_cell_notes)
    assert _significant(result) == [], [f.message for f in _significant(result)]
    assert _summary(result).metrics["forward_differs"] is False
    # the control is real: its functional dropout is active in training mode until switched off
    model, adapter = build_hand_cell_notes(config=SMALL_CONFIG)
    clone, inp = without_dropout(model), model_input(model, reference.batches[0])
    with torch.no_grad():
        assert not torch.equal(forward(adapter, clone, inp), forward(adapter, clone, inp))
        with no_randomness():
            assert torch.equal(forward(adapter, clone, inp), forward(adapter, clone, inp))


def test_functional_dropout_in_eval_leaves_training_alone_but_flags_the_forward(reference):
    result = _run(reference, build_functional_head_dropout)
    assert _significant(result) == []
    summary = _summary(result)
    assert summary.metrics["forward_differs"] is True and summary.metrics["forward_max_abs"] > 1e-5


def test_randomness_the_tool_cannot_switch_off_is_reported_and_explained(reference):
    result = _run(reference, build_noisy_logits)
    (randomness,) = [f for f in result.findings if f.kind == "trajectory.randomness"]
    assert randomness.severity == Severity.WARNING and randomness.metrics["max_rel"] > 1e-6
    assert all(f.evidence["candidate_random"] for f in _significant(result))
    explanations, unexplained = diagnose(result.findings)
    assert [e.id for e in explanations] == ["PP-TRAINING-RANDOMNESS"] and unexplained == []
    assert "n/a" not in explanations[0].replica_does + explanations[0].effect


def test_a_length_dependent_training_mistake_is_caught(reference):
    """Logits paired with labels in length-sorted order: invisible with equal lengths (the sort is the
    identity), caught from the first step with the probe's unequal lengths."""
    result = _run(reference, build_sorted_labels)
    loss = next(f for f in result.findings if f.kind == "trajectory.loss")
    assert loss.metrics["first_differing_step"] == 0 and loss.metrics["forward_differs"] is False
    batch = model_input(reference.start_model, reference.batches[0])
    assert not torch.equal(batch.lengths.argsort(descending=True, stable=True), torch.arange(len(batch.lengths)))
