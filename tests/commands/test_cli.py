"""`parity` end to end, through the real entry point (`python -m percepiano_parity ...` in a fresh process).

The reference is the shipped bundle for han-total when the package has one; otherwise the faithful bundled
replica through the PARITY_TEST_REFERENCE=replica test hook, so these tests run anywhere. PERCEPIANO_ORIGINAL is
removed from the environment (it would make every run a live, slower one) except in the tests marked
`original`, which skip without it. Runs use SMALL_CONFIG, one batch and at most 16 notes per segment.
Bad inputs beyond the list every CLI must get right run in-process through `parity.cli.main`. Each run here
starts an interpreter (seconds): the fast tier keeps exit codes 0, 1, 2 and 3 and the CI-sized console, the
other commands and options are the slow tier.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tiers import sweep

ROOT = Path(__file__).resolve().parents[2]
FAST = ("--batches", "1", "--max-notes", "16", "--no-edge-cases", "--no-training-checks")
REPORT_FILES = ["junit.xml", "report.html", "report.json", "report.md"]


def _shipped_bundle() -> bool:
    try:
        from percepiano_parity.subjects.bundle import DEFAULT_BUNDLES
    except ImportError:
        return False
    path = DEFAULT_BUNDLES.get("han-total")
    return path is not None and (Path(path) / "manifest.json").is_file()


SHIPPED = _shipped_bundle()


def run_parity(*args: str, cwd: Path, hook: bool = True, original: bool = False, extra_env: dict | None = None,
               timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("PARITY_TEST_REFERENCE", None)
    env.pop("PARITY_TEST_INTERNAL_ERROR", None)
    if not original:
        env.pop("PERCEPIANO_ORIGINAL", None)
    if hook and not SHIPPED:
        env["PARITY_TEST_REFERENCE"] = "replica"
    env.setdefault("OMP_NUM_THREADS", "1")  # small models: threads only contend on a busy 2-core runner
    env.pop("COLUMNS", None)  # the console's width outside a terminal: 120 unless $COLUMNS says otherwise
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "percepiano_parity", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def load_json(directory: Path) -> dict:
    return json.loads((directory / "report.json").read_text())


def error_lines(stderr: str) -> list[str]:
    """stderr without notes and progress lines (one per stage outside a terminal: "parity: [  1.2s] ...")."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith(("parity: note:",
                                                                                           "parity: ["))]


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


# -------------------------------------------------------------------------------------------- shared runs


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def faithful(work) -> tuple[subprocess.CompletedProcess, Path]:
    out = work / "faithful"
    proc = run_parity("check", "--batches", "1", "--max-notes", "16", "--report-dir", str(out), cwd=work)
    return proc, out


@pytest.fixture(scope="module")
def deviated(work, faithful) -> tuple[subprocess.CompletedProcess, Path]:
    """The library's LayerNorm deviation, compared to the faithful run's report (drift)."""
    out = work / "deviated"
    proc = run_parity("check", "--deviation", "layernorm-han-output", *FAST, "--report-dir", str(out),
                      "--format", "console,json,md", "--compare-to", str(faithful[1] / "report.json"), cwd=work)
    return proc, out


@pytest.fixture(scope="module")
def user_replicas(work) -> Path:
    """A user's replica file with factories that misbehave in the ways the CLI must report cleanly."""
    path = work / "user_replicas.py"
    path.write_text(textwrap.dedent('''
        import torch
        from torch import nn
        from percepiano_parity.replica import build
        from percepiano_parity.subjects.user_subject import Adapter

        class NaNify(nn.Module):
            def forward(self, x):
                return x * float("nan")

        def nan_beat(variant, config, seed):
            model = build(variant, config, seed=seed)
            model.level_patches = nn.ModuleDict({"beat": NaNify()})
            return model

        class FiveLogits(Adapter):
            def forward(self, model, model_input):
                return model(model_input.x, model_input.note_locations)[:, :5]

        def wrong_shape(variant, config):
            return build(variant, config), FiveLogits(levels={"embedding": "note_embedder"})

        def raises():
            raise RuntimeError("cannot build the model\\nsecond line of the message")

        class Boom(nn.Module):
            def forward(self, x):
                raise IndexError("index -30 is out of bounds for dimension 1 with size 4")

        def crashes_on_a_batch(variant, config, seed):
            model = build(variant, config, seed=seed)
            model.level_patches = nn.ModuleDict({"beat": Boom()})
            return model

        def not_a_model():
            return 42
    '''))
    return path


