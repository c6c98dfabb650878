"""A hand-built Report for the writer tests: every severity, a skipped check, the four known tables,
two explanations (one waived), drift and noise floors."""

from __future__ import annotations

from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.core.report import CheckResult, Explanation, Report

LN_ERROR = Finding(
    "forward", "forward.mismatch", "beat", Severity.ERROR,
    "Tensors are not close! Mismatched elements: 812 / 4096 (19.8%); greatest relative difference 0.031 "
    "at (0, 3, 17) (up to 1e-05 allowed)",
    metrics={"max_rel": 0.031, "max_abs": 0.0042}, evidence={"shape": [2, 16, 64]},
)
MEASURE_ERROR = Finding(
    "forward", "forward.mismatch", "measure", Severity.ERROR,
    "Tensors are not close! greatest relative difference 0.05 (up to 1e-05 allowed)",
    metrics={"max_rel": 0.05},
)
GRAD_WARNING = Finding(
    "backward", "backward.mismatch", "note_fc.weight", Severity.WARNING,
    "gradient differs: greatest relative difference 2.1e-04 (up to 1e-05 allowed)",
    metrics={"max_rel": 2.1e-4, "nan_seen": float("nan"), "ratio": float("inf")},
)
SCRIPT_INFO = Finding(
    "attention", "attention.entropy", "attn.beat", Severity.INFO,
    "head 2 entropy <script>alert('x')</script> differs & more",
)
STRUCT_WARNING = Finding(
    "structure", "structure.extra_module", "performance_contractor", Severity.WARNING,
    "extra in replica: performance_contractor | missing in original",
)
DROPOUT_WARNING = Finding(
    "recipe", "recipe.value", "dropout", Severity.WARNING, "dropout 0.1 in original, 0.2 in replica",
)

LEVEL_ROWS = [
    {"level": "embedding", "space": "note", "max_abs": 0.0, "max_rel": 0.0, "cosine": 1.0, "beyond_tol": 0,
     "pad_max_abs": 0.0, "local_max_rel": 0.0, "cumulative_max_rel": 0.0, "floor": 1e-7, "floor_rel": 2e-7, "tolerance": 1e-5,
     "tolerance_rel": 1e-6, "status": "ok"},
    {"level": "note", "space": "note", "max_abs": 2.1e-7, "max_rel": 3.1e-7, "cosine": 0.9999999997,
     "beyond_tol": 0, "pad_max_abs": 0.0, "local_max_rel": 3.1e-7, "cumulative_max_rel": 3.1e-7,
     "floor": 1e-7, "floor_rel": 2e-7, "tolerance": 1e-5, "tolerance_rel": 1e-6, "status": "ok"},
    {"level": "beat", "space": "beat", "max_abs": 0.0042, "max_rel": 0.031, "cosine": 0.9991, "beyond_tol": 812,
     "pad_max_abs": None, "local_max_rel": 0.03, "cumulative_max_rel": 0.031, "floor": 1e-7,
     "floor_rel": 3e-7, "tolerance": 1e-5, "tolerance_rel": 1.5e-6, "status": "fail"},
    {"level": "measure", "space": "measure", "max_abs": 0.01, "max_rel": 0.05, "cosine": 0.998,
     "beyond_tol": 100, "local_max_rel": 1e-7, "cumulative_max_rel": 0.05, "tolerance": 1e-5,
     "status": "fail"},
    {"level": "logits", "space": "pooled", "max_abs": float("inf"), "max_rel": float("nan"), "status": "fail"},
]
HEAD_ROWS = [
    {"module": "attn.beat", "head": h, "original_mean": 1.2 + h / 10, "replica_mean": 1.2 + h / 10 + (0.5 if h == 2 else 0),
     "original_min": 0.9, "original_max": 1.6, "replica_min": 0.9, "replica_max": 2.1,
     "flag": "entropy differs" if h == 2 else None}
    for h in range(4)
] + [{"module": "attn.final", "head": 0, "original_mean": 2.0, "replica_mean": 2.0}]
PARAM_ROWS = [
    {"param": f"encoder.layers.{i}.weight_ih_l0", "max_abs": 1e-8 * (i + 1), "max_rel": 1e-7 * (i + 1),
     "cosine": 1.0, "floor": 1e-7, "status": "ok"}
    for i in range(45)
] + [{"param": "note_fc.weight", "max_abs": 1e-5, "max_rel": 2.1e-4, "cosine": 0.9999, "floor": 1e-7,
      "status": "fail"}]
