"""The catalog's rules, one module per family of deviations (see diagnosis.catalog for the whole list)."""
