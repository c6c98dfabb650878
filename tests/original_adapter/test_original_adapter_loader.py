"""Loader mechanics of original_adapter, on a miniature checkout (tests/fixtures/mini_checkout).

The miniature has the real checkout's layout and quirks (flat module names, a numpy-1 only import, a
package importing pretty_midi, a flat import from inside that package, an import done at call time) but
none of its code, so these tests run everywhere.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy
import pytest

from percepiano_parity import original_adapter
from percepiano_parity.original_adapter import OriginalLoadError, load
from percepiano_parity.original_adapter.isolation import top_level_names
from percepiano_parity.original_adapter.locate import (
    ENV_VAR,
    VALIDATED_FINGERPRINT,
    describe,
    find_project_config,
    fingerprint,
    resolve_root,
)
from percepiano_parity.original_adapter.shims import MODEL_SHIMS, Shim, failing

MINI = Path(__file__).resolve().parents[1] / "fixtures" / "mini_checkout"
CODE = Path("virtuoso") / "virtuoso"


@pytest.fixture
def mini(tmp_path: Path) -> Path:
    """A fresh copy of the miniature checkout (tests may edit it)."""
    root = tmp_path / "mini"
    shutil.copytree(MINI, root)
    return root


@pytest.fixture(autouse=True)
def _no_ambient_original(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Neither the environment nor a pyproject around the test may choose the checkout."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)


def flat_names_left(root: Path) -> list[str]:
    """Entries of sys.modules that came from the checkout's code folder."""
    code = (root / CODE).resolve()
    left = []
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and Path(file).resolve().is_relative_to(code):
            left.append(name)
    return left


def expected_shims() -> set[str]:
    expected = set()
    if int(numpy.__version__.split(".")[0]) >= 2:
        expected.add("numpy.lib.arraysetops")
    if importlib.util.find_spec("pretty_midi") is None:
        expected.add("pretty_midi")
    return expected


