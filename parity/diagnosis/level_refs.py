"""Where in the original each level is computed, so an explanation points at the code for its own level.

Each entry is a SourceRef (file under virtuoso/virtuoso/ and a regular expression; the first matching line of
the user's checkout is cited at run time). Operation-level explanations cite the original's own line of the
counterpart operation instead (recorded by the operation trace).
"""

from __future__ import annotations

from pathlib import Path

from percepiano_parity.diagnosis.rule import SourceRef

LEVEL_REFS: dict[str, tuple[SourceRef, ...]] = {
    "embedding": (SourceRef("model_m2pf.py", r"x_embedded = self\.note_embedder\(x\)"),),
    "note": (SourceRef("encoder_score.py", r"note_out,\s*_ = self\.lstm\(x\)"),),
    "voice": (SourceRef("encoder_score.py", r"def run_voice_net"),),
    "beat_nodes": (SourceRef("encoder_score.py", r"beat_nodes = make_higher_node\(hidden_out"),
                   SourceRef("model_utils.py", r"def make_higher_node")),
    "beat": (SourceRef("encoder_score.py", r"beat_hidden_out = run_hierarchy_lstm_with_pack"),),
    "measure_nodes": (SourceRef("encoder_score.py", r"measure_nodes = make_higher_node\(beat_hidden_out"),),
    "measure": (SourceRef("encoder_score.py", r"measure_hidden_out = run_hierarchy_lstm_with_pack"),),
    "beat_spanned": (SourceRef("encoder_score.py", r"beat_out_spanned = span_beat_to_note_num"),
                     SourceRef("model_utils.py", r"def span_beat_to_note_num")),
    "measure_spanned": (SourceRef("encoder_score.py", r"measure_out_spanned = span_beat_to_note_num"),),
    "total_note_cat": (SourceRef("encoder_score.py", r"'total_note_cat': torch\.cat"),),
    "contracted": (SourceRef("model_m2pf.py", r"self\.performance_contractor = nn\.Linear"),),
    "pooled": (SourceRef("module.py", r"softmax_weight = torch\.softmax\(similarity, dim=1\)"),
               SourceRef("module.py", r"class ContextAttention")),
    "logits": (SourceRef("model_m2pf.py", r"self\.out_fc = nn\.Sequential"),),
}


# What each level is in the original, in a few words (the explanation of a level no rule names cites it).
LEVEL_WHAT: dict[str, str] = {
    "embedding": "the Linear note embedder applied to the packed note features",
    "note": "the note Bi-LSTM over the embedded notes, packed with each piece's own length",
    "voice": "one Bi-LSTM run per voice, its output scattered back to the voice's notes (zeros for voice 0)",
    "beat_nodes": "per beat, a multi-head context attention (tanh projection, softmax over the beat's notes) "
                  "pooling cat(note, voice)",
    "beat": "the beat Bi-LSTM over the beat nodes",
    "measure_nodes": "per measure, the context attention pooling the beat outputs (boundaries in beat space)",
    "measure": "the measure Bi-LSTM over the measure nodes",
    "beat_spanned": "each note copies its beat's LSTM output",
    "measure_spanned": "each note copies its measure's LSTM output",
    "total_note_cat": "cat(note, voice, beat_spanned, measure_spanned) along the features",
    "contracted": "the head's contractor Linear",
    "pooled": "the head's context attention over time (softmax over the notes, padding masked by a zero row sum)",
    "logits": "out_fc: dropout, Linear, exact GELU, dropout, Linear",
}


def level_refs(level: str | None, root: Path | None) -> list[str]:
    """"path:line" citations of the original's code for `level` in the checkout at `root`."""
    refs = LEVEL_REFS.get(level or "", ())
    return [r for r in (ref.locate(root) for ref in refs) if r]


def checkout_relative(site: str | None, root: Path | None) -> str | None:
    """An absolute "file:line" inside the checkout as "virtuoso/virtuoso/file.py:line" (None outside it)."""
    if not site or root is None:
        return None
    path, _, line = site.rpartition(":")
    try:
        rel = Path(path).resolve().relative_to(Path(root).resolve())
    except ValueError:
        return None
    return f"{rel.as_posix()}:{line}"