# -------------------------------------------------------------------------------------------- exit 0 / 1


def test_faithful_replica_is_equivalent_exit_0_with_every_report_file(faithful):
    proc, out = faithful
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert "EQUIVALENT" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == REPORT_FILES  # atomic writes leave no temporaries
    data = load_json(out)
    assert data["verdict"] == "equivalent"
    assert data["subjects"][1]["kind"] == "bundled-replica"
    assert {c["id"] for c in data["checks"] if c["status"] == "passed"} >= {"structure", "forward", "backward"}
    skipped = [c for c in data["checks"] if c["status"] == "skipped"]
    assert all(c["reason"] for c in skipped)  # every skipped check says why
    if not SHIPPED:
        assert data["settings"]["edge_cases"] > 0  # the default run includes the edge-case batches


def test_console_outside_a_terminal_is_ci_sized(faithful, deviated):
    """`parity check | cat`: a passing run in at most 40 lines of at most 120 columns; a failing one starts
    with the explanations; progress is one line per stage on stderr."""
    proc, _ = faithful
    lines = proc.stdout.splitlines()
    assert len(lines) <= 40, proc.stdout
    assert lines[0].lstrip().startswith("EQUIVALENT") and max(map(len, lines)) <= 120
    assert "Per-level error" not in proc.stdout  # passing checks print no tables
    progress = [line for line in proc.stderr.splitlines() if line.startswith("parity: [")]
    assert progress[0].endswith("] loading the reference")
    assert any("] comparing batches 1/" in line for line in progress)
    failing, _ = deviated
    head = failing.stdout[:failing.stdout.index("Explanations (")].strip().splitlines()
    assert head[0].lstrip().startswith("MISMATCH") and len(head) <= 2  # the verdict, then the explanations
    assert "PP-EXTRA-NORM" in failing.stdout[:failing.stdout.index("Checks")]


@pytest.mark.slow
def test_report_json_is_byte_identical_across_runs_except_run(faithful, work):
    _, first = faithful
    second = work / "faithful-again"
    proc = run_parity("check", "--batches", "1", "--max-notes", "16", "--report-dir", str(second),
                      "--format", "json", cwd=work)
    assert proc.returncode == 0, proc.stderr
    a, b = load_json(first), load_json(second)
    assert a.pop("run") and b.pop("run")
    assert json.dumps(a, sort_keys=False) == json.dumps(b, sort_keys=False)


def test_library_deviation_is_a_mismatch_exit_1(deviated):
    proc, out = deviated
    assert proc.returncode == 1, proc.stderr
    data = load_json(out)
    assert data["verdict"] == "mismatch"
    assert "PP-EXTRA-NORM" in [e["id"] for e in data["explanations"]]
    assert data["subjects"][1]["extra"]["deviation"] == "layernorm-han-output"
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md"]


@pytest.mark.slow
def test_waivers_make_the_check_pass_but_stay_in_the_report(work):
    waivers = work / "waivers.toml"
    waivers.write_text('[[waiver]]\nid = "PP-EXTRA-NORM"\nreason = "we normalise on purpose (ticket 12)"\n')
    out = work / "waived"
    proc = run_parity("check", "--deviation", "layernorm-han-output", *FAST, "--waivers", str(waivers),
                      "--report-dir", str(out), "--format", "console,json,md", cwd=work)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    data = load_json(out)
    waived = [e for e in data["explanations"] if e["id"] == "PP-EXTRA-NORM"]
    assert waived and waived[0]["waived"] and waived[0]["waiver_reason"] == "we normalise on purpose (ticket 12)"
    assert "waived" in proc.stdout.lower()
    assert "we normalise on purpose" in (out / "report.md").read_text()


