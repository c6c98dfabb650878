"""Diagnosis: turn findings into explanations with stable ids (see diagnosis.catalog and diagnosis.diagnose)."""

from __future__ import annotations

from percepiano_parity.diagnosis.catalog import RULES, rule_by_id
from percepiano_parity.diagnosis.diagnose import diagnose
from percepiano_parity.diagnosis.rule import Rule

__all__ = ["RULES", "Rule", "diagnose", "rule_by_id"]
