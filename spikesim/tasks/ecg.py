"""ECG wave segmentation on QTDB (docs/model.md section 5): 4 -> 36 recurrent LIF -> 6 ALIF outputs,
per-step NLL of log_softmax(output membrane) from step 10 on.

- :func:`network_config` builds the network (``spikesim.model.presets.ecg_config``),
  :func:`train_config` the official training settings; :func:`from_official` maps the official
  PyTorch state_dicts onto a Network, :func:`load_network` reads either those or spikesim's
  own checkpoints.
- ``spikesim eval ecg`` (:func:`run_eval`) and ``spikesim train ecg`` (:func:`run_train`).
  Training holds out ``--val-fraction`` of the 618 training sequences and tests the best
  validation model, or, with ``--val-fraction 0``, trains on all 618 (the official script) and
  tests the epoch of best training accuracy (``--select train``, the official rule) or the last
  one (``--select last``). The recipe that reaches 85 % from scratch
  (experiments/ecg/README.md): ``--val-fraction 0 --batch-size 32 --init-state random --seed 1``.
- Initial states (``--init-state``): the presets of ``spikesim.model.state.INITIAL_STATES``
  (zeros, random-nmi, random-icons), or ``random``: the official random state of the
  checkpoint's variant (:func:`preset_name`).

Evaluation metric (official): accuracy over steps 10..1300 with unlabelled steps counted as
class 0 ("class0" policy of :func:`spikesim.data.qtdb.load_qtdb`); ``accuracy`` is the mean
of the per-sequence accuracies (equal to the pooled step accuracy here, since every QTDB
sequence has 1301 steps).

Boundary detection, as the official script's ``calculate_stats``: a segment onset is a step
where the label changes, its class the new label; onsets are taken within steps 40..1270 (the
official script trims 30 steps at both ends of the scored window 10..1300); each true onset,
in time order, takes the nearest unmatched predicted onset of its class and is a TP when that
is at most ``--tolerance`` steps away (default 37.5 = 150 ms at 250 Hz, the official value),
otherwise a FN; unmatched predicted onsets are FPs. ``--boundary-match optimal`` uses a maximum
one-to-one matching instead.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import CheckpointError
from ..model.config import SURROGATES, NetworkConfig
from ..model.presets import ECG_N_CLASSES as N_CLASSES
from ..model.presets import ECG_N_HIDDEN as N_HIDDEN  # noqa: F401  (part of the task's names)
from ..model.presets import ECG_N_IN as N_IN
from ..model.presets import ECG_START as START
from ..model.presets import ecg_config as network_config
from ..model.state import state_spec
from ..network import Network
from ..options import (
    add_device_arg,
    add_dtype_arg,
    add_run_args,
    fraction,
    nonnegative_float,
    positive_float,
    positive_int,
)
from ..train import manifest
from ..train.evaluate import evaluate
from ..train.trainer import ArrayDataset, TrainConfig, training_seconds

T_STEPS = 1301
CLASS_NAMES = ("P", "PQ", "QR", "RS", "ST", "TP")
VARIANTS = ("nmi", "icons")
DEFAULT_B_J0 = {"nmi": 0.1, "icons": 0.01}
DEFAULT_TOLERANCE = 0.150 * 250     # 150 ms at 250 Hz, as the official evaluation
BOUNDARY_TRIM = 30                   # steps left out at both ends of the scored window


# ----------------------------------------------------------------------------------------------
# Training settings and initial states
# ----------------------------------------------------------------------------------------------
def train_config(epochs: int = 400, batch_size: int = 64, lr: float = 1e-2, seed: int = 0,
                 init_state: str = "zeros") -> TrainConfig:
    """The official ECG settings: Adam lr 1e-2, hidden taus 3x lr, output taus 2x, StepLR(100,
    0.5), batch 64. ``init_state``: a preset, or ``random`` (the NMI script's, random-nmi)."""
    return TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, optimizer="adam",
                       lr_mult={"hidden.tau_*": 3.0, "out.tau_*": 2.0},
                       schedule={"kind": "step", "step_size": 100, "gamma": 0.5}, seed=seed,
                       init_state=preset_name(init_state, "nmi"))