@pytest.mark.slow
def test_compare_to_reports_drift_and_fail_on_new(deviated, work):
    proc, before = deviated
    drift = load_json(before)["drift"]  # against the faithful run: everything is new
    assert "PP-EXTRA-NORM" in drift["new"] and drift["gone"] == [] and drift["unchanged"] == []
    assert proc.returncode == 1

    out = work / "drift-same"
    proc = run_parity("check", "--deviation", "layernorm-han-output", *FAST, "--compare-to",
                      str(before / "report.json"), "--fail-on-new", "--report-dir", str(out), "--format", "json",
                      cwd=work)
    assert proc.returncode == 0, proc.stderr  # nothing new since the previous report
    drift = load_json(out)["drift"]
    assert drift["new"] == [] and "PP-EXTRA-NORM" in drift["unchanged"]


@pytest.mark.slow
def test_config_file_and_fail_on_threshold(work):
    """parity.toml sets the deviation, the threshold and the formats; the command line overrides it."""
    project = work / "project"
    project.mkdir()
    (project / "parity.toml").write_text(textwrap.dedent('''
        [tool.parity]
        deviation = "custom-head-init"   # changes initial weights only: warning-level findings
        fail-on = "error"
        format = "json"
        report-dir = "from-config"
        batches = 1
        max-notes = 16
        edge-cases = false
        training-checks = false
    '''))
    proc = run_parity("check", cwd=project)
    assert proc.returncode == 0, proc.stderr  # only warnings, threshold error
    data = load_json(project / "from-config")
    assert data["settings"]["fail_on"] == "error" and data["settings"]["deviation"] == "custom-head-init"
    assert any(f["severity"] == "warning" for c in data["checks"] for f in c["findings"])

    proc = run_parity("check", "--fail-on", "warning", "--report-dir", "cli-dir", cwd=project)
    assert proc.returncode == 1, proc.stderr  # the same warnings now block
    assert load_json(project / "cli-dir")["settings"]["fail_on"] == "warning"


@pytest.mark.slow
def test_user_replica_lightning_example_passes(work):
    out = work / "lightning"
    proc = run_parity("check", "--replica", f"{ROOT / 'docs' / 'lightning_example.py'}:build", "--batches", "1",
                      "--max-notes", "16", "--report-dir", str(out), "--format", "json", "--thorough", cwd=work)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    data = load_json(out)
    assert data["settings"]["thorough"] is True
    replica = data["subjects"][1]
    assert replica["kind"] == "user-replica" and replica["extra"]["adapter"] == "LitAdapter"
    forward = next(c for c in data["checks"] if c["id"] == "forward")
    levels = {row["level"]: row for row in forward["tables"]["levels"]}
    assert {"embedding", "voice", "beat_nodes", "measure_spanned", "total_note_cat", "pooled", "logits"} <= set(levels)
    assert levels["beat"]["local_max_rel"] is not None  # teacher forcing through the adapter's run_level
    assert not [f for c in data["checks"] for f in c["findings"] if f["kind"] == "forward.missing_level"]
    # no level map and no weight mapping (nn.LSTM where the reference has its own class): found by value
    located = {row["level"]: row for row in forward["tables"]["located"]}
    assert located and all(row["found"] == "yes" for row in located.values())
    assert data["settings"]["mapping_overrides"] == []
    recipe = next(c for c in data["checks"] if c["id"] == "recipe")
    assert recipe["status"] == "passed", recipe  # read from the module's configure_optimizers


