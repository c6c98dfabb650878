"""Diagnosis rules see only findings: synthetic findings in, explanations out.

Each pattern below is what the checks emit for one deviation (kinds, locations, metrics, evidence), written by
hand, so these tests pin the rules without running any model.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from percepiano_parity.commands.info import explain_text
from percepiano_parity.commands.waivers import Waiver, Waivers
from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.core.report import Explanation
from percepiano_parity.diagnosis import RULES, diagnose, rule_by_id
from percepiano_parity.diagnosis.rule import Rule, fill, placeholders
from percepiano_parity.subjects.deviations import DEVIATIONS

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO


def fwd(level: str, *, local: bool = True, pattern: dict | None = None, max_abs: float = 0.1,
        severity: Severity | None = None, padded: bool = False) -> Finding:
    inherited = not local
    return Finding("forward", "forward.mismatch", level, severity if severity is not None else (INFO if inherited else E),
                   f"level {level} differs", metrics={"max_abs": max_abs, "max_rel": max_abs},
                   evidence={"inherited": inherited, "local_exceeded": local, "local_available": True,
                             "pattern": pattern or {}, "padded_differs": padded})


def first_divergent(level: str, root: str | None = None) -> Finding:
    return Finding("forward", "forward.first_divergent", level, INFO, f"first divergent level: {level}",
                   evidence={"first_divergent_level": level, "root_level": root or level})


def consequences(root: str, after: tuple[str, ...] = ("logits",)) -> list[Finding]:
    """A root mismatch, inherited mismatches after it, the summary, the loss and one gradient."""
    return [fwd(root, max_abs=0.2), *(fwd(lv, local=False, max_abs=0.01) for lv in after), first_divergent(root),
            Finding("backward", "backward.loss", "loss", E, "loss differs", metrics={"max_abs": 1e-4}),
            Finding("backward", "backward.grad_mismatch", "out_fc.1.weight", E, "grad differs",
                    metrics={"max_abs": 1e-3})]


def pattern(**kw: object) -> dict:
    base = {"rows_bad": 10, "ref_zero_share": 0.0, "after_span_count_share": 0.0, "items_bad": 3,
            "first_group_share": 1.0, "first_row_share": 1.0, "longest_items_bad_share": 1.0,
            "shorter_items_bad_share": 1.0, "batches": 4, "batches_bad": 4, "batches_with_gap": 1,
            "bad_batches_with_gap_share": 0.25}
    base.update(kw)
    return base


def ids(explanations: list[Explanation]) -> list[str]:
    return [e.id for e in explanations]


def attention_padding(ref: float, cand: float, delta: float) -> Finding:
    return Finding("attention", "attention.entropy_shift", "attn.final", W, "entropy differs",
                   metrics={"heads_shifted": 8, "worst_head": 0, "worst_delta": delta},
                   evidence={"reference_padding_mass": ref, "candidate_padding_mass": cand})


def recipe(key: str, original: object, replica: object) -> Finding:
    return Finding("recipe", "recipe.mismatch", key, E, f"recipe {key} differs",
                   metrics={"original": original, "replica": replica},
                   evidence={"original": original, "replica": replica, "source": "train_m2pf.py:1"})


def trajectory(kind: str, first_step: int = 0) -> Finding:
    return Finding("trajectory", kind, "steps", E, f"{kind} differs",
                   metrics={"first_differing_step": first_step, "max_rel_diff": 0.5, "series": [kind]})


# -- one deviation, one explanation ------------------------------------------------------------------------

def extra_norm() -> list[Finding]:
    return [Finding("structure", "structure.extra_module", "level_patches.pooled", E, "extra LayerNorm",
                    evidence={"module": "level_patches.pooled", "module_type": "LayerNorm",
                              "module_settings": {"type": "LayerNorm", "normalized_shape": [512]}}),
            *consequences("pooled")]


def span_count() -> list[Finding]:
    p = pattern(ref_zero_share=1.0, after_span_count_share=1.0, first_group_share=0.0, first_row_share=0.0,
                longest_items_bad_share=0.25, shorter_items_bad_share=0.0, rows_bad=31, items_bad=1)
    out = consequences("beat_spanned", ("total_note_cat", "contracted", "pooled", "logits"))
    out[0] = fwd("beat_spanned", pattern=p, max_abs=0.25)
    return out


CASES: dict[str, tuple[list[Finding], str, str | None]] = {
    "extra norm": (extra_norm(), "PP-EXTRA-NORM", "pooled"),
    "span count quirk": (span_count(), "PP-SPAN-COUNT-QUIRK", "beat_spanned"),
    "span offset": ([fwd("beat_spanned", pattern=pattern(first_group_share=0.0, ref_zero_share=0.01)),
                     *consequences("beat_spanned")[1:]], "PP-SPAN-OFFSET", "beat_spanned"),
    "padded lstm": ([fwd("note", pattern=pattern(longest_items_bad_share=0.0, shorter_items_bad_share=1.0)),
                     Finding("forward", "forward.padding_mismatch", "embedding", W, "padding differs"),
                     *consequences("note")[1:]], "PP-PADDED-LSTM", "note"),
    "boundary rule": ([fwd("beat_nodes", pattern=pattern(batches=5, batches_bad=1, bad_batches_with_gap_share=1.0)),
                       *consequences("beat_nodes")[1:]], "PP-BOUNDARY-RULE", "beat_nodes"),
    "padding mask quirk": ([*consequences("pooled"), attention_padding(0.8, 0.0, -0.5)], "PP-PADDING-MASK-QUIRK",
                           "pooled"),
    "attention mask": ([*consequences("pooled"), attention_padding(0.0, 0.7, 0.4)], "PP-ATTENTION-MASK", "pooled"),
    "beat lstm": ([Finding("structure", "structure.setting", "score_encoder.beat_rnn", E, "beat_rnn differs",
                           evidence={"reference": {"type": "LSTM", "num_layers": 2, "dropout": 0.2},
                                     "candidate": {"type": "LSTM", "num_layers": 1, "dropout": 0.0},
                                     "changed": {"num_layers": [2, 1], "dropout": [0.2, 0.0]}, "level": "beat"}),
                   *consequences("beat", ("measure", "logits"))], "PP-BEAT-LSTM", "beat"),
    "dropout": ([Finding("structure", "structure.setting", "score_encoder.measure_rnn", E, "dropout",
                         evidence={"reference": {"type": "LSTM", "dropout": 0.0},
                                   "candidate": {"type": "LSTM", "dropout": 0.2},
                                   "changed": {"dropout": [0.0, 0.2]}})], "PP-DROPOUT", None),
    "custom init": ([Finding("init", "init.distribution", "out_fc.1.weight", W, "init differs",
                             metrics={"std_ratio": 3.4})], "PP-CUSTOM-INIT", None),
    "head width": ([Finding("structure", "structure.shape", "out_fc.1.weight", E, "shape",
                            evidence={"reference_shape": [512, 512], "candidate_shape": [128, 512]}),
                    Finding("structure", "structure.shape", "out_fc.4.weight", E, "shape",
                            evidence={"reference_shape": [19, 512], "candidate_shape": [19, 128]}),
                    Finding("init", "init.distribution", "out_fc.4.bias", W, "init", metrics={"std_ratio": 0.4}),
                    *consequences("logits", ())], "PP-HEAD-WIDTH", "logits"),
    "wrong baseline": ([Finding("structure", "structure.missing_parameter", "note_attention.context_vector", E, "m",
                                evidence={"module": "note_attention", "used_by_original": True}),
                        Finding("structure", "structure.extra_module", "performance_contractor", E, "x",
                                evidence={"module": "performance_contractor", "module_type": "Linear"}),
                        Finding("backward", "backward.grad_presence", "score_encoder.voice_net.weight_hh_l0", E, "g",
                                evidence={"side": "candidate"}),
                        *consequences("beat_spanned")], "PP-WRONG-BASELINE", "beat_spanned"),
    "learning rate": ([recipe("lr", 2.5e-5, 5e-5), trajectory("trajectory.lr"), trajectory("trajectory.drift")],
                      "PP-LEARNING-RATE", None),
    "scheduler": ([recipe("scheduler_interval", "iteration", "epoch"), trajectory("trajectory.lr", 2)],
                  "PP-SCHEDULER", None),
    "loss": ([recipe("loss", "mse_after_sigmoid", "bce_with_logits"), trajectory("trajectory.loss"),
              Finding("data", "data.loss", "loss", E, "loss op differs", metrics={"cases": 5, "differ": 5})],
             "PP-LOSS", None),
    "label file": ([recipe("label_file", "labels/x.json", "x.json"),
                    Finding("data", "data.label_file", "label_file", E, "label file differs",
                            evidence={"original": "labels/x.json", "replica": "x.json"})], "PP-LABEL-FILE", None),
    "slicing (data only)": ([Finding("data", "data.slicing", "regeneration", W, "slices fixed",
                                     evidence={"original": True, "replica": False})], "PP-SLICING", None),
    "lr from trajectory only": ([trajectory("trajectory.lr", 0)], "PP-LEARNING-RATE", None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_deviation_one_explanation(case: str) -> None:
    findings, expected, level = CASES[case]
    explanations, unexplained = diagnose(findings)
    assert ids(explanations) == [expected], (case, ids(explanations), unexplained)
    assert unexplained == []
    assert explanations[0].root_level == level
    # every significant finding is claimed by the one explanation
    significant = {f.key for f in findings if f.severity >= W}
    assert significant <= set(explanations[0].evidence)


def test_lookalikes_are_told_apart_only_by_evidence() -> None:
    """Same kinds and locations, different evidence: span count vs span offset vs unexplained."""
    base = consequences("beat_spanned")
    quirk = [fwd("beat_spanned", pattern=pattern(ref_zero_share=1.0, after_span_count_share=1.0,
                                                 first_group_share=0.0)), *base[1:]]
    offset = [fwd("beat_spanned", pattern=pattern(first_group_share=0.0)), *base[1:]]
    other = [fwd("beat_spanned", pattern=pattern(first_group_share=0.5)), *base[1:]]
    assert ids(diagnose(quirk)[0]) == ["PP-SPAN-COUNT-QUIRK"]
    assert ids(diagnose(offset)[0]) == ["PP-SPAN-OFFSET"]
    assert ids(diagnose(other)[0]) == ["PP-FORWARD-UNEXPLAINED-LEVEL"]


def test_unknown_pattern_gets_generic_explanation_naming_root_level() -> None:
    explanations, unexplained = diagnose(consequences("measure_nodes", ("measure", "logits")))
    assert ids(explanations) == ["PP-FORWARD-UNEXPLAINED-LEVEL"]
    assert "measure_nodes" in explanations[0].title
    assert explanations[0].root_level == "measure_nodes"
    assert unexplained == []


def test_unexplained_findings_are_reported() -> None:
    odd = Finding("structure", "structure.something_new", "x", E, "a finding no rule knows")
    info = Finding("structure", "structure.param_count", "total", INFO, "counts")
    explanations, unexplained = diagnose([odd, info])
    assert explanations == []
    assert unexplained == [odd.key]


def test_two_deviations_two_explanations_most_consequential_first() -> None:
    findings = extra_norm() + [recipe("grad_clip", 2.0, 1.0), trajectory("trajectory.grad_norm")]
    explanations, unexplained = diagnose(findings)
    assert sorted(ids(explanations)) == ["PP-EXTRA-NORM", "PP-GRAD-CLIP"]
    assert ids(explanations)[0] == "PP-EXTRA-NORM"  # more evidence first among equal severities
    assert unexplained == []


def test_generic_structure_rules_group_one_module() -> None:
    """An unknown module whose Linear changed size: missing, extra, shape and setting become one explanation."""
    module = "score_encoder.mystery"
    findings = [
        Finding("structure", "structure.missing_parameter", module + ".weight", E, "m",
                evidence={"module": module, "used_by_original": True}),
        Finding("structure", "structure.extra_module", module, E, "x", evidence={"module": module}),
        Finding("structure", "structure.shape", module + ".weight", E, "s",
                evidence={"reference_shape": [4, 4], "candidate_shape": [4, 8]}),
        Finding("structure", "structure.setting", module, E, "set", evidence={"changed": {"in_features": [4, 8]}}),
    ]
    explanations, unexplained = diagnose(findings)
    assert ids(explanations) == ["PP-SHAPE"]
    assert unexplained == []


def test_rules_see_only_findings_state_is_ignored() -> None:
    findings = span_count()
    a, _ = diagnose(findings)
    b, _ = diagnose(findings, state=object())
    assert ids(a) == ids(b)


def test_quirk_explanations_say_quirk_quantify_and_waivable() -> None:
    for findings, rule_id in ((span_count(), "PP-SPAN-COUNT-QUIRK"),
                              ([*consequences("pooled"), attention_padding(0.8, 0.0, -0.5)], "PP-PADDING-MASK-QUIRK")):
        explanations, _ = diagnose(findings)
        (e,) = explanations
        assert e.id == rule_id and e.quirk
        text = " ".join([e.original_does, e.replica_does, e.effect, e.fix])
        assert "original's" in text and "quirk" in text
        assert "waive" in text.lower()
        assert "0.01" in e.effect  # the measured logits change of the synthetic findings
        assert e.effect_measured["logits_max_abs"] == pytest.approx(0.01)
        # a waiver with the id marks it waived
        Waivers([Waiver(reason="we count notes correctly on purpose", id=rule_id)]).apply(explanations)
        assert e.waived


def test_measured_figures_fill_templates() -> None:
    (e,), _ = diagnose(span_count())
    assert "31 notes" in e.replica_does
    assert "n/a" not in e.effect


def test_every_deviation_has_a_rule_and_quirks_match() -> None:
    for dev in DEVIATIONS.values():
        rule = rule_by_id(dev.expected_explanation)
        assert rule is not None, dev.name
        assert rule.quirk == dev.quirk, dev.name


def test_rule_texts_are_valid_templates() -> None:
    ids_seen = set()
    for rule in RULES:
        assert rule.id not in ids_seen
        ids_seen.add(rule.id)
        assert re.fullmatch(r"PP-[A-Z0-9-]+", rule.id)
        for text in (rule.title, rule.original_does, rule.replica_does, rule.effect, rule.fix):
            assert text.strip()
            fill(text, {})  # no stray braces
            for name in placeholders(text):
                assert re.fullmatch(r"[a-z_]+", name), (rule.id, name)
        if rule.quirk:
            assert "waive" in (rule.effect + rule.fix).lower(), rule.id
    generic = [r for r in RULES if r.id in ("PP-EXTRA-MODULE", "PP-MISSING-MODULE", "PP-SHAPE", "PP-SETTING",
                                            "PP-FORWARD-UNEXPLAINED-LEVEL")]
    specific = [r for r in RULES if r.id in {d.expected_explanation for d in DEVIATIONS.values()}]
    assert len(generic) == 5
    assert max(r.priority for r in specific) < min(r.priority for r in generic)


def test_diagnosis_never_changes_severities() -> None:
    findings = extra_norm()
    before = [(f.key, f.severity) for f in findings]
    diagnose(findings)
    assert [(f.key, f.severity) for f in findings] == before


def test_explain_text_and_unknown_id() -> None:
    text = explain_text("PP-PADDING-MASK-QUIRK")
    for part in ("PP-PADDING-MASK-QUIRK", "severity: warning", "What the original does", "module.py",
                 "What the replica does", "Expected effect on training", "Fix", "waiv"):
        assert part in text, part
    assert explain_text("padded-lstm").startswith("PP-PADDED-LSTM")
    with pytest.raises(KeyError, match="PP-SPAN-COUNT-QUIRK"):
        explain_text("PP-SPAN-QUIRK")


def _original_root() -> Path | None:
    path = os.environ.get("PERCEPIANO_ORIGINAL")
    return Path(path) if path else None


@pytest.mark.original
@pytest.mark.skipif(_original_root() is None, reason="PERCEPIANO_ORIGINAL not set: the source references are "
                    "located in a checkout of the original PercePiano at run time")
@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_every_source_ref_matches_in_the_real_original(rule: Rule) -> None:
    root = _original_root()
    assert root is not None
    for ref in rule.refs:
        assert ref.locate(root), f"{rule.id}: no line of {ref.path} matches /{ref.pattern}/"
    located = explain_text(rule.id, root)
    assert "no line matches" not in located