#: ``--init-state`` choices: the presets, and "random" (the official state of the variant)
INIT_STATE_CHOICES = ("zeros", "random", "random-nmi", "random-icons")
_OFFICIAL_STATE = {"nmi": "random-nmi", "icons": "random-icons"}


def preset_name(choice: str, variant: str = "nmi") -> str:
    """The initial-state preset of an ``--init-state`` choice: "random" is the official random
    state of the checkpoint's variant (NMI scripts: random-nmi, u ~ U[0,1) * b_j0, s = 0; ICONS
    notebook: random-icons, u = s = U[0,1)); the other choices are preset names."""
    if choice == "random":
        return _OFFICIAL_STATE[variant]
    if choice not in INIT_STATE_CHOICES:
        raise ValueError(f"unknown initial state {choice!r}; choose one of "
                         f"{', '.join(INIT_STATE_CHOICES)}")
    return choice


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------
_OFFICIAL_MAP = {   # official name -> spikesim name
    "i2h.weight": "hidden.W_in", "i2h.bias": "hidden.b_in",
    "h2h.weight": "hidden.W_rec", "h2h.bias": "hidden.b_rec",
    "h2o.weight": "out.W_in", "h2o.bias": "out.b_in",
    "tau_m_h": "hidden.tau_m", "tau_adp_h": "hidden.tau_adp",
    "tau_m_o": "out.tau_m", "tau_adp_o": "out.tau_adp",
}
_TAU_M = ("tau_m_h", "tau_m_o")


def official_keys(variant: str) -> list:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return [k for k in _OFFICIAL_MAP if variant == "nmi" or k not in _TAU_M]


def detect_variant(sd: dict) -> str:
    """'nmi' when the state_dict holds tau_m_h/tau_m_o, 'icons' when it holds neither."""
    has = [k in sd for k in _TAU_M]
    if all(has):
        return "nmi"
    if not any(has):
        return "icons"
    raise CheckpointError("checkpoint holds only one of tau_m_h / tau_m_o: not an ECG checkpoint")


def from_official(path, variant: str = "auto", b_j0: float | None = None, dtype=np.float64,
                  surrogate: str | None = None) -> Network:
    """A Network with the parameters of an official ECG state_dict (``.pth`` path or an
    already-loaded dict of arrays).

    ``variant``: "nmi" (tau_m trained, multi-Gaussian surrogate, b_j0 0.1 by default: the value
    the checkpoint needs, docs/model.md section 5), "icons" (no tau_m in the file: fixed 20,
    not trained; Gaussian surrogate; b_j0 0.01) or "auto" (from the keys). Raises
    CheckpointError when names or shapes do not match.
    """
    from ..io.pth import load_pth, state_dict
    where = str(path) if not isinstance(path, dict) else "state_dict"
    if isinstance(path, dict):
        sd = {k: np.asarray(v) for k, v in path.items()}
    else:
        sd = state_dict(load_pth(path))
    if variant == "auto":
        variant = detect_variant(sd)
    want = official_keys(variant)
    missing = [k for k in want if k not in sd]
    extra = sorted(k for k in sd if k not in want)
    if missing or extra:
        hint = ""
        if variant == "icons" and any(k in sd for k in _TAU_M):
            hint = " (the file has tau_m: try --variant nmi)"
        elif variant == "nmi" and not any(k in sd for k in _TAU_M) and not extra:
            hint = " (the file has no tau_m: try --variant icons)"
        raise CheckpointError(f"{where}: not an official ECG ({variant}) checkpoint: missing "
                              f"{missing}, unexpected {extra}{hint}")
    cfg = network_config(b_j0=DEFAULT_B_J0[variant] if b_j0 is None else b_j0,
                         surrogate=surrogate or ("multi_gaussian" if variant == "nmi"
                                                 else "gaussian"),
                         fixed_tau_m=None if variant == "nmi" else 20.0)
    from ..model.config import param_shapes
    shapes = param_shapes(cfg)
    params = {}
    for k in want:
        name, a = _OFFICIAL_MAP[k], np.asarray(sd[k])
        if a.shape != shapes[name]:
            raise CheckpointError(f"{where}: {k} has shape {a.shape}, the ECG network needs "
                                  f"{shapes[name]}")
        if not np.issubdtype(a.dtype, np.floating) or not np.all(np.isfinite(a)):
            raise CheckpointError(f"{where}: {k} is not a finite float array")
        params[name] = a.astype(dtype)
    for k in _TAU_M:
        if _OFFICIAL_MAP[k] not in params:
            params[_OFFICIAL_MAP[k]] = np.full(shapes[_OFFICIAL_MAP[k]], 20.0, dtype)
    net = Network(cfg, params, dtype=dtype)
    net.variant = variant
    return net