@pytest.mark.slow
def test_nan_activations_are_a_mismatch_not_a_crash(work, user_replicas):
    out = work / "nan"
    proc = run_parity("check", "--replica", f"{user_replicas}:nan_beat", *FAST, "--report-dir", str(out),
                      "--format", "json", cwd=work)
    assert proc.returncode == 1, proc.stderr
    findings = [f for c in load_json(out)["checks"] for f in c["findings"]]
    first = [f for f in findings if f["kind"] == "forward.non_finite"]
    assert len(first) == 1 and first[0]["location"] == "beat" and first[0]["severity"] == "error"
    assert "the replica's output is not finite: NaN values from level beat on" in first[0]["message"]
    assert "module level_patches.beat (NaNify)" in first[0]["message"]  # where it starts, and in what
    assert "user_replicas.py" in first[0]["evidence"]["at"]


@pytest.mark.slow
@pytest.mark.original
def test_live_original_reference(work):
    checkout = os.environ.get("PERCEPIANO_ORIGINAL")
    if not checkout:
        pytest.skip("PERCEPIANO_ORIGINAL not set: the live-original run needs a checkout of PercePiano")
    out = work / "live"
    proc = run_parity("check", "--original", checkout, "--model-config", "small", *FAST, "--report-dir", str(out),
                      "--format", "json", cwd=work, original=True, hook=False)
    assert proc.returncode in (0, 1), proc.stderr
    data = load_json(out)
    assert data["subjects"][0]["kind"] == "original-checkout"
    assert data["settings"]["reference"] == "original"
    assert proc.returncode == 0, [f["message"] for c in data["checks"] for f in c["findings"]
                                  if f["severity"] != "info"]


# -------------------------------------------------------------------------------------------- exit 2


def _corrupt_bundle(base: Path) -> Path:
    bundle = base / "corrupt-bundle"
    bundle.mkdir(exist_ok=True)
    (bundle / "manifest.json").write_text("{ this is not json")
    return bundle


USAGE_CASES = {
    "missing checkout": lambda w, u: ["--original", str(w / "no-such-checkout")],
    "not a checkout": lambda w, u: ["--original", str(w)],
    "unknown variant": lambda w, u: ["--variant", "han-everything"],
    "bad format": lambda w, u: ["--format", "md,pdf"],
    "bad fail-on": lambda w, u: ["--fail-on", "fatal"],
    "corrupt bundle": lambda w, u: ["--reference", str(_corrupt_bundle(w))],
    "failing factory": lambda w, u: ["--replica", f"{u}:raises"],
    "adapter returns wrong shapes": lambda w, u: ["--replica", f"{u}:wrong_shape", *FAST],
    "bad waivers file": lambda w, u: ["--waivers", str(_write(w / "bad-waivers.toml", "[[waiver]]\nid = 'X'\n"))],
}
# The same contract, checked in-process through parity.cli.main (no interpreter start-up per case).
MORE_USAGE_CASES = {
    "factory returns no model": lambda w, u: ["--replica", f"{u}:not_a_model"],
    "missing factory": lambda w, u: ["--replica", f"{u}:no_such_function"],
    "replica crashes on a batch": lambda w, u: ["--replica", f"{u}:crashes_on_a_batch", *FAST],
    "replica spec without factory": lambda w, u: ["--replica", "mypkg.model"],
    "waivers not toml": lambda w, u: ["--waivers", str(_write(w / "broken.toml", "[[waiver\n"))],
    "bad mapping file": lambda w, u: ["--mapping", str(_write(w / "map.toml", "[map]\nx = 3\n"))],
    "missing mapping file": lambda w, u: ["--mapping", str(w / "no-map.toml")],
    "reference and original": lambda w, u: ["--reference", str(w), "--original", str(w)],
    "deviation with replica": lambda w, u: ["--deviation", "adamw", "--replica", f"{u}:raises"],
    "unknown deviation": lambda w, u: ["--deviation", "layernorm-everywhere"],
    "fail-on-new alone": lambda w, u: ["--fail-on-new"],
    "compare-to not a report": lambda w, u: ["--compare-to", str(_write(w / "old.json", '{"x": 1}'))],
    "batches zero": lambda w, u: ["--batches", "0"],
    "max-notes too small": lambda w, u: ["--max-notes", "3"],
    "bad model config": lambda w, u: ["--model-config", "huge"],
    "unknown option": lambda w, u: ["--colour", "always"],
    "option without value": lambda w, u: ["--variant"],
}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", sweep(USAGE_CASES, fast={"failing factory"}))
def test_bad_input_exit_2_one_line_and_no_report_files(case, work, user_replicas):
    out = work / f"usage-{case.replace(' ', '-')}"
    proc = run_parity("check", *USAGE_CASES[case](work, user_replicas), "--report-dir", str(out), cwd=work)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr
    line = one_error_line(proc)
    assert line.startswith("parity: error:") or line.startswith("parity check: error:"), line
    assert not out.exists()


