"""Every key of every file format the user writes, given values of every wrong type: each is accepted or
refused in one line that names the file and the key (a UsageError, exit code 2), never an internal error.

In-process through the validation layer (no CLI per case): config files ([tool.parity] / parity.toml),
command-line values, waivers, mapping overrides, the model YAML, adapter declarations, an earlier report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from percepiano_parity.commands.options import OPTIONS, resolve_options
from percepiano_parity.commands.waivers import Waivers
from percepiano_parity.compare.weight_mapping import read_mapping_file
from percepiano_parity.core.config import SMALL_CONFIG, read_model_yaml
from percepiano_parity.core.errors import UsageError
from percepiano_parity.replica.variants import build
from percepiano_parity.subjects.adapter import CALLBACKS, Declarations, validate_adapter

# TOML spellings of values of every type TOML has, plus out-of-range and empty ones
TOML_VALUES = ["5", "-1", "4611686018427387904", "2.5", "nan", "true", '""', '"zzz"', '"\\u0000"', "[1, \"a\"]", "[]",
               "{ a = 1 }", "1979-05-27", "07:32:00"]
YAML_VALUES: list[Any] = [5, -1, 10**30, 2.5, float("nan"), True, "", "zzz", [1], {"a": 1}, None, "2020-01-01"]
CLI_VALUES = ["-1", "0", "99999999999999999999999", "", " ", "zzz", "1.5", "nan", "1e3", "--", "a\x00b"]
PY_VALUES: list[Any] = [5, "zzz", [1], ("a",), {"beat": 5}, {5: "x"}, {"beat": ["x"]}, lambda *a: None, object(), True]


def refused_in_one_line(run, *words: str) -> str | None:
    """Run; a refusal must be one UsageError line containing every word. Returns the message (None: accepted)."""
    try:
        run()
    except UsageError as exc:
        message = str(exc)
        assert "\n" not in message and message.strip() == message, message
        for word in words:
            assert word in message, (word, message)
        return message
    return None


# ------------------------------------------------------------------------------------------ config files


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.key)
def test_config_file_every_key_every_type(option, tmp_path):
    refused = 0
    for i, value in enumerate(TOML_VALUES):
        folder = tmp_path / f"v{i}"
        folder.mkdir()
        (folder / "parity.toml").write_text(f"{option.key} = {value}\n")
        message = refused_in_one_line(lambda f=folder: resolve_options({}, cwd=f, environ={}))
        if message is not None:
            assert "parity.toml" in message or option.flag in message, message
            assert option.key in message or option.flag in message, message
            refused += 1
    assert refused >= len(TOML_VALUES) // 2  # most of these are wrong for any option


@pytest.mark.parametrize("text, words", [
    ("tool = 5\n", ["pyproject.toml", "tool: expected a table, got 5 (an integer)"]),
    ("[tool]\nparity = [1]\n", ["pyproject.toml", "tool.parity: expected a table"]),
    ("[tool.parity]\nformat = [\"json\", 5]\n", ["format: item 2 of the list", "got 5 (an integer)"]),
    ("[tool.parity]\nseed = 1e3\n", ["seed: expected an integer, got 1000.0 (a number)"]),
])
def test_pyproject_structure(text, words, tmp_path):
    (tmp_path / "pyproject.toml").write_text(text)
    assert refused_in_one_line(lambda: resolve_options({}, cwd=tmp_path, environ={}), *words)


@pytest.mark.parametrize("option", [o for o in OPTIONS if not o.is_flag], ids=lambda o: o.key)
def test_command_line_every_option_every_text(option, tmp_path):
    for text in CLI_VALUES:
        message = refused_in_one_line(lambda t=text: resolve_options({option.name: t}, cwd=tmp_path, environ={}))
        if message is not None:
            assert message.startswith(option.flag) or option.flag in message, message


# ------------------------------------------------------------------------------------------ waivers, mapping


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "file.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("key", ["id", "finding", "reason"])
def test_waivers_every_key_every_type(key, tmp_path):
    base = {"id": '"PP-EXTRA-NORM"', "finding": '"forward:forward.mismatch:logits"', "reason": '"on purpose"'}
    for value in TOML_VALUES:
        entry = {**base, key: value}
        text = "[[waiver]]\n" + "".join(f"{k} = {v}\n" for k, v in entry.items())
        path = _toml(tmp_path, text)
        message = refused_in_one_line(lambda p=path: Waivers.load(p), "waivers file", str(path))
        valid = value.startswith('"') and {"id": value == '""', "finding": True, "reason": value != '""'}[key]
        assert (message is None) == valid, (key, value, message)  # an empty id: the finding key names it
        if message is not None:
            assert "waiver[1]" in message, message


def test_waivers_structure_and_unknown_ids(tmp_path):
    cases = {
        "waiver = 5\n": "waiver: expected a list, got 5 (an integer)",
        "waiver = [5]\n": "waiver[1]: expected a table, got 5 (an integer)",
        "[[waiver]]\nid = \"PP-EXTRA-NORM\"\n": "waiver[1].reason: missing (expected a string)",
        "[[waiver]]\nreason = \"x\"\n": "waiver[1]: needs an id",
        "[[waiver]]\nid = \"PP-EXTRA-NORM\"\nreason = \"x\"\nexpires = 3\n": "waiver[1].expires: unknown key",
        "[[waiver]]\nid = \"PP-NO-SUCH\"\nreason = \"x\"\n": "waiver[1].id: unknown explanation id 'PP-NO-SUCH'",
        "[waivers]\n": "waivers: unknown key; known keys: waiver",
    }
    for text, words in cases.items():
        assert refused_in_one_line(lambda t=text: Waivers.load(_toml(tmp_path, t)), words)
    ok = Waivers.load(_toml(tmp_path, "[[waiver]]\nid = \"PP-EXTRA-NORM\"\nreason = \"on purpose\"\n"))
    assert [(w.id, w.reason) for w in ok.items] == [("PP-EXTRA-NORM", "on purpose")]


def test_mapping_file_every_type(tmp_path):
    for value in TOML_VALUES:
        for text in (f"[map]\n\"a.weight\" = {value}\n", f"map = {value}\n", f"other = {value}\n"):
            message = refused_in_one_line(lambda t=text: read_mapping_file(_toml(tmp_path, t)), "mapping overrides")
            if value not in ('""', '"zzz"', '"\\u0000"') or not text.startswith("[map]"):
                assert message is not None and ("map" in message or "other" in message), (text, message)
    assert read_mapping_file(_toml(tmp_path, '[map]\n"a.weight" = "b.weight"\n')) == {"a.weight": "b.weight"}


# ------------------------------------------------------------------------------------------ model YAML


def _model_yaml() -> dict[str, Any]:
    blocks = {name: {"size": 16, "layer": 2, "input": 0} for name in ("note", "voice", "beat", "measure")}
    return {"nn_params": {**blocks, "encoder": {"size": 16, "layer": 2}, "num_attention_head": 8,
                          "drop_out": 0.1, "input_size": 78}, "train_params": {"device": 0}}


def _leaf_paths(data: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(data, dict):
        return [prefix] * bool(prefix) + [p for k, v in data.items() for p in _leaf_paths(v, (*prefix, k))]
    return [prefix]


def _set(data: dict, path: tuple[str, ...], value: Any, *, delete: bool = False) -> dict:
    copy = json.loads(json.dumps(data))
    target = copy
    for part in path[:-1]:
        target = target[part]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return copy


def test_model_yaml_every_key_every_type(tmp_path):
    path = tmp_path / "model.yml"
    path.write_text(yaml.safe_dump(_model_yaml()))
    assert read_model_yaml(path) == SMALL_CONFIG.with_(dropout=0.1, measure_layers=2)
    read = {"nn_params", "nn_params.encoder", "nn_params.encoder.size", "nn_params.num_attention_head",
            "nn_params.drop_out"} | {f"nn_params.{b}{k}" for b in ("note", "voice", "beat", "measure")
                                     for k in ("", ".size", ".layer")}
    for key in _leaf_paths(_model_yaml()):
        dotted = ".".join(key)
        for value in YAML_VALUES:
            path.write_text(yaml.safe_dump(_set(_model_yaml(), key, value)))
            message = refused_in_one_line(lambda: read_model_yaml(path), "model config", str(path))
            if dotted in read:  # a value the model is built from: refused unless it happens to be a valid one
                valid_int = type(value) is int and 1 <= value <= 16
                assert message is not None or valid_int, (dotted, value)
                if message is not None and "attention width" not in message:
                    assert dotted in message, (dotted, message)
            else:
                assert message is None, (dotted, value, message)  # the original's other keys are not read
        if dotted in read:
            path.write_text(yaml.safe_dump(_set(_model_yaml(), key, None, delete=True)))
            assert refused_in_one_line(lambda: read_model_yaml(path), f"{dotted}: missing")
    for text in ("[1, 2]\n", "just text\n", "nn_params: [\n", ""):
        path.write_text(text)
        assert refused_in_one_line(lambda: read_model_yaml(path), "model config")


# ------------------------------------------------------------------------------------------ adapter, report


@pytest.fixture(scope="module")
def model():
    return build("han-total", SMALL_CONFIG)


@pytest.mark.parametrize("key", [*Declarations.model_fields, *CALLBACKS])
def test_adapter_declarations_every_key_every_type(key, model):
    for value in PY_VALUES:
        adapter = type("UserAdapter", (), {key: value})()
        message = refused_in_one_line(lambda a=adapter: validate_adapter(model, a, "user.py:build"),
                                      "the adapter of user.py:build")
        if message is not None:
            assert key in message, (key, value, message)


def test_adapter_declaration_that_raises_is_the_adapters_failure(model):
    class Broken:
        @property
        def levels(self):
            raise ValueError("levels are computed lazily and failed")

    assert refused_in_one_line(lambda: validate_adapter(model, Broken(), "user.py:build"),
                               "your adapter.levels of user.py:build failed: ValueError: levels are computed")


@pytest.mark.handwritten_reports
@pytest.mark.parametrize("key", ["variant", "explanations", "unexplained"])
def test_previous_report_every_key_every_type(key, tmp_path):
    from percepiano_parity.commands.waivers import load_previous

    base = {"schema_version": "1.1", "verdict": "mismatch", "variant": "han-total", "checks": [],
            "explanations": [{"id": "PP-EXTRA-NORM"}], "unexplained": []}
    for value in [5, None, "x", [5], [{"id": 5}], {"a": 1}, True]:
        path = tmp_path / "report.json"
        path.write_text(json.dumps({**base, key: value}))
        message = refused_in_one_line(lambda p=path: load_previous(p), "--compare-to")
        if message is not None:
            assert key in message, message
