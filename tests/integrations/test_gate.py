"""`percepiano_parity.gate` (also `parity.gate`) for plain training loops, and the figures a training log keeps.

Against the shipped han-total bundle, one batch, model checks only: the faithful bundled replica passes the
gate, the library's LayerNorm deviation stops it with one line naming the cause and the report.
"""

from __future__ import annotations

import importlib
import random
import warnings

import numpy as np
import pytest
import torch
from reports_fixture import make_report

import percepiano_parity
from percepiano_parity.core.config import SMALL_CONFIG
from percepiano_parity.core.errors import UsageError
from percepiano_parity.core.findings import Severity
from percepiano_parity.integrations import ParityMismatchError, gate, headline, mismatch_line
from percepiano_parity.replica.variants import build
from percepiano_parity.subjects.deviations import get_deviation

FAST = {"training_checks": False}  # the bundle fixes the batches (2) and the seed
SEED = 7  # the shipped bundle's seed


@pytest.fixture(autouse=True)
def _no_live_original(monkeypatch, tmp_path):
    monkeypatch.delenv("PERCEPIANO_ORIGINAL", raising=False)
    monkeypatch.chdir(tmp_path)  # no [tool.parity] of the project is read


def test_the_top_level_names_are_the_gate_module_s():
    assert percepiano_parity.gate is gate
    assert percepiano_parity.ParityMismatchError is ParityMismatchError


def test_faithful_model_passes_and_the_training_run_is_left_as_it_was(tmp_path):
    model = build("han-total", SMALL_CONFIG, seed=SEED)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    torch.manual_seed(123), np.random.seed(5), random.seed(9)
    expected = (torch.rand(3), np.random.rand(2), random.random())
    torch.manual_seed(123), np.random.seed(5), random.seed(9)
    lines: list[str] = []
    report = gate(model, report_dir=tmp_path / "out", initial_weights=True, progress=lines.append, **FAST)
    after = (torch.rand(3), np.random.rand(2), random.random())

    assert report.verdict(Severity.WARNING) == "equivalent"
    assert report.check("init").status == "passed"  # initial_weights=True: compared with the seed's
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["junit.xml", "report.html", "report.json",
                                                                   "report.md"]
    assert lines[0] == "loading the reference" and any(line.startswith("comparing batches") for line in lines)
    # the random streams go on as if the audit had not run; the model is untouched and still training
    assert torch.equal(expected[0], after[0]) and np.array_equal(expected[1], after[1]) and expected[2] == after[2]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and model.training


def test_deviation_raises_with_one_line_and_the_report_path(tmp_path):
    model = get_deviation("layernorm-han-output").build_candidate(SMALL_CONFIG, seed=SEED)
    with pytest.raises(ParityMismatchError) as caught:
        gate(model, report_dir=tmp_path / "out", **FAST)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("parity: MISMATCH han-total at or above warning; PP-EXTRA-NORM (error) at "
                              "total_note_cat")
    assert message.endswith(f"report: {tmp_path / 'out' / 'report.md'}")
    assert caught.value.report.check("init").status == "skipped"  # a given model's weights need not be fresh
    assert "initial_weights=True" in caught.value.report.check("init").reason


def test_warn_only_returns_the_report_with_the_same_line(monkeypatch):
    """on_mismatch="warn" (the branch only: the audit itself is the one of the test above)."""
    gate_module = importlib.import_module("percepiano_parity.integrations.gate")  # the module, not the function

    report = make_report()
    result = gate_module.GateResult(report, "warning", mismatch="parity: MISMATCH han_note ...; report: x")
    monkeypatch.setattr(gate_module, "audit_model", lambda *args, **kwargs: result)
    with pytest.warns(UserWarning, match="parity: MISMATCH han_note"):
        assert gate(build("han-total", SMALL_CONFIG), on_mismatch="warn") is report
    with pytest.raises(ParityMismatchError, match="parity: MISMATCH han_note"):
        gate(build("han-total", SMALL_CONFIG))


def test_gate_refuses_bad_input_with_one_line():
    model = build("han-total", SMALL_CONFIG, seed=SEED)
    cases = [
        (lambda: gate("not a model"), "expected the model to audit"),
        (lambda: gate(model, deviation="layernorm-han-output"), "deviation= does not apply"),
        (lambda: gate(model, batches=0), "--batches"),
        (lambda: gate(model, on_mismatch="ignore"), "on_mismatch"),
        (lambda: gate(model, reference="/nonexistent/bundle", **FAST), "/nonexistent/bundle"),
    ]
    for call, expected in cases:
        with pytest.raises(UsageError) as caught, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call()
        assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_headline_figures_and_mismatch_line_of_a_report():
    report = make_report()
    figures = headline(report, "warning")
    assert figures["parity/equivalent"] == 0.0
    assert figures["parity/blocking_findings"] == float(len(report.blocking(Severity.WARNING)))
    assert figures["parity/explanations"] == 2.0
    assert figures["parity/checks_failed"] == 3.0
    assert figures["parity/worst_level_rel_error"] == float("inf")  # a level with a non-finite error
    line = mismatch_line(report, Severity.WARNING, "out/report.md")
    assert line.startswith("parity: MISMATCH han_note at or above warning; PP-LAYERNORM-OUTPUT (error) at beat")
    assert line.endswith("report: out/report.md") and "\n" not in line
