"""Parameters set directly on a replica's model (outside any submodule) are named one by one, never as a module
'' with an empty name in the report's titles; the remove-module fix leaves them alone."""

from __future__ import annotations

import torch
from torch import nn

from percepiano_parity.batches.synthetic import generate_batches
from percepiano_parity.checks import run_model_checks
from percepiano_parity.compare.engine import Engine
from percepiano_parity.compare.noise import Tolerances
from percepiano_parity.diagnosis import diagnose
from percepiano_parity.diagnosis.fixes import apply_fix
from percepiano_parity.replica import SMALL_CONFIG, build
from percepiano_parity.subjects.replica_subject import ReplicaSubject
from percepiano_parity.subjects.subject import SubjectInfo


def test_loose_parameters_are_named_and_explained_without_an_empty_name():
    candidate_model = build("han-total", SMALL_CONFIG, seed=0)
    candidate_model.beat_q = nn.Parameter(torch.zeros(8, 4))
    reference = ReplicaSubject(build("han-total", SMALL_CONFIG, seed=0), SubjectInfo("original", "x", "han-total"))
    candidate = ReplicaSubject(candidate_model, SubjectInfo("replica", "x", "han-total"))
    batches = generate_batches(1, 0, batch_size=3, config=SMALL_CONFIG, max_notes=16, include_edge_cases=False)
    state = Engine(reference, candidate, variant="han-total", config=SMALL_CONFIG).run(batches)
    findings = [f for c in run_model_checks(state, Tolerances()) for f in c.findings]
    (extra,) = [f for f in findings if f.kind == "structure.extra_module"]
    assert extra.location == "beat_q" and extra.evidence["on_model_root"] is True
    assert "parameters set directly on the model (beat_q)" in extra.message and "''" not in extra.message
    explanations, _ = diagnose(findings)
    (exp,) = [e for e in explanations if e.id == "PP-EXTRA-MODULE"]
    assert "(beat_q)" in exp.title and "()" not in exp.title and exp.replica_does == "Adds beat_q."
    assert apply_fix("remove_module", candidate_model, [extra]) is None  # nothing a module removal could do
