"""The catalog of known deviations: one rule per mistake a re-implementation of PercePiano can make.

Ids are stable (reports, waivers and CI refer to them). Each rule matches a pattern of findings only.
Order matters: specific rules run before generic ones and claim the findings they explain, including the
consequences downstream of the level where the deviation sits, so one deviation becomes one explanation.

How look-alike deviations are told apart (all from findings):

* structure first: a changed attention projection, a missing context vector, an added normalisation, the
  head's width, the beat LSTM's shape, dropout settings and another variant's modules each leave their own
  structure findings;
* without any structure change, the forward check's evidence says where the mismatches sit
  (`evidence["pattern"]`, see compare.aggregate.PatternAgg) and the attention check how much attention mass
  each side puts on padding:

  ============================  ==================  ===============================================================
  rule                          root level          pattern
  ============================  ==================  ===============================================================
  PP-PADDED-LSTM                note (an LSTM)      the longest item of every batch agrees; shorter items differ
  PP-BOUNDARY-RULE              beat/measure nodes  only batches whose beat/measure numbers jump by 2 or more differ
  PP-SPAN-COUNT-QUIRK           *_spanned           every differing note is zero in the original and sits past the
                                                    original's span note count
  PP-SPAN-OFFSET                *_spanned           notes of each item's first beat agree, later notes differ
  PP-PADDING-MASK-QUIRK         pooled              the original attends to padded rows, the candidate does not
  PP-ATTENTION-MASK             pooled              the candidate attends to padded rows the original masks
  ============================  ==================  ===============================================================
"""

from __future__ import annotations

from percepiano_parity.diagnosis.rule import Rule
from percepiano_parity.diagnosis.rules import (
    attention,
    data,
    generic,
    hierarchy,
    numerics,
    recipe,
    relations,
    structure,
)

# Specific families first; every rule's priority fixes the order in which diagnosis tries it.
RULES: list[Rule] = [*numerics.NON_FINITE_RULES, *numerics.RAISE_RULES, *numerics.DERIVED_INPUT_RULES,
                     *structure.RULES, *numerics.PRECISION_RULES, *attention.RULES,
                     *hierarchy.RULES, *relations.RULES, *recipe.RULES, *data.FEATURE_RULES, *data.DATASET_RULES,
                     *data.OUTCOME_RULES, *generic.RULES]


def rule_by_id(rule_id: str) -> Rule | None:
    return next((r for r in RULES if r.id == rule_id), None)


__all__ = ["RULES", "rule_by_id"]
