"""Stage 1: canonical batches. Synthetic batches with the statistics of the real score excerpts, edge
cases, and the self-test batches; both sides of an audit are fed the same ones.
"""