@pytest.mark.parametrize("case", list(MORE_USAGE_CASES))
def test_more_bad_input_exit_2_in_process(case, work, user_replicas, monkeypatch, capsys):
    from percepiano_parity.commands.cli import main

    monkeypatch.chdir(work)
    monkeypatch.delenv("PERCEPIANO_ORIGINAL", raising=False)
    out = work / f"usage-inproc-{case.replace(' ', '-')}"
    code = main(["check", *MORE_USAGE_CASES[case](work, user_replicas), "--report-dir", str(out)])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    lines = error_lines(captured.err)
    assert len(lines) == 1 and lines[0].startswith("parity: error:"), captured.err
    assert not out.exists()


@pytest.mark.slow
def test_no_reference_for_a_variant_without_a_bundle_exit_2(work):
    proc = run_parity("check", "--variant", "han-voice", cwd=work, hook=False)
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "--original" in line and "--reference" in line and "PERCEPIANO_ORIGINAL" in line


@pytest.mark.slow
def test_bad_config_key_exit_2(work):
    project = work / "bad-config"
    project.mkdir()
    (project / "parity.toml").write_text('[tool.parity]\nvariant = "han-total"\nbatchez = 2\n')
    proc = run_parity("check", cwd=project)
    assert proc.returncode == 2
    assert "batchez" in one_error_line(proc)


# -------------------------------------------------------------------------------------------- exit 3


def test_internal_error_exit_3_one_line_and_debug_traceback(work):
    out = work / "internal"
    proc = run_parity("check", "--report-dir", str(out), cwd=work, extra_env={"PARITY_TEST_INTERNAL_ERROR": "1"})
    assert proc.returncode == 3
    line = one_error_line(proc)
    assert "internal error" in line and "--debug" in line
    assert not out.exists()
    proc = run_parity("check", "--debug", "--report-dir", str(out), cwd=work,
                      extra_env={"PARITY_TEST_INTERNAL_ERROR": "1"})
    assert proc.returncode == 3 and "Traceback" in proc.stderr


# -------------------------------------------------------------------------------------------- subcommands


@pytest.mark.slow
def test_deviations_lists_name_tab_title():
    from percepiano_parity.subjects.deviations import DEVIATIONS

    proc = run_parity("deviations", cwd=ROOT)
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == [f"{d.name}\t{d.title}" for d in DEVIATIONS.values()]