def load_network(path, variant: str = "auto", b_j0: float | None = None, dtype=np.float64):
    """Read an official ``.pth`` (see :func:`from_official`) or a spikesim checkpoint (its
    stored network config; ``b_j0`` overrides every layer's). Returns (net, info)."""
    from ..io.checkpoint import is_spikesim_checkpoint, load_checkpoint
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if is_spikesim_checkpoint(path):
        ck = load_checkpoint(path)
        netcfg = (ck.config or {}).get("network")
        if netcfg is None:
            raise CheckpointError(f"{path}: spikesim checkpoint without a network config")
        try:
            cfg = NetworkConfig.from_dict(netcfg)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: bad network config: {e}") from e
        if b_j0 is not None:
            for layer in cfg.layers:
                layer.b_j0 = float(b_j0)
        if cfg.n_in != N_IN or cfg.n_out != N_CLASSES or cfg.loss.kind != "nll_per_step":
            raise CheckpointError(f"{path}: not an ECG network ({cfg.n_in} inputs, {cfg.n_out} "
                                  f"outputs, loss {cfg.loss.kind})")
        try:
            net = Network(cfg, {k: np.asarray(v) for k, v in ck.params.items()}, dtype=dtype)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: parameters do not match its config: {e}") from e
        v = variant if variant != "auto" else "nmi"
        net.variant = v
        return net, {"format": "spikesim", "variant": v, "epoch": ck.epoch, "seed": ck.seed}
    net = from_official(path, variant=variant, b_j0=b_j0, dtype=dtype)
    return net, {"format": "official", "variant": net.variant}


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------
def evaluate_predictions(pred, labels, tolerance: float = DEFAULT_TOLERANCE, start: int = START,
                         trim: int = BOUNDARY_TRIM, match: str = "nearest") -> dict:
    """All ECG metrics of predictions (N, T) against labels (N, T)."""
    from .. import metrics
    per_seq = metrics.per_sequence_accuracy(pred, labels, start)
    w = slice(start + trim, labels.shape[1] - trim)
    bd = metrics.boundary_detection(pred[:, w], labels[:, w], N_CLASSES, tolerance, start=0,
                                    method=match)
    cm = metrics.confusion_matrix(labels[:, start:], pred[:, start:], N_CLASSES)
    return {
        "accuracy": float(np.nanmean(per_seq)),
        "step_accuracy": metrics.pooled_accuracy(pred, labels, start),
        "per_sequence_accuracy": per_seq.tolist(),
        "confusion_matrix": cm.tolist(),
        "boundary_detection": {"tolerance_steps": float(tolerance), "match": match,
                               "steps": [w.start, w.stop - 1], "classes": list(CLASS_NAMES),
                               **{k: _jsonable(bd[k]) for k in ("tp", "fp", "fn", "precision",
                                                                 "recall", "f1")}},
    }


def _jsonable(a):
    a = np.asarray(a)
    if np.issubdtype(a.dtype, np.integer):
        return a.tolist()
    return [None if not np.isfinite(v) else round(float(v), 6) for v in a.ravel()]


def predict(net: Network, x, labels, init_state: str = "zeros", seed: int = 0,
            batch_size: int = 256, progress: bool = False) -> tuple:
    """Predicted class per step (N, T) int64 (argmax of the output membrane, the first on a
    tie) and the firing rate of each layer, from one pass over x (N, T, 4) in batches, each
    from the initial-state preset ``init_state`` (random numbers from ``seed``)."""
    r = evaluate(net, ArrayDataset(x, labels), batch_size, init_state, seed, collect=True,
                 progress=progress, desc=f"seed {seed}")
    return r["predictions"], r["firing_rates"]


