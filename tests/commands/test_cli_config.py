"""Option resolution for `parity check`: one declarative table, config files, precedence, contradictions."""

from __future__ import annotations

import pytest

from percepiano_parity.commands.options import (
    OPTIONS,
    CheckOptions,
    UsageError,
    find_config,
    read_config,
    resolve_options,
)

NO_ENV: dict[str, str] = {}


def resolve(cli: dict | None = None, **kwargs):
    return resolve_options(cli or {}, environ=kwargs.pop("environ", NO_ENV), **kwargs)


def test_defaults_match_the_documented_interface(tmp_path):
    options = resolve(cwd=tmp_path)
    assert (options.variant, options.batches, options.seed, options.fail_on, options.device) == \
        ("han-total", 3, 0, "warning", "cpu")
    assert options.report_dir == "parity-report"
    assert options.formats == ("console", "md", "json", "html", "junit")
    assert options.explicit == {} and options.config_file is None


def test_every_option_has_a_dataclass_field_and_a_flag():
    fields = set(CheckOptions.__dataclass_fields__)
    for option in OPTIONS:
        assert option.name in fields
        assert option.flag.startswith("--")


def test_pyproject_tool_parity_is_read_and_the_command_line_wins(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.parity]\nvariant = "bilstm-note"\nbatches = 5\nfail_on = "error"\n'
        'waivers = "ci/waivers.toml"\nformat = ["md", "json"]\n')
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "waivers.toml").write_text("")
    options = resolve({"batches": "2"}, cwd=tmp_path)
    assert options.variant == "bilstm-note" and options.fail_on == "error"
    assert options.batches == 2 and options.explicit["batches"] == "command line"
    assert options.waivers == str((tmp_path / "ci" / "waivers.toml").resolve())  # relative to the file
    assert options.formats == ("md", "json")
    assert options.config_file == str(tmp_path / "pyproject.toml")


def test_parity_toml_top_level_keys_and_explicit_config_file(tmp_path):
    (tmp_path / "parity.toml").write_text('seed = 4\nmax-notes = 32\n')
    options = resolve(cwd=tmp_path)
    assert options.seed == 4 and options.max_notes == 32
    other = tmp_path / "elsewhere.toml"
    other.write_text('[tool.parity]\nseed = 9\n')
    assert resolve(config_path=str(other)).seed == 9


def test_pyproject_without_a_parity_table_falls_back_to_parity_toml(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    (tmp_path / "parity.toml").write_text('[tool.parity]\nseed = 3\n')
    assert find_config(tmp_path) == tmp_path / "parity.toml"
    assert resolve(cwd=tmp_path).seed == 3


@pytest.mark.parametrize("text, message", [
    ('[tool.parity]\nbatchez = 2\n', "unknown key 'batchez'"),
    ('[tool.parity]\nbatches = "many"\n', "parity.toml: batches: expected an integer"),
    ('[tool.parity]\nfail-on = "fatal"\n', "unknown severity"),
    ('[tool.parity\n', "not valid TOML"),
])
def test_bad_config_files_are_usage_errors(tmp_path, text, message):
    (tmp_path / "parity.toml").write_text(text)
    with pytest.raises(UsageError, match=message):
        resolve(cwd=tmp_path)


def test_missing_explicit_config_file():
    with pytest.raises(UsageError, match="does not exist"):
        read_config("/no/such/parity.toml")


def test_original_precedence_option_config_environment(tmp_path):
    env = {"PERCEPIANO_ORIGINAL": "/from/env"}
    options = resolve(cwd=tmp_path, environ=env)
    assert options.original == "/from/env" and options.original_from_env
    (tmp_path / "parity.toml").write_text('original = "checkout"\n')
    options = resolve(cwd=tmp_path, environ=env)
    assert options.original == str((tmp_path / "checkout").resolve()) and not options.original_from_env
    assert resolve({"original": "/cli"}, cwd=tmp_path, environ=env).original == "/cli"


def test_reference_on_the_command_line_beats_an_original_from_config_or_env(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (tmp_path / "parity.toml").write_text('original = "checkout"\n')
    options = resolve({"reference": str(bundle)}, cwd=tmp_path, environ={"PERCEPIANO_ORIGINAL": "/env"})
    assert options.reference == str(bundle) and options.original is None


def test_contradictions_are_refused_up_front(tmp_path):
    with pytest.raises(UsageError, match="give one of them"):
        resolve({"reference": str(tmp_path), "original": str(tmp_path)}, cwd=tmp_path)
    with pytest.raises(UsageError, match="cannot be combined with --replica"):
        resolve({"deviation": "adamw", "replica": "m:f"}, cwd=tmp_path)
    with pytest.raises(UsageError, match="needs --compare-to"):
        resolve({"fail_on_new": True}, cwd=tmp_path)
    with pytest.raises(UsageError, match="module:factory"):
        resolve({"replica": "just_a_module"}, cwd=tmp_path)
    with pytest.raises(UsageError, match="no such file"):
        resolve({"waivers": str(tmp_path / "none.toml")}, cwd=tmp_path)


def test_a_deviation_picks_its_own_variant_unless_one_is_given(tmp_path):
    assert resolve({"deviation": "attention-no-mask"}, cwd=tmp_path).variant == "han-measure"
    assert resolve({"deviation": "attention-no-mask", "variant": "han-total"}, cwd=tmp_path).variant == "han-total"


def test_unknown_keyword_for_the_fixture():
    with pytest.raises(UsageError, match="unknown option"):
        resolve_options({"batchez": 1}, use_config_file=False, environ=NO_ENV)


def test_min_notes_matches_the_batch_generator():
    from percepiano_parity.batches import synthetic as batches
    from percepiano_parity.commands import options as config

    assert config.MIN_NOTES == batches.MIN_NOTES  # one constant, in core.options
