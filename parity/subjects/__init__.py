"""Stage 2: the sides of an audit. A subject wraps one model (the original through original_adapter, the
bundled replica, a user's model through its adapter, a recorded bundle) and records taps on a batch.
"""
