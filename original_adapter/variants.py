"""Variant ids (the user interface) and how each maps onto the original's classes.

The original chooses its model in `__main__.py` from flags: `--multi_level X` builds
`VirtuosoNetMultiLevel(multi_level=X)`, `--ablation` builds `VirtuosoNetSingle`, no flag builds
`VirtuosoNet` (whose yml-selected performance encoder is `HanSkipEncoder`). The head table says where
each variant's final contractor and context attention live, so the subject can record them.
"""

from __future__ import annotations

from percepiano_parity.original_adapter.errors import OriginalLoadError

# variant id -> (class in the original's model_m2pf.py, its multi_level argument or None)
VARIANTS: dict[str, tuple[str, str | None]] = {
    "han-total": ("VirtuosoNetMultiLevel", "total_note_cat"),
    "han-measure": ("VirtuosoNetMultiLevel", "measure"),
    "han-beat": ("VirtuosoNetMultiLevel", "beat"),
    "han-voice": ("VirtuosoNetMultiLevel", "voice"),
    "bilstm-note": ("VirtuosoNetMultiLevel", "note"),
    "virtuosonet-skip": ("VirtuosoNet", None),
    "single-7layer": ("VirtuosoNetSingle", None),
}

# variant id -> (contractor module path or None, head context-attention module path)
HEADS: dict[str, tuple[str | None, str]] = {
    "han-total": ("performance_contractor", "performance_final_attention"),
    "han-measure": (None, "measure_attention"),  # the top-level head, not score_encoder.measure_attention
    "han-beat": (None, "beat_attention"),  # likewise, not score_encoder.beat_attention
    "han-voice": ("voice_contractor", "voice_attention"),
    "bilstm-note": ("note_contractor", "note_attention"),
    "virtuosonet-skip": ("performance_encoder.performance_contractor",
                         "performance_encoder.performance_final_attention"),
    "single-7layer": ("note_contractor", "note_attention"),
}

# The --multi_level value of each multi-level variant, inverted for reading the training scripts.
VARIANT_BY_MULTI_LEVEL: dict[str, str] = {ml: vid for vid, (_, ml) in VARIANTS.items() if ml is not None}


def variant_ids() -> tuple[str, ...]:
    """Every variant id, in a stable order."""
    return tuple(VARIANTS)


def check_variant(variant_id: str) -> tuple[str, str | None]:
    """(class name, multi_level) of a variant; OriginalLoadError naming the choices when unknown."""
    try:
        return VARIANTS[variant_id]
    except (KeyError, TypeError):
        raise OriginalLoadError(
            f"unknown variant {variant_id!r}: choose one of {', '.join(VARIANTS)}"
        ) from None