def evaluate_network(net: Network, x, labels, init_state: str = "zeros", seeds: int = 1,
                     variant: str = "nmi", tolerance: float = DEFAULT_TOLERANCE,
                     match: str = "nearest", progress: bool = False) -> tuple:
    """Metrics of ``net`` on (x, labels) from the initial state ``init_state`` (an
    ``--init-state`` choice, :func:`preset_name`). With a random one, ``seeds`` runs (rng seeds
    0..seeds-1) and mean/std of the accuracy; the other metrics are those of seed 0.
    Returns (result dict, predictions of the first run)."""
    name = preset_name(init_state, variant)
    n_runs = 1 if name == "zeros" else max(1, int(seeds))
    accs, first, first_pred = [], None, None
    rates_all = []
    for s in range(n_runs):
        pred, rates = predict(net, x, labels, name, seed=s, progress=progress)
        m = evaluate_predictions(pred, labels, tolerance, match=match)
        accs.append(m["accuracy"])
        rates_all.append(rates)
        if first is None:
            first, first_pred = m, pred
    out = dict(first)
    out["accuracy"] = float(np.mean(accs))
    out["accuracy_std"] = float(np.std(accs)) if len(accs) > 1 else 0.0
    out["accuracies"] = [float(a) for a in accs]
    out["firing_rates"] = {l.name: None if rates_all[0][i] is None
                           else float(np.mean([r[i] for r in rates_all]))
                           for i, l in enumerate(net.config.layers)}
    out["init_state"] = {"name": name, **state_spec(name),
                         "seeds": list(range(n_runs)) if name != "zeros" else None}
    return out, first_pred


def format_report(res: dict) -> str:
    lines = []
    acc, sd = res["accuracy"] * 100, res.get("accuracy_std", 0.0) * 100
    n = len(res.get("accuracies", [1]))
    if n > 1:
        each = ", ".join(f"{a * 100:.2f}" for a in res["accuracies"])
        lines.append(f"accuracy (steps {START}..{T_STEPS - 1}, mean per sequence): {acc:.2f} % "
                     f"+- {sd:.2f} over {n} seeds  ({each})")
    else:
        lines.append(f"accuracy (steps {START}..{T_STEPS - 1}, mean per sequence): {acc:.2f} %")
    if n > 1:
        lines.append("the metrics below are those of seed 0")
    lines.append(f"pooled step accuracy: {res['step_accuracy'] * 100:.2f} %   sequences: "
                 f"{res.get('n_samples')}")
    lines.append("firing rates: " + ", ".join(f"{k} {'-' if v is None else f'{v:.4f}'}"
                                              for k, v in res["firing_rates"].items()))
    lines.append("confusion matrix (rows true, columns predicted): " + " ".join(CLASS_NAMES))
    for name, row in zip(CLASS_NAMES, res["confusion_matrix"]):
        lines.append(f"  {name:>3} " + " ".join(f"{v:7d}" for v in row))
    bd = res["boundary_detection"]
    lines.append(f"segment onsets, steps {bd['steps'][0]}..{bd['steps'][1]}, within "
                 f"+-{bd['tolerance_steps']:g} steps ({bd['match']}):")
    lines.append(f"{'':44}class   TP   FP   FN  precision recall")
    for i, name in enumerate(CLASS_NAMES):
        p, r = bd["precision"][i], bd["recall"][i]
        lines.append(f"{'':44}{name:>5} {bd['tp'][i]:4d} {bd['fp'][i]:4d} {bd['fn'][i]:4d}  "
                     f"{'-' if p is None else f'{p:.3f}':>9} {'-' if r is None else f'{r:.3f}':>6}")
    return "\n".join(lines)


def _add_download_arg(parser):
    parser.add_argument("--download", action="store_true",
                        help="fetch missing QTDB files from the reference repository into "
                             "--data-dir (checksum-verified)")


