"""Sweeps of ``spikesim train`` runs over seeds, grids of settings, or an Optuna search, on Dask
distributed: a local cluster by default, any Dask scheduler unchanged (``--scheduler``).

- ``spec``: which trials a sweep runs (seeds x grid, or a search space), their names and
  command lines;
- ``trial``: one trial, run inside a worker: an ordinary training run folder, resumable;
- ``driver``: the cluster, submission, fault handling, resume, the Optuna study;
- ``summary``: the table over seeds per configuration (JSON, Markdown) and the plot.

Needs the ``sweep`` extra (``pip install -e ".[sweep]"``: dask[distributed], optuna).
"""
