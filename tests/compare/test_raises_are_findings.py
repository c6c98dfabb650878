"""A batch one side raises on is a finding, and the audit goes on with the other batches and writes its report.

Two one-place changes of the worked example (docs/lightning_example.py), written here: one raises on batches whose
beat numbers do not start at 0 (the original runs them), one clamps the beat and measure span index into range
(where the original raises IndexError on the edge batches `batches.synthetic.RAISING_EDGE_TAGS`). The faithful
example raises alike there: agreement, said in information findings.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from percepiano_parity.batches.synthetic import RAISING_EDGE_TAGS
from percepiano_parity.commands.check import run_check
from percepiano_parity.commands.options import resolve_options
from percepiano_parity.core.findings import Severity
from percepiano_parity.replica.hierarchy import span_note_counts

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "lightning_example.py"
_spec = importlib.util.spec_from_file_location("lightning_example_for_raises", EXAMPLE)
ex = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = ex
_spec.loader.exec_module(ex)


class StartsAtZero(ex.PercePianoLit):
    """Assumes every item's beats start at 0 (the original zero-shifts them and runs any offset)."""

    def forward(self, x, note_locations):
        if int(note_locations["beat"][:, 0].max()) != 0:
            raise ValueError("beat numbers must start at 0")
        return super().forward(x, note_locations)


class ClampedSpan(nn.Module):
    """The original's span (negative indices wrap), but an index past the last node is clamped, not raised."""

    def forward(self, nodes: Tensor, numbers: Tensor) -> Tensor:
        n, length = numbers.shape
        counts = span_note_counts(numbers)
        index = numbers - numbers[:, :1]
        index = torch.where(index < 0, index + nodes.shape[1], index).clamp(0, nodes.shape[1] - 1)
        active = torch.arange(length).unsqueeze(0) < counts.unsqueeze(1)
        gathered = torch.gather(nodes, 1, index.unsqueeze(-1).expand(n, length, nodes.shape[2]))
        return gathered * active.unsqueeze(-1).to(nodes.dtype)


def build_raises(variant="han-total", config=None):
    return StartsAtZero(config or ex.DEFAULT_CONFIG), ex.LitAdapter()


def build_clamps(variant="han-total", config=None):
    model = ex.PercePianoLit(config or ex.DEFAULT_CONFIG)
    model.beat_span, model.measure_span = ClampedSpan(), ClampedSpan()
    return model, ex.LitAdapter()


def audit(original, factory: str, **extra):
    options = {"replica": factory, "original": str(original.root), "model_config": "small", "batches": 1,
               "max_notes": 24, "training_checks": False, **extra}
    return run_check(resolve_options(options, use_config_file=False, environ={}))


def kinds(report, kind):
    return [f for f in report.findings if f.kind == kind]


@pytest.mark.original
def test_a_replica_raising_where_the_original_runs_is_explained_and_the_rest_compared(original):
    report = audit(original, f"{__file__}:build_raises")
    raised = kinds(report, "forward.replica_raises")
    assert raised and all(f.severity == Severity.ERROR for f in raised)
    tags = {t for f in raised for t in f.evidence["tags"]}
    assert "edge:beats-not-starting-at-0" in tags and "normal" not in tags
    failure = raised[0].evidence["candidate"]
    assert failure["type"] == "ValueError" and failure["message"] == "beat numbers must start at 0"
    assert "test_raises_are_findings.py:" in failure["where"] and failure["users_code"]
    assert report.verdict(Severity.WARNING) == "mismatch"
    (exp,) = [e for e in report.explanations if e.severity >= Severity.WARNING]
    assert exp.id == "PP-RAISES" and "ValueError" in exp.title
    assert "test_raises_are_findings.py:" in exp.replica_does
    # the other batches were compared: levels folded, nothing else differs
    assert report.check("forward").tables["levels"] and not report.unexplained


@pytest.mark.slow
@pytest.mark.original
def test_the_report_is_written_and_the_exit_code_is_1(original, tmp_path, monkeypatch, capsys):
    from percepiano_parity.commands.cli import main

    monkeypatch.delenv("PERCEPIANO_ORIGINAL", raising=False)
    out = tmp_path / "report"
    code = main(["check", "--replica", f"{__file__}:build_raises", "--original", str(original.root),
                 "--model-config", "small", "--batches", "1", "--max-notes", "24", "--no-training-checks",
                 "--report-dir", str(out)])
    capsys.readouterr()
    assert code == 1
    data = json.loads((out / "report.json").read_text())
    assert [e["id"] for e in data["explanations"] if e["severity"] != "info"] == ["PP-RAISES"]