def add_eval_args(parser: argparse.ArgumentParser, name: str = "ecg"):
    _add_download_arg(parser)
    parser.add_argument("--checkpoint", required=True,
                        help="official ECG state_dict (.pth) or a spikesim checkpoint (.ckpt)")
    parser.add_argument("--data-dir", default=None,
                        help="folder with QTDB_test.mat (or its qtdb/ subfolder); default "
                             "$SPIKESIM_DATA or ~/.cache/spikesim")
    parser.add_argument("--json", default=None, help="write all results as JSON here")
    parser.add_argument("--save-predictions", default=None,
                        help="write the (N, 1301) predicted classes as .npy here")
    parser.add_argument("--init-state", choices=INIT_STATE_CHOICES, default="zeros",
                        help="zeros: u=s=0, b=b_j0; random: the checkpoint's official state "
                             "(random-nmi: u~U[0,1)*b_j0; random-icons: u=s=U[0,1))")
    parser.add_argument("--seeds", type=positive_int, default=10,
                        help="runs with a random initial state")
    parser.add_argument("--b-j0", type=float, default=None,
                        help="baseline threshold b_j0 (default: nmi 0.1, icons 0.01, spikesim: "
                             "stored)")
    parser.add_argument("--variant", choices=("auto",) + VARIANTS, default="auto")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    add_device_arg(parser)
    parser.add_argument("--tolerance", type=nonnegative_float, default=DEFAULT_TOLERANCE,
                        help="boundary-detection tolerance in steps (default 37.5: 150 ms)")
    parser.add_argument("--boundary-match", choices=("nearest", "optimal"), default="nearest",
                        help="nearest: the official greedy count; optimal: maximum matching")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _model_and_data(args):
    """(net, info, data) of ``eval`` and ``energy``: the checkpoint and the ``--split`` set in
    ``--dtype``, or None after printing why the checkpoint was refused."""
    from ..data.qtdb import load_qtdb
    dtype = np.dtype(args.dtype)
    try:
        net, info = load_network(args.checkpoint, args.variant, args.b_j0, dtype)
        net.set_backend(getattr(args, "device", "cpu"))
    except CheckpointError as e:
        print(f"spikesim: error: {e}", file=sys.stderr)
        return None
    data = load_qtdb(args.data_dir, args.split, unlabelled="class0", dtype=dtype,
                     download=args.download)
    return net, info, data


def run_eval(args) -> int:
    loaded = _model_and_data(args)
    if loaded is None:
        return 2
    net, info, data = loaded
    dtype = net.dtype
    t0 = time.time()
    res, pred = evaluate_network(net, data.x, data.labels, args.init_state, args.seeds,
                                 info["variant"], args.tolerance, args.boundary_match,
                                 progress=not args.quiet)
    res = {"task": "ecg", "checkpoint": str(args.checkpoint), "split": args.split,
           "n_samples": len(data), "dtype": str(dtype), "b_j0": net.config.layers[0].b_j0,
           **info, **res, "seconds": time.time() - t0}
    print(f"spikesim eval ecg: {args.checkpoint} ({info['format']}, {info['variant']}), "
          f"b_j0 {res['b_j0']}, {args.dtype}, init state {res['init_state']['name']}")
    print(format_report(res))
    if args.json:
        manifest.write_result(args.json, res, getattr(args, "seed", None))
    if args.save_predictions:
        Path(args.save_predictions).parent.mkdir(parents=True, exist_ok=True)
        np.save(args.save_predictions, pred.astype(np.int64))
    return 0


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
def add_train_args(parser: argparse.ArgumentParser, name: str = "ecg"):
    _add_download_arg(parser)
    parser.add_argument("--data-dir", default=None,
                        help="folder with QTDB_{train,test}.mat (or its qtdb/ subfolder)")
    add_run_args(parser)
    parser.add_argument("--epochs", type=positive_int, default=400,
                        help="official: 400 (StepLR halves the lr every 100)")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--lr", type=positive_float, default=1e-2, help="learning rate")
    parser.add_argument("--b-j0", type=nonnegative_float, default=0.1,
                        help="baseline threshold b_j0; 0.1 as the NMI checkpoint was trained with")
    parser.add_argument("--surrogate", choices=SURROGATES, default="multi_gaussian",
                        help="surrogate gradient of the spike")
    parser.add_argument("--init-state", choices=INIT_STATE_CHOICES, default="zeros",
                        help="initial state for training and evaluation (random: random-nmi, "
                             "the NMI script's)")
    parser.add_argument("--val-fraction", type=fraction, default=0.1,
                        help="fraction of the 618 training sequences held out for validation "
                             "(seeded by --seed); 0: train on all 618 (the official script)")
    parser.add_argument("--select", choices=("val", "train", "last"), default=None,
                        help="model tested: val = best validation accuracy (default with a "
                             "validation split), train = best training accuracy of an epoch "
                             "(the official script's rule; default with --val-fraction 0), "
                             "last = the last epoch's model; none of them looks at the test set")
    parser.add_argument("--tau-min", type=positive_float, default=None,
                        help="clamp every tau_m/tau_adp to at least this after each update "
                             "(default: none, as the official script; a time constant driven "
                             "to 0 or below stops the run with an error)")
    add_dtype_arg(parser, "float32")
    add_device_arg(parser)
    parser.add_argument("--tolerance", type=nonnegative_float, default=DEFAULT_TOLERANCE,
                        help="segment-onset detection tolerance (steps)")
    parser.add_argument("--no-plots", action="store_true", help="draw no plots")