DIFF_ROWS = [
    {"path": "performance_contractor", "original": None, "replica": "Linear(512, 256)"},
    {"path": "note_fc.weight", "original": "(64, 32)", "replica": "(64, 32)"},
]


def make_report(*, run: dict | None = None) -> Report:
    checks = [
        CheckResult("structure", "failed", [STRUCT_WARNING], tables={"diff": DIFF_ROWS}),
        CheckResult("init", "passed"),
        CheckResult("forward", "failed", [LN_ERROR, MEASURE_ERROR], tables={"levels": LEVEL_ROWS}),
        CheckResult("backward", "failed", [GRAD_WARNING], tables={"params": PARAM_ROWS}),
        CheckResult("attention", "passed", [SCRIPT_INFO], tables={"heads": HEAD_ROWS}),
        CheckResult("recipe", "waived", [DROPOUT_WARNING],
                    tables={"values": [{"key": "dropout", "original": 0.1, "replica": 0.2}]}),
        CheckResult("trajectory", "skipped", reason="needs --train-steps > 0"),
    ]
    explanations = [
        Explanation(
            id="PP-DROPOUT", title="Replica uses a different dropout", severity=Severity.WARNING,
            original_does="dropout 0.1", replica_does="dropout 0.2", effect="training noise only",
            fix="set dropout=0.1", evidence=[DROPOUT_WARNING.key], waived=True,
            waiver_reason="intentional, see docs/deviations.md",
        ),
        Explanation(
            id="PP-LAYERNORM-OUTPUT", title="LayerNorm applied to the beat output", severity=Severity.ERROR,
            original_does="returns the beat LSTM output as is", replica_does="normalises it with LayerNorm",
            effect="beat and every later level differ", fix="remove the LayerNorm in replica/hierarchy.py",
            evidence=[LN_ERROR.key, MEASURE_ERROR.key], original_refs=["model_m2pf.py:412"],
            root_level="beat", first_divergent_op="layer_norm", fix_verified=True,
            effect_measured={"logits_max_rel": 0.05},
        ),
    ]
    return Report(
        variant="han_note",
        subjects=[
            {"name": "original", "kind": "original-checkout", "variant": "han_note", "source": "/src/PercePiano",
             "revision": "abc1234", "shims": [{"name": "tensorboard", "reason": "imported for logging only"}],
             "warnings": ["checkout has local changes"]},
            {"name": "replica", "kind": "bundled-replica", "variant": "han_note", "source": "replica.models:build",
             "revision": "def5678", "shims": [], "warnings": []},
        ],
        checks=checks,
        explanations=explanations,
        unexplained=[GRAD_WARNING.key, STRUCT_WARNING.key],
        noise_floors={"forward": {"max_rel": 1e-7, "batches": 3}, "backward": {"max_rel": 2e-7, "batches": 3}},
        settings={"variant": "han_note", "seed": 0, "batches": 3, "fail_on": "warning", "device": "cpu"},
        drift={"new": ["PP-LAYERNORM-OUTPUT"], "gone": ["PP-OLD-RULE"], "unchanged": ["PP-DROPOUT"]},
        run=run if run is not None else {"time": "2026-01-01T00:00:00Z", "host": "ci-1", "torch": "2.13.0"},
    )
