"""``spikesim sweep TASK``: the command line of a sweep."""
from __future__ import annotations

import sys
from pathlib import Path

from ..options import positive_int


def add_args(parser):
    parser.add_argument("task", help="a task of spikesim train (demo, ecg, smnist, psmnist, "
                                     "shd, ssc)")
    parser.add_argument("--out", required=True, help="the sweep folder")
    parser.add_argument("--seeds", default="1",
                        help="a count (8: seeds 0-7), a range (0-7) or a list (0,3,5)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2",
                        help="a grid dimension: an option of spikesim train TASK and its values")
    parser.add_argument("--trials", type=positive_int, default=None,
                        help="an Optuna search of this many finished trials instead of a grid")
    parser.add_argument("--search", action="append", default=[],
                        metavar="KEY=float:LO:HI[:log]|int:LO:HI|cat:A,B",
                        help="a search dimension (with --trials)")
    parser.add_argument("--args", default="",
                        help="fixed options passed to every trial, e.g. \"--epochs 50\"")
    parser.add_argument("--scheduler", default=None,
                        help="address of a running Dask scheduler (default: a local cluster)")
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="worker processes of the local cluster (default: one per core)")
    parser.add_argument("--threads", type=positive_int, default=1, help="kernel threads per trial")
    parser.add_argument("--resume", action="store_true", help="continue a stopped sweep")


def run(args) -> int:
    import shlex

    from . import spec as sp
    from . import summary
    from .driver import make_client, prepare, run_grid, run_search
    try:
        import dask.distributed  # noqa: F401
        if args.trials:
            import optuna  # noqa: F401
    except ImportError as e:
        print(f"spikesim: error: sweeps need the sweep extra (pip install -e \".[sweep]\"): {e}",
              file=sys.stderr)
        return 2
    from ..tasks import task_module
    try:
        mod = task_module(args.task)
        if not hasattr(mod, "run_train"):
            raise ValueError(f"task {args.task!r} cannot be trained")
        fixed = shlex.split(args.args)
        seeds = sp.parse_seeds(args.seeds)
        settings = sp.parse_settings(args.set)
        space = sp.SearchSpace.parse(args.search) if args.trials else None
        if args.trials is not None and args.trials < 1:
            raise ValueError(f"--trials must be a positive integer, got {args.trials}")
        if space and settings:
            raise ValueError("use either --set (a grid) or --search with --trials, not both")
        _check_options(mod, args.task, fixed, list(settings) + list(space.dims if space else []))
        trials = None if space else sp.grid_trials(settings, seeds)
        out = Path(args.out)
        prepare(out, {"task": args.task, "settings": settings, "seeds": seeds,
                      "search": {k: list(v) for k, v in space.dims.items()} if space else None,
                      "trials": args.trials, "fixed": fixed}, args.resume)
    except ValueError as e:
        print(f"spikesim: error: {e}", file=sys.stderr)
        return 2
    client, cluster = make_client(args.scheduler, args.workers)
    workers = len(client.scheduler_info()["workers"]) or 1
    print(f"spikesim sweep {args.task}: {len(trials) if trials else args.trials} trials on "
          f"{workers} workers ({args.scheduler or 'local cluster'}), folder {out}")
    try:
        if space:
            run_search(client, args.task, out, space, args.trials, seeds[0], fixed, workers,
                       args.threads)
        else:
            run_grid(client, args.task, out, trials, fixed, args.threads)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    rows = summary.write(out, f"sweep of spikesim train {args.task}", search=bool(space))
    print(summary.markdown(rows, f"sweep of spikesim train {args.task}"))
    return 0


def _check_options(mod, task, fixed, keys):
    """Every option a trial will get exists for ``spikesim train TASK`` (checked before any
    work starts)."""
    import argparse
    p = argparse.ArgumentParser(prog=f"spikesim train {task}", add_help=False)
    mod.add_train_args(p, task)
    known = {o for a in p._actions for o in a.option_strings}
    from .spec import option
    bad = [option(k) for k in keys if option(k) not in known]
    bad += [f for f in fixed if f.startswith("--") and f.split("=")[0] not in known]
    if bad:
        raise ValueError(f"spikesim train {task} has no option {', '.join(bad)}")
