"""Reading a checkout's training scripts (on the miniature checkout's scripts)."""

from __future__ import annotations

from pathlib import Path

from percepiano_parity.original_adapter.scripts import analyse_scripts

MINI = Path(__file__).resolve().parents[1] / "fixtures" / "mini_checkout"
LEVELS = "virtuoso/scripts/demo/train_levels.sh"


def test_trained_variants_follow_mains_choice_of_class() -> None:
    analysis = analyse_scripts(MINI)
    assert analysis.scripts == ("virtuoso/scripts/demo/eval.sh", "virtuoso/scripts/demo/train_base.sh", LEVELS)
    trained = analysis.trained()
    assert set(trained) == {"bilstm-note", "han-measure", "virtuosonet-skip"}
    # loops expand: 2 levels x 1 lr x 2 folds, plus the plain run
    assert len(analysis.training_runs) == 5
    assert [str(e) for e in trained["bilstm-note"]] == [
        f"{LEVELS}:10: python virtuoso/__main__.py",
        f"{LEVELS}:18: --multi_level $level",
        f'{LEVELS}:2: levels=("note" "measure")',
        f'{LEVELS}:4: for level in "${{levels[@]}}"',
    ]
    assert str(trained["virtuosonet-skip"][0]).startswith("virtuoso/scripts/demo/train_base.sh:1: python")


def test_variants_no_script_trains_are_explained() -> None:
    not_trained = analyse_scripts(MINI).not_trained()
    assert set(not_trained) == {"han-total", "han-beat", "han-voice", "single-7layer"}
    assert "--ablation" in not_trained["single-7layer"]  # the commented-out command does not count
    assert "--multi_level total_note_cat" in not_trained["han-total"]  # evaluated, never trained
    evaluated = [r for r in analyse_scripts(MINI).runs if r.kind == "eval"]
    assert [(r.variant, r.entry) for r in evaluated] == [("han-total", "virtuoso/eval_main.py")]


def test_training_arguments_come_with_their_lines() -> None:
    args = analyse_scripts(MINI).training_args()
    assert set(args["--lr"]) == {"1e-4", "2.5e-5"}
    assert [str(e) for e in args["--lr"]["1e-4"]] == [
        f"{LEVELS}:16: --lr $lr", f"{LEVELS}:1: lrs=(1e-4)", f'{LEVELS}:6: for lr in "${{lrs[@]}}"',
    ]
    assert set(args["--batch_size"]) == {"4", "8"}
    assert set(args["--no_augment"]) == {"", None}  # bare flag in one script, absent in the other
    assert str(args["--no_augment"][None][0]).startswith("virtuoso/scripts/demo/train_base.sh:1:")
    assert set(args["--num_labels"]) == {"19", None}
    assert analyse_scripts(MINI).to_dict()["training_args"]["--no_augment"].keys() == {"", "<absent>"}


def test_a_checkout_without_scripts_trains_nothing(tmp_path: Path) -> None:
    analysis = analyse_scripts(tmp_path)
    assert analysis.scripts == () and analysis.trained() == {}
    assert set(analysis.not_trained()) == {"han-total", "han-measure", "han-beat", "han-voice", "bilstm-note",
                                           "virtuosonet-skip", "single-7layer"}