@pytest.mark.original
def test_a_replica_that_clamps_where_the_original_raises_is_told_so(original):
    report = audit(original, f"{__file__}:build_clamps")
    told = kinds(report, "forward.original_raises")
    assert {f.evidence["tags"][0] for f in told} == set(RAISING_EDGE_TAGS[:2])
    for f in told:
        assert f.evidence["reference"]["type"] == "IndexError"
        assert "the original raises IndexError" in f.message and "the replica returns values (it clamps" in f.message
        clamp = f.evidence["candidate_clamps"][0]
        assert clamp["integer"] and clamp["changed"] > 0 and "test_raises_are_findings.py:" in clamp["where"]
    (exp,) = [e for e in report.explanations if e.severity >= Severity.WARNING]
    assert exp.id == "PP-RAISES-ORIGINAL-ONLY" and "IndexError" in exp.title
    assert "it clamps" in exp.replica_does
    assert any(ref.startswith("virtuoso/virtuoso/") for ref in exp.original_refs), exp.original_refs
    # the length-1-only batch: both raise IndexError (the replica through the span count), agreement
    alike = kinds(report, "forward.raises_alike")
    assert [f.evidence["tags"][0] for f in alike] == [RAISING_EDGE_TAGS[2]]
    assert report.verdict(Severity.WARNING) == "mismatch"
    # the forward check's table: one row per batch a side raised on, what each side did
    rows = {r["tags"]: r for r in report.check("forward").tables["raised_batches"]}
    assert set(rows) == set(RAISING_EDGE_TAGS)
    assert rows[RAISING_EDGE_TAGS[0]]["replica"] == "returns values"
    assert rows[RAISING_EDGE_TAGS[0]]["original"].startswith("IndexError: ")
    assert rows[RAISING_EDGE_TAGS[2]]["outcome"] == "both raise alike"


@pytest.mark.original
def test_the_faithful_example_raises_alike_where_the_original_raises(original):
    report = audit(original, f"{EXAMPLE}:build")
    assert report.verdict(Severity.WARNING) == "equivalent", [f.key for f in report.blocking(Severity.WARNING)]
    alike = kinds(report, "forward.raises_alike")
    assert [f.evidence["tags"][0] for f in alike] == list(RAISING_EDGE_TAGS)
    for f in alike:
        assert f.severity == Severity.INFO and f.evidence["outcome"] == "both_raise_alike"
        assert f.evidence["reference"]["kind"] == f.evidence["candidate"]["kind"] == "IndexError"
        assert f.evidence["candidate"]["type"] == "HierarchyError"  # it stands for the original's IndexError
        assert f.message.count("raises IndexError") == 1, f.message  # said once, in the replica's own words


def test_without_the_original_the_faithful_replica_stands_in_and_the_clamps_are_told():
    """The same mechanism with the faithful replica as the reference (no checkout needed): its HierarchyError
    stands for the original's IndexError, so the clamping replica is told where the original would raise."""
    from percepiano_parity.batches.synthetic import generate_batches, raising_edge_cases
    from percepiano_parity.commands.audit import AuditSettings, audit
    from percepiano_parity.commands.selftest import faithful_reference
    from percepiano_parity.compare.engine import EngineOptions
    from percepiano_parity.core.config import SMALL_CONFIG
    from percepiano_parity.subjects.user_subject import make_user_subject

    config = SMALL_CONFIG
    batches = (generate_batches(1, 0, batch_size=2, config=config, max_notes=24, include_edge_cases=False)
               + raising_edge_cases(0, config, max_notes=24))
    model, adapter = build_clamps(config=config)
    candidate = make_user_subject(model, adapter, spec="clamps", variant="han-total", config=config)
    report, state = audit(faithful_reference("han-total", config, 0), candidate, batches,
                          AuditSettings(variant="han-total", config=config, seed=0,
                                        engine=EngineOptions(init_check=False)),  # not built with its seed
                          verify_fixes=False)
    assert state.batches == 1  # the batch both run on was compared
    outcomes = {entry["tags"][0]: entry["outcome"] for entry in state.raised}
    assert outcomes == {RAISING_EDGE_TAGS[0]: "original_raises", RAISING_EDGE_TAGS[1]: "original_raises",
                        RAISING_EDGE_TAGS[2]: "both_raise_alike"}
    for entry in state.raised[:2]:
        assert entry["reference"]["type"] == "HierarchyError" and entry["reference"]["kind"] == "IndexError"
        assert entry["candidate"] is None and entry["candidate_clamps"][0]["changed"] > 0
    assert [e.id for e in report.explanations if e.severity >= Severity.WARNING] == ["PP-RAISES-ORIGINAL-ONLY"]
