"""Real PercePiano segments: alignment of performances to their scores, the prepared cache (features through
the original's own pipeline, note locations, labels, folds) and the batches its loader would make of them.

The original's code never runs here: `original_adapter.features` does that, and `commands.data_prepare` strings
the two together. What lives here is data: names, folds, alignment with parangonar, the cache format, the
loader order and the hazard statistics.
"""
