"""Relation tests: measured statements of how the candidate's value relates to the original's.

At the root-cause level (the level computed from the original's own inputs) and at the first divergent
operation, a family of relations is tested, each with the residual left after applying it: a permutation of
feature blocks, of batch items, a reversal in time, normalisation over another axis, a softmax temperature,
an operation the replica adds, leaves out or replaces (a missing tanh, another GELU), randomness active in
eval, LSTM gate blocks read in another order. The one that holds becomes the explanation, and its inverse is
the mechanical fix the diagnosis verifies (see diagnosis.rules.relations and diagnosis.fixes).
"""
