"""The rows of issue 21's table, each with the one line `parity check` now gives (in-process, through
`cli.main`): bad values in files and options, failing user code, and a replica whose output is NaN.
Ctrl-C while torch is imported needs a process of its own: tests/commands/test_interrupted_runs.py.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from percepiano_parity.commands.cli import main

FAST = ["--batches", "1", "--max-notes", "16", "--no-edge-cases", "--no-training-checks"]


@pytest.fixture(scope="module")
def user_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rows") / "user_replica.py"
    path.write_text(textwrap.dedent('''
        import sys
        from torch import nn
        from percepiano_parity.replica import build
        from percepiano_parity.subjects.user_subject import Adapter

        class NoRecipe(Adapter):
            def recipe(self, model):
                raise RuntimeError("no optimizer configured yet")

        def bad_recipe(variant, config, seed):
            return build(variant, config, seed=seed), NoRecipe(levels={"embedding": "note_embedder"})

        def exits(variant, config, seed):
            sys.exit(0)

        class NaNOut(nn.Module):
            def forward(self, x):
                return x * float("nan")

        def nan_logits(variant, config, seed):
            model = build(variant, config, seed=seed)
            model.level_patches = nn.ModuleDict({"logits": NaNOut()})
            return model
    '''))
    return path


def run(args: list[str], folder: Path, monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.chdir(folder)
    monkeypatch.delenv("PERCEPIANO_ORIGINAL", raising=False)
    code = main(["check", *args, "--report-dir", str(folder / "out")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("parity: note:", "parity: ["))]
    return code, "\n".join(lines)


def one_line(code: int, line: str, expected: str, folder: Path) -> None:
    assert code == 2, line
    assert "\n" not in line and "Traceback" not in line, line
    assert re.fullmatch(expected, line), line
    assert not (folder / "out").exists()  # refused before any report is written


def test_pyproject_whose_tool_is_a_number(tmp_path, monkeypatch, capsys):
    (tmp_path / "pyproject.toml").write_text("tool = 5\n")
    code, line = run([], tmp_path, monkeypatch, capsys)
    one_line(code, line, r"parity: error: config file .*pyproject.toml: tool: expected a table, got 5 \(an integer\)",
             tmp_path)


def test_config_whose_format_list_holds_a_number(tmp_path, monkeypatch, capsys):
    (tmp_path / "parity.toml").write_text('format = ["json", 5]\n')
    code, line = run([], tmp_path, monkeypatch, capsys)
    one_line(code, line, r"parity: error: config file .*parity.toml: format: item 2 of the list: expected a format "
             r"name \(a string\), got 5 \(an integer\)", tmp_path)


@pytest.mark.parametrize("text, expected", [
    ("waiver = [5]\n", r"waiver\[1\]: expected a table, got 5 \(an integer\)"),
    ("waiver = 5\n", r"waiver: expected a list, got 5 \(an integer\)"),
])
def test_waivers_file_whose_entry_is_a_number(text, expected, tmp_path, monkeypatch, capsys):
    (tmp_path / "waivers.toml").write_text(text)
    code, line = run(["--waivers", "waivers.toml"], tmp_path, monkeypatch, capsys)
    one_line(code, line, r"parity: error: waivers file .*waivers.toml: " + expected, tmp_path)


def test_waiver_naming_an_unknown_explanation_id(tmp_path, monkeypatch, capsys):
    (tmp_path / "waivers.toml").write_text('[[waiver]]\nid = "PP-EXTRA-NROM"\nreason = "typo"\n')
    code, line = run(["--waivers", "waivers.toml"], tmp_path, monkeypatch, capsys)
    one_line(code, line, r"parity: error: waivers file .*: waiver\[1\].id: unknown explanation id 'PP-EXTRA-NROM'; "
             r"known ids: .*PP-EXTRA-NORM.*", tmp_path)


def test_model_yaml_whose_note_block_has_no_layer(tmp_path, monkeypatch, capsys):
    (tmp_path / "model.yml").write_text(textwrap.dedent('''
        nn_params:
          note: {size: 16}
          voice: {size: 16, layer: 2}
          beat: {size: 16, layer: 2}
          measure: {size: 16, layer: 1}
          encoder: {size: 16, layer: 2}
          num_attention_head: 8
          drop_out: 0.1
    '''))
    code, line = run(["--model-config", "model.yml"], tmp_path, monkeypatch, capsys)
    one_line(code, line, r"parity: error: model config model.yml: nn_params.note.layer: missing \(expected an "
             r"integer\)", tmp_path)


def test_seed_beyond_any_generator(tmp_path, monkeypatch, capsys):
    code, line = run(["--seed", "99999999999999999999999"], tmp_path, monkeypatch, capsys)
    one_line(code, line, r"parity: error: --seed: must be at most 4294967295, got 99999999999999999999999", tmp_path)


def test_adapter_whose_recipe_raises(user_file, tmp_path, monkeypatch, capsys):
    code, line = run(["--replica", f"{user_file}:bad_recipe", *FAST], tmp_path, monkeypatch, capsys)
    one_line(code, line, r"parity: error: your adapter.recipe failed: RuntimeError: no optimizer configured yet "
             r"\(at .*user_replica.py:9, in recipe\)", tmp_path)


def test_factory_that_calls_sys_exit(user_file, tmp_path, monkeypatch, capsys):
    code, line = run(["--replica", f"{user_file}:exits", *FAST], tmp_path, monkeypatch, capsys)
    one_line(code, line, r"parity: error: your factory .*user_replica.py:exits failed: it called sys.exit\(0\) "
             r"\(at .*user_replica.py:15, in exits\)", tmp_path)


def test_unwritable_report_folder_is_refused_before_the_audit(tmp_path, monkeypatch, capsys):
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.chdir(tmp_path)
    code = main(["check", "--report-dir", str(tmp_path / "a-file" / "reports")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert re.fullmatch(r"parity: error: --report-dir .*a-file/reports: .*a-file is a file, not a folder\n", err)


def test_replica_whose_forward_returns_nan_logits(user_file, tmp_path, monkeypatch, capsys):
    code, _ = run(["--replica", f"{user_file}:nan_logits", *FAST, "--format", "json"], tmp_path, monkeypatch,
                  capsys)
    assert code == 1  # a finding, with a report: the replica ran, its output is wrong
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    first = report["explanations"][0]
    assert first["id"] == "PP-NON-FINITE"
    assert first["title"] == "The replica's output is not finite (NaN from level logits)"
    assert re.search(r"first produced by module level_patches.logits \(NaNOut\), operation aten.mul.Tensor at "
                     r".*user_replica.py:19, in forward", first["replica_does"]), first["replica_does"]
    assert not any(e["id"] == "PP-FORWARD-UNEXPLAINED-LEVEL" for e in report["explanations"])
    assert report["unexplained"] == []  # every NaN figure is claimed by the one explanation


@pytest.mark.parametrize("command", [
    ["train-compare", "--original", "no-checkout", "--data", "no-cache"],
    ["check-features", "--data", "no-cache", "--extractor", "no_module:extract"],
])
def test_every_command_refuses_an_unwritable_report_folder_before_its_work(command, tmp_path, monkeypatch, capsys):
    """The folder is checked first: the checkout, cache and extractor named here do not exist, and the one line
    is still about the folder (a training run must not be lost to it after minutes)."""
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.chdir(tmp_path)
    code = main([*command, "--report-dir", str(tmp_path / "a-file" / "reports")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert re.fullmatch(r"parity: error: --report-dir .*a-file/reports: .*a-file is a file, not a folder\n", err)