def run_train(args) -> int:
    from ..data.qtdb import load_qtdb, train_val_split
    from ..io.checkpoint import load_checkpoint
    from ..network import init_params
    from ..train.trainer import Trainer
    if args.select == "val" and args.val_fraction == 0:
        raise ValueError("--select val needs a validation split (--val-fraction > 0)")
    out = Path(args.out)
    dtype = np.dtype(args.dtype)
    train = load_qtdb(args.data_dir, "train", dtype=dtype, download=args.download)
    test = load_qtdb(args.data_dir, "test", dtype=dtype, download=args.download)
    tr_idx, va_idx = train_val_split(len(train), args.val_fraction, args.seed)
    train_set = ArrayDataset(train.x[tr_idx], train.labels[tr_idx])
    val_set = ArrayDataset(train.x[va_idx], train.labels[va_idx]) if len(va_idx) else None
    select = args.select or ("val" if val_set is not None else "train")
    if select == "val" and val_set is None:
        raise ValueError("--select val needs a validation split (--val-fraction > 0)")
    cfg = network_config(b_j0=args.b_j0, surrogate=args.surrogate)
    tcfg = train_config(args.epochs, args.batch_size, args.lr, args.seed, args.init_state)
    tcfg.tau_min = getattr(args, "tau_min", None)
    net = Network(cfg, seed=args.seed, dtype=dtype, backend=args.device)
    params0 = init_params(cfg, args.seed, dtype)
    n_val = 0 if val_set is None else len(val_set)
    meta = {"task": "ecg", "seed": args.seed, "b_j0": args.b_j0, "val_fraction": args.val_fraction,
            "n_train": len(train_set), "n_val": n_val, "select": select}
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(
        {"network": cfg.to_dict(), "train": tcfg.to_dict(), "seed": args.seed, "dtype": str(dtype),
         "data_dir": str(args.data_dir), **meta}, indent=1))
    trainer = Trainer(net, tcfg, train_set, val_set, out_dir=out, progress=not args.quiet,
                      meta=meta)
    resumed = trainer.resume() if args.resume else False
    t0 = time.time()
    history = _fit(trainer, out, select)
    wall = time.time() - t0
    best = load_checkpoint(out / _SELECT_FILE[select])
    best_net = Network(cfg, {k: np.asarray(v) for k, v in best.params.items()}, dtype=dtype,
                       backend=args.device)
    res, pred = evaluate_network(best_net, test.x, test.labels, tcfg.init_state, 1, "nmi",
                                 args.tolerance)
    last_rec = history[-1] if history else {}
    best_rec = next((h for h in history if h.get("epoch") == best.epoch), {})
    results = {
        "task": "ecg", "test_accuracy": res["accuracy"], "test_step_accuracy": res["step_accuracy"],
        "model_selection": _SELECT_TEXT[select], "select": select,
        "best_epoch": int(best.epoch),
        "best_val_acc": float(trainer.best_val) if select == "val" else None,
        "best_epoch_train_acc": best_rec.get("train_acc"),
        "epochs": len(history), "final_val_acc": last_rec.get("val_acc"),
        "final_train_acc": last_rec.get("train_acc"),
        "train_seconds": training_seconds(history),
        "wall_seconds_this_run": wall, "resumed": bool(resumed),
        "firing_rates": res["firing_rates"], "seed": args.seed, "b_j0": args.b_j0,
        "dtype": str(dtype), "init_state": tcfg.init_state, "n_train": len(train_set),
        "n_val": n_val, "n_test": len(test),
        "confusion_matrix": res["confusion_matrix"],
        "boundary_detection": res["boundary_detection"],
        "config": {"network": cfg.to_dict(), "train": tcfg.to_dict()},
    }
    (out / "results.json").write_text(json.dumps(results, indent=1))
    np.save(out / "test_predictions.npy", pred)
    if not args.no_plots:
        _train_plots(out, history, params0, best_net, test, pred, int(best.epoch),
                     _SELECT_TEXT[select])
    sel = (f"best validation {trainer.best_val * 100:.2f} %" if select == "val" else
           f"best training {best_rec.get('train_acc', float('nan')) * 100:.2f} %"
           if select == "train"
           else "last epoch")
    print(f"spikesim train ecg: test accuracy {res['accuracy'] * 100:.2f} % ({sel} at epoch "
          f"{best.epoch}), {len(history)} epochs, "
          f"{results['train_seconds']:.0f} s training, firing rates "
          + ", ".join(f"{k} {v:.4f}" for k, v in res["firing_rates"].items()))
    return 0


