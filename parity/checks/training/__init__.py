"""Training and data checks: the recipe, K-step trajectories and the data operations (see suite.checks_for)."""
