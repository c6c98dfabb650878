"""The shared vocabulary every stage speaks: level names, findings, the report model, errors."""