_SELECT_TEXT = {"val": "best validation accuracy", "train": "best training accuracy (official)",
                "last": "last epoch"}
_SELECT_FILE = {"val": "best.ckpt", "train": "best_train.ckpt", "last": "last.ckpt"}


def _fit(trainer, out: Path, select: str) -> list:
    """Train to ``trainer.cfg.epochs``. select "val": the Trainer keeps best.ckpt (best validation
    accuracy). "train"/"last": one epoch at a time; "train" copies last.ckpt to best.ckpt after
    each epoch whose training accuracy (running, over the epoch's batches, as the official
    script) beats every earlier one. Resumable: the best so far is read back from the history."""
    import shutil
    if select == "val":
        return trainer.fit()
    target = trainer.cfg.epochs
    best = max((h.get("train_acc", -1.0) for h in trainer.history
                if h.get("epoch", 0) <= trainer.epoch), default=-1.0)
    try:
        while trainer.epoch < target:
            trainer.cfg.epochs = trainer.epoch + 1
            rec = trainer.fit()[-1]
            if select == "train" and rec["train_acc"] > best:
                best = rec["train_acc"]
                tmp = out / "best_train.ckpt.tmp"
                shutil.copyfile(out / "last.ckpt", tmp)
                tmp.replace(out / "best_train.ckpt")
    finally:
        trainer.cfg.epochs = target
    return trainer.history


def _train_plots(out: Path, history, params0, net: Network, test, pred, epoch: int,
                 selected_by: str, index: int = 0):
    from .. import plots
    plots.learning_curves(history, out / "learning_curves.png", epoch, selected_by)
    plots.tau_histograms(params0, net.params, out / "tau_histograms.png", net.config)
    tr = net.forward(test.x[index:index + 1])
    plots.sequence_figure(test.x[index], tr.layers[0].s[:, 0], tr.layers[-1].u[:, 0],
                          test.labels[index], pred[index], out / "sequence.png",
                          class_names=CLASS_NAMES)


# ----------------------------------------------------------------------------------------------
# Operation and energy counts
# ----------------------------------------------------------------------------------------------
def add_energy_args(parser: argparse.ArgumentParser, name: str = "ecg"):
    from ..energy import report
    _add_download_arg(parser)
    parser.add_argument("--checkpoint", required=True,
                        help="official ECG state_dict (.pth) or a spikesim checkpoint (.ckpt)")
    parser.add_argument("--data-dir", default=None, help="folder with QTDB_test.mat")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--b-j0", type=float, default=None,
                        help="baseline threshold b_j0 (default: nmi 0.1, icons 0.01, spikesim: "
                             "stored)")
    parser.add_argument("--variant", choices=("auto",) + VARIANTS, default="auto")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    report.add_args(parser)


def run_energy(args) -> int:
    from ..energy import report
    loaded = _model_and_data(args)
    if loaded is None:
        return 2
    net, info, data = loaded
    dtype = net.dtype
    return report.run(net, ArrayDataset(data.x, data.labels), args, f"ecg ({args.checkpoint})",
                      info={"task": "ecg", "checkpoint": str(args.checkpoint),
                            "split": args.split, "dtype": str(dtype), "init_state": "zeros",
                            **info})