@pytest.mark.slow
def test_explain_known_and_unknown_id(work):
    proc = run_parity("explain", "PP-EXTRA-NORM", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "PP-EXTRA-NORM" in proc.stdout and "ormalis" in proc.stdout
    proc = run_parity("explain", "PP-NO-SUCH-RULE", cwd=work)
    assert proc.returncode == 2
    assert "PP-NO-SUCH-RULE" in one_error_line(proc)


@pytest.mark.slow
def test_variants_without_a_checkout_shows_the_replica_table(work):
    from percepiano_parity.replica.variants import VARIANTS

    proc = run_parity("variants", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "replica's variant table" in proc.stdout
    for variant_id in VARIANTS:
        assert variant_id in proc.stdout


@pytest.mark.slow
@pytest.mark.original
def test_variants_with_a_checkout_cites_the_scripts(work):
    checkout = os.environ.get("PERCEPIANO_ORIGINAL")
    if not checkout:
        pytest.skip("PERCEPIANO_ORIGINAL not set: `parity variants` with evidence needs a checkout of PercePiano")
    proc = run_parity("variants", "--original", checkout, cwd=work, original=True)
    assert proc.returncode == 0, proc.stderr
    blocks = proc.stdout.split("\n" + "han-measure")[0]
    han = blocks[blocks.index("\nhan-total"):]
    assert "trained by 4 published scripts" in han.splitlines()[1]
    assert "virtuoso/scripts/composition4fold/2_run_comp_multilevel_total.sh" in han
    assert "--multi_level" in han and 'multi_levels=("total_note_cat")' in han
    single = next(line for line in proc.stdout.splitlines() if line.startswith("single-7layer"))
    assert "not trained" in single


@pytest.mark.slow
def test_variants_with_a_bad_checkout_exit_2(work):
    proc = run_parity("variants", "--original", str(work / "nope"), cwd=work)
    assert proc.returncode == 2
    one_error_line(proc)


@pytest.mark.slow
def test_doctor_reports_versions_threads_and_determinism(work):
    proc = run_parity("doctor", cwd=work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for word in ("python", "torch", "numpy", "scikit-learn", "threads", "determinism", "bitwise repeatable",
                 "original", "bundle"):
        assert word in proc.stdout, word


@pytest.mark.slow
def test_help_and_bare_command(work):
    assert run_parity("--help", cwd=work).returncode == 0
    proc = run_parity(cwd=work)
    assert proc.returncode == 2
    one_error_line(proc)


@pytest.mark.slow
@pytest.mark.original
def test_record_a_bundle_then_check_against_it(work):
    checkout = os.environ.get("PERCEPIANO_ORIGINAL")
    if not checkout:
        pytest.skip("PERCEPIANO_ORIGINAL not set: `parity record` needs a checkout of PercePiano")
    bundle = work / "recorded" / "han-total"
    proc = run_parity("record", "--original", checkout, "--variant", "han-total", "--out", str(bundle), "--seed", "3",
                      "--batches", "1", "--max-notes", "16", cwd=work, original=True)
    assert proc.returncode == 0, proc.stderr
    assert (bundle / "manifest.json").is_file()
    out = work / "against-recorded"
    proc = run_parity("check", "--reference", str(bundle), "--seed", "5", "--no-training-checks", "--report-dir",
                      str(out), "--format", "json", cwd=work, hook=False)
    assert proc.returncode == 0, proc.stderr
    assert "fixes the seed (3)" in proc.stderr and "--seed 5" in proc.stderr  # the user is told
    data = load_json(out)
    assert data["subjects"][0]["kind"] == "reference-bundle" and data["settings"]["seed"] == 3
    proc = run_parity("check", "--reference", str(bundle), "--variant", "bilstm-note", "--report-dir", str(out),
                      cwd=work, hook=False)
    assert proc.returncode == 2  # the bundle holds another variant
    one_error_line(proc)


def test_selftest_command_reports_the_matrix_and_its_verdict(monkeypatch, capsys):
    """The command's wiring, with a stand-in for parity.selftest (the real one runs every deviation)."""
    import types

    from percepiano_parity.commands.cli import main

    calls = []

    def run_selftest(progress=None, **kwargs):
        calls.append(kwargs.get("original"))
        if progress is not None:
            progress("deviation", 1, 2)
        return types.SimpleNamespace(ok=len(calls) == 1)

    fake = types.ModuleType("percepiano_parity.commands.selftest")
    fake.run_selftest = run_selftest
    fake.format_matrix = lambda result: f"MATRIX ok={result.ok}"
    monkeypatch.setitem(sys.modules, "percepiano_parity.commands.selftest", fake)
    assert main(["selftest"]) == 0
    assert main(["selftest"]) == 1
    assert capsys.readouterr().out.splitlines() == ["MATRIX ok=True", "MATRIX ok=False"]
    assert calls == [None, None]
    assert main(["selftest", "--original", "/no/such/checkout"]) == 2
    assert "PercePiano checkout not found" in capsys.readouterr().err
