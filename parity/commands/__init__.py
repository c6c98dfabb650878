"""The commands a user runs (`parity check`, selftest, doctor, record, ...), their options, and the
integrations that run them (pytest plugin). The only place that strings the stages together.
"""