# -- isolation -----------------------------------------------------------------------------------------
def test_users_own_flat_modules_are_untouched(mini: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    users_utils = types.ModuleType("utils")
    users_utils.WHO = "the user's utils"
    monkeypatch.setitem(sys.modules, "utils", users_utils)
    path_before = list(sys.path)

    original = load(mini)

    assert sys.modules["utils"] is users_utils
    assert sys.path == path_before
    assert flat_names_left(mini) == []
    captured = original.isolated["utils"]
    assert captured is not users_utils and captured.WHO == "mini utils"
    # pyScoreParser's flat `import utils` bound the checkout's utils, not the user's
    assert original.isolated["pyScoreParser.helpers"].OWNER == "mini utils"


def test_every_loaded_module_is_recorded_with_its_file(mini: Path) -> None:
    original = load(mini)
    code = (mini / CODE).resolve()
    assert {"utils", "module", "model_utils", "model_m2pf", "encoder_score", "encoder_perf", "note_embedder",
            "model_constants", "data_process", "pyScoreParser", "pyScoreParser.xml_utils"} <= set(original.modules)
    for name, file in original.modules.items():
        assert Path(file).resolve().is_relative_to(code), name
    assert original.modules["module"] == str(code / "module.py")


def test_two_checkouts_in_one_process_are_independent(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    shutil.copytree(MINI, first)
    shutil.copytree(MINI, second)
    (second / CODE / "model_constants.py").write_text('MARK = "second"\n')
    one, two = load(first), load(second)
    for name in ("utils", "module", "model_m2pf", "pyScoreParser"):
        assert one.isolated[name] is not two.isolated[name]
    assert one.isolated["model_constants"].MARK == "mini constants"
    assert two.isolated["model_constants"].MARK == "second"
    assert flat_names_left(first) == flat_names_left(second) == []


def test_imports_inside_functions_are_found_and_keep_working(mini: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = load(mini)
    assert any(entry.startswith("model_utils.py:") and "import model_constants" in entry
               for entry in original.lazy_imports)
    # A user's own module with the same name must not be what the original sees at call time.
    users = types.ModuleType("model_constants")
    users.MARK = "the user's constants"
    monkeypatch.setitem(sys.modules, "model_constants", users)
    with original.isolated.running():
        assert original.isolated["model_utils"].constants_mark() == "mini constants"
    assert sys.modules["model_constants"] is users
    assert flat_names_left(mini) == []


# -- shims ---------------------------------------------------------------------------------------------
def test_shims_are_recorded_and_removed_afterwards(mini: Path) -> None:
    original = load(mini)
    names = {s["name"] for s in original.shims}
    assert names == expected_shims()
    assert all(s["reason"] for s in original.shims)
    for name in names:
        assert name not in sys.modules
    assert "arraysetops" not in vars(numpy.lib)
    if "numpy.lib.arraysetops" in names:
        assert original.isolated["utils"].isin is numpy.isin


def test_a_shim_is_offered_only_when_the_real_import_fails() -> None:
    assert failing([Shim("json", "importable here", lambda m: None)]) == []
    missing = failing([Shim("percepiano_parity_no_such_module", "not installed", lambda m: None)])
    assert [s.name for s, _ in missing] == ["percepiano_parity_no_such_module"]
    assert "No module named" in missing[0][1]
    assert {s.name for s in MODEL_SHIMS} == {"numpy.lib.arraysetops", "pretty_midi"}


# -- location, fingerprint, warnings -------------------------------------------------------------------
def test_fingerprint_is_stable_and_changes_with_a_model_file(mini: Path) -> None:
    before = fingerprint(mini)
    assert fingerprint(mini) == before and len(before) == 64
    with (mini / CODE / "module.py").open("a") as handle:
        handle.write("# edited\n")
    assert fingerprint(mini) != before


def test_unvalidated_checkout_loads_with_a_warning(mini: Path) -> None:
    original = load(mini)
    assert original.revision == f"sha256:{fingerprint(mini)}" != f"sha256:{VALIDATED_FINGERPRINT}"
    assert len(original.warnings) == 1 and "unvalidated checkout" in original.warnings[0]


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_checkout_is_described_by_its_commit(mini: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(mini), *args], check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "mini")
    info = describe(mini)
    assert info.commit == git("rev-parse", "HEAD").strip()
    assert info.revision == info.commit
    assert "unvalidated checkout" in info.warnings[0]


def test_location_precedence_argument_then_config_then_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    roots = {}
    for name in ("arg", "config", "env"):
        roots[name] = tmp_path / name
        shutil.copytree(MINI, roots[name])
    monkeypatch.setenv(ENV_VAR, str(roots["env"]))
    config = {"tool": {"parity": {"original": str(roots["config"])}}}
    assert resolve_root(roots["arg"], config) == roots["arg"].resolve()
    assert resolve_root(None, config) == roots["config"].resolve()
    assert resolve_root(None, {"original": str(roots["config"])}) == roots["config"].resolve()
    assert resolve_root(None, None) == roots["env"].resolve()
    # the inner code folder is accepted for the checkout root
    assert resolve_root(roots["arg"] / CODE) == roots["arg"].resolve()


def test_project_config_is_found_and_relative_paths_resolved(mini: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[tool.parity]\noriginal = "../mini"\n')
    monkeypatch.chdir(project / "sub")
    table = find_project_config()
    assert table["original"] == str(mini.resolve())
    assert load().root == mini.resolve()


# -- one-line errors for every bad input ---------------------------------------------------------------
def assert_one_line(error: pytest.ExceptionInfo[OriginalLoadError], *parts: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(OriginalLoadError) as error:
        load(tmp_path / "nowhere")
    assert_one_line(error, "does not exist", "nowhere")


def test_nothing_given(tmp_path: Path) -> None:
    with pytest.raises(OriginalLoadError) as error:
        load()
    assert_one_line(error, "no PercePiano checkout given", ENV_VAR)


def test_directory_that_is_not_a_checkout(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(OriginalLoadError) as error:
        load(tmp_path / "empty")
    assert_one_line(error, "is not a PercePiano checkout", "missing", "virtuoso/virtuoso/model_m2pf.py")


def test_failing_import_names_the_missing_package(mini: Path) -> None:
    target = mini / CODE / "encoder_perf.py"
    lines = target.read_text().splitlines()
    target.write_text("\n".join([*lines, "import percepiano_parity_missing_pkg"]) + "\n")
    with pytest.raises(OriginalLoadError) as error:
        load(mini)
    assert_one_line(error, "percepiano_parity_missing_pkg", "install percepiano_parity_missing_pkg",
                    f"encoder_perf.py:{len(lines) + 1}")
    assert flat_names_left(mini) == []
    assert not expected_shims() & set(sys.modules)  # the shims left with the failed import


def test_unknown_yml(mini: Path) -> None:
    original = load(mini)
    with pytest.raises(OriginalLoadError) as error:
        original.build("han-total", yml="ymls/no_such.yml")
    assert_one_line(error, "YAML file not found", "no_such.yml")


def test_unknown_variant(mini: Path) -> None:
    original = load(mini)
    with pytest.raises(OriginalLoadError) as error:
        original.build("han-everything")
    assert_one_line(error, "unknown variant 'han-everything'", "han-total", "single-7layer")


# -- building through the original's classes -----------------------------------------------------------
def test_build_uses_the_checkouts_class_and_config(mini: Path, capsys: pytest.CaptureFixture[str]) -> None:
    original = load(mini)
    model = original.build("han-measure")
    assert type(model).__name__ == "VirtuosoNetMultiLevel"
    assert type(model).__module__ == "model_m2pf"
    assert model.levels == ["measure"]
    assert model.note_embedder.fc.in_features == 79  # ModelConfig wins over the yml's 78
    assert model.out_fc.out_features == 19
    assert capsys.readouterr().out == ""  # the constructor's print is swallowed
    assert original_adapter.variant_ids() == tuple(original_adapter.VARIANTS)


def test_top_level_names_cover_files_and_packages(mini: Path) -> None:
    names = top_level_names(mini / CODE)
    assert {"utils", "module", "model_m2pf", "pyScoreParser"} <= names
