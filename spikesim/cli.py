"""spikesim: train, evaluate, validate and benchmark spiking recurrent networks.

The command line: demo | gradcheck | bench | sweep | train TASK | eval TASK | energy TASK.

Each task module (``spikesim.tasks.<name>``) provides ``add_<verb>_args(parser, name)`` and
``run_<verb>(args)`` for the verbs train, eval and energy.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time

from . import options
from .tasks import TASKS, task_module


def _finish_help(parser):
    """End every option's help with its default (argparse shows choices in the metavar)."""
    for action in parser._actions:
        default = action.default
        unset = any(default is v for v in (None, False, argparse.SUPPRESS))
        if (action.option_strings and not unset and not isinstance(default, list)
                and "%(default)" not in (action.help or "") and action.help != argparse.SUPPRESS):
            action.help = f"{action.help or ''} (default: %(default)s)".strip()
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _finish_help(sub)


def _task_module(name):
    try:
        return task_module(name)
    except ModuleNotFoundError as e:      # a task not built yet in this checkout
        raise SystemExit(f"spikesim: task {name!r} is not available ({e})") from e


def _has_verb(name, verb) -> bool:
    """Whether task ``name`` provides the verb (a task that cannot be imported is listed, and
    says why when it is used)."""
    try:
        return hasattr(_task_module(name), f"run_{verb}")
    except SystemExit:
        return True


def cmd_demo(args) -> int:
    """Train a small SRNN on the built-in delayed-cue task and report test accuracy."""
    from .network import Network
    from .tasks import synthetic
    from .train import manifest
    from .train.evaluate import evaluate
    from .train.trainer import Trainer

    train, test = synthetic.datasets(seed=args.seed)
    net = Network(synthetic.network_config(), seed=args.seed, backend=args.device)
    cfg = synthetic.train_config(epochs=args.epochs, seed=args.seed)
    print(f"spikesim demo: delayed-cue task, {len(train)} train / {len(test)} test sequences of "
          f"{synthetic.T} steps, network {synthetic.N_IN} -> {net.config.layers[0].size} rec "
          f"ALIF -> {synthetic.N_CLASSES} integrator, {cfg.epochs} epochs")
    t0 = time.time()
    trainer = Trainer(net, cfg, train, test, out_dir=args.out, progress=not args.quiet)
    if args.out and args.resume:
        trainer.resume()
    trainer.fit()
    res = evaluate(net, test, 256)
    print(f"test accuracy {res['accuracy']:.4f} ({res['correct']}/{res['count']}), "
          f"hidden firing rate {res['firing_rates'][0]:.3f}, {time.time() - t0:.1f} s")
    if args.json:
        manifest.write_result(args.json, {"task": "delayed_cue", "accuracy": res["accuracy"],
                                           "n_samples": res["n_samples"], "seed": args.seed,
                                           "epochs": cfg.epochs}, args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spikesim", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="train on the built-in synthetic delayed-cue task")
    d.add_argument("--epochs", type=options.positive_int, default=10)
    options.add_run_args(d, "folder for checkpoints and history (optional)", required=False)
    d.add_argument("--json", default=None, help="write the result as JSON here")
    options.add_device_arg(d)
    d.set_defaults(func=cmd_demo)

    g = sub.add_parser("gradcheck", help="finite-difference and reference checks of every gradient")
    g.add_argument("--quick", action="store_true", help="fewer cases and sampled elements")
    g.add_argument("--only", nargs="+", default=None, metavar="CASE",
                   help="run only the cases of these names (surrogate functions always run)")
    options.add_device_arg(g)
    g.set_defaults(func=lambda a: importlib.import_module("validation.gradcheck").run(a))

    b = sub.add_parser("bench", help="time one training step of the benchmark configurations, "
                                     "or study any network's scaling, kernels and memory")
    importlib.import_module("validation.bench").add_args(b)
    b.set_defaults(func=lambda a: importlib.import_module("validation.bench").run(a))

    sw = sub.add_parser("sweep", help="many train runs (seeds, a grid, or an Optuna search) "
                                      "on Dask: a local cluster or --scheduler")
    importlib.import_module("spikesim.sweep.command").add_args(sw)
    sw.set_defaults(func=lambda a: importlib.import_module("spikesim.sweep.command").run(a))

    helps = {"train": "train a task", "eval": "evaluate a checkpoint on a task's data",
             "energy": "count operations and energy of a checkpoint on a task's data, against "
                       "dense RNN/GRU/LSTM equivalents"}
    for verb in ("train", "eval", "energy"):
        names = [n for n in TASKS if _has_verb(n, verb)]
        v = sub.add_parser(verb, help=f"{helps[verb]} ({', '.join(names)})")
        vs = v.add_subparsers(dest="task", required=True)
        for name in names:
            tp = vs.add_parser(name)
            tp.set_defaults(task=name)
            tp.set_defaults(func=(lambda a, verb=verb:
                                  getattr(_task_module(a.task), f"run_{verb}")(a)))
            try:
                getattr(_task_module(name), f"add_{verb}_args")(tp, name)
            except SystemExit:
                tp.set_defaults(func=lambda a: _task_module(a.task))
    _finish_help(p)
    return p


def _command_name(args) -> str:
    return " ".join(["spikesim", args.command] + ([args.task] if getattr(args, "task", None)
                                                  else []))


def _check_device(device) -> None:
    """Raise ImportError or RuntimeError naming what is missing where ``--device`` cannot run
    (the CUDA backend: the package numba-cuda, or a GPU and its driver)."""
    if device not in (None, "cpu"):
        from .backends import check_backend
        check_backend(device)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    name = _command_name(args)
    try:        # the device, before any work starts
        _check_device(getattr(args, "device", None))
    except (ImportError, RuntimeError) as e:
        print(f"{name}: error: --device {args.device}: {e}", file=sys.stderr)
        return 2
    try:        # every output path, before any work starts
        created = options.check_outputs(args, training=args.command in ("train", "demo"))
    except options.OptionError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return 2
    rc = 1
    try:
        rc = int(args.func(args) or 0)
        return rc
    except KeyboardInterrupt:
        print("interrupted; a run with --out can be continued with --resume", file=sys.stderr)
        rc = 130
        return rc
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        rc = 2
        return rc
    finally:
        if rc != 0:
            options.remove_if_empty(created)


if __name__ == "__main__":
    sys.exit(main())
