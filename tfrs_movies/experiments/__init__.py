"""Experiments on trained runs: what the loss weights trade, and what the embeddings learned.

* :mod:`~tfrs_movies.experiments.grid`: weight pairs × seeds, run names and configs.
* :mod:`~tfrs_movies.experiments.sweep`: :func:`run_sweep` trains (or resumes) every grid cell
  on one split and scores each exported pipeline.
* :mod:`~tfrs_movies.experiments.report` and :mod:`~tfrs_movies.experiments.plot`: the sweep's
  ``results.csv``, ``results.md`` and ``tradeoff.png``.
* :mod:`~tfrs_movies.experiments.compare`: runs and sweeps side by side.
* :mod:`~tfrs_movies.experiments.new_users`: users held out of training, served from a few
  ratings.
* :mod:`~tfrs_movies.experiments.carves`: the model against EASE and iALS on other validation
  carves than the run's (paired per user, without the test split).
* :mod:`~tfrs_movies.experiments.analysis` (with ``embeddings`` and ``analysis_plot``): KMeans
  clusters of the movie embeddings, their genre purity, and a 2-D projection.
* :mod:`~tfrs_movies.experiments.files`: PNG figures, written atomically.
"""

import importlib

# Re-exported lazily, so each command loads only what it needs. Measured on this 2-core machine
# under load: importing sklearn.cluster + decomposition took 5.8-10.4 s, matplotlib 1.4-2.9 s and
# tfrs_movies.train (TensorFlow) 10.6-14.8 s; with lazy names `compare_runs` imports in 0.5 s
# (none of the three), `analyze_run` without TensorFlow, `run_sweep` without sklearn.
_LAZY = {
    "AnalysisResult": "analysis",
    "analyze_run": "analysis",
    "format_analysis": "analysis",
    "CarveComparison": "carves",
    "compare_on_carves": "carves",
    "compare_runs": "compare",
    "expand_runs": "compare",
    "format_comparison": "compare",
    "RunRecord": "grid",
    "WeightPair": "grid",
    "parse_seeds": "grid",
    "parse_weights": "grid",
    "run_config": "grid",
    "run_name": "grid",
    "evaluate_new_users": "new_users",
    "measure_new_users": "new_users",
    "Y_METRICS": "plot",
    "pareto_front": "plot",
    "plot_tradeoff": "plot",
    "results_markdown": "report",
    "summarize": "report",
    "write_results_csv": "report",
    "SweepResult": "sweep",
    "run_sweep": "sweep",
    "train_run": "sweep",
    "write_summaries": "sweep",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f"tfrs_movies.experiments.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'tfrs_movies.experiments' has no attribute {name!r}")
