"""Stage 3: the comparison engine. Map weights, run both subjects on the same batches, fold their taps into
streaming aggregates against measured noise floors; it measures and never judges.
"""
