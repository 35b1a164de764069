"""Spiking Heidelberg Digits (docs/model.md section 5): 700 cochlear channels binned into 250
steps of 4 ms -> 128 recurrent ALIF -> 128 recurrent ALIF -> 20 integrator; the readout is
the sum over t > 10 of softmax(u_t), with cross-entropy on that sum. SSC (35 classes) has the
same layout and runs with ``--dataset ssc``.

- :func:`from_official` maps the official whole pickled model (``shd_nmi_90.7.pth``) onto a
  Network (tau in steps, dt = 1, as the official code); :func:`load_model` reads either that
  or spikesim's own checkpoints.
- ``spikesim eval shd`` (:func:`run_eval`) prints accuracy, the confusion matrix and the
  firing rate of every layer, on any file in the SHD layout.
- ``spikesim train shd`` (:func:`run_train`) trains with the official settings (Adam lr 1e-2,
  eps 1e-5, StepLR(10, 0.5), batch 64), validating on speakers held out of the training file
  (never the test file), and tests the model of best validation accuracy, separately for test
  speakers seen and unseen in training.

Data (``spikesim.data.shd``): the files are read as events and binned per batch with the
official binning (``--binning official``) or another (bin width, number of bins, counts,
channel pooling).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..data.shd import BINNINGS, Augment, Binning, SHDDataset, find_file, load_events
from ..errors import CheckpointError, DataError
from ..metrics import confusion_matrix
from ..model.config import NetworkConfig
from ..model.presets import shd_config
from ..network import Network
from ..options import (
    add_device_arg,
    add_dtype_arg,
    add_run_args,
    fraction,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
)
from ..train import manifest
from ..train.evaluate import TEST_SEED_OFFSET, evaluate
from ..train.trainer import training_seconds

START = 11                      # the readout sums softmax(u_t) over t > 10
DATASETS = ("shd", "ssc")
INIT_STATE_CHOICES = ("zeros", "random-nmi")

#: official module name -> (layer, "in" | "rec")
_OFFICIAL_MAP = {"i_2_h1": ("h1", "in"), "h1_2_h1": ("h1", "rec"), "h1_2_h2": ("h2", "in"),
                 "h2_2_h2": ("h2", "rec"), "h2o": ("o", "in")}


def network_config(n_in: int = 700, n_classes: int = 20, hidden=(128, 128), b_j0: float = 0.01,
                   surrogate: str = "multi_gaussian") -> NetworkConfig:
    """The official network (``spikesim.model.presets.shd_config``)."""
    return shd_config(n_in=n_in, hidden=hidden, n_classes=n_classes, b_j0=b_j0,
                      surrogate=surrogate)


def train_config(epochs: int = 30, batch_size: int = 64, lr: float = 1e-2, seed: int = 0,
                 init_state: str = "zeros"):
    """The official SHD settings: Adam lr 1e-2, eps 1e-5, one lr for all, StepLR(10, 0.5),
    batch 64."""
    from ..train.trainer import TrainConfig
    return TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, optimizer="adam", eps=1e-5,
                       schedule={"kind": "step", "step_size": 10, "gamma": 0.5}, seed=seed,
                       init_state=init_state)


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------
def from_official(path, dtype=np.float64, b_j0: float | None = None):
    """Load the official ``shd_nmi_90.7.pth`` (a whole pickled model, read without PyTorch).

    Returns (Network, meta). Both biases of a recurrent layer enter its current; b_j0 is the
    file's ``b_o`` attribute (0.01); the output integrator's tau_adp_o has no role."""
    from ..io.pth import attributes, load_pth, state_dict
    path = Path(path)
    try:
        obj = load_pth(path)
        sd = state_dict(obj)
    except Exception as exc:            # noqa: BLE001 - any unreadable file
        raise CheckpointError(f"{path}: not a readable PyTorch file ({exc})") from exc
    try:
        attrs = attributes(obj)
    except Exception:                   # noqa: BLE001 - attributes are informative only
        attrs = {}
    need = [f"{m}.{w}" for m in _OFFICIAL_MAP for w in ("weight", "bias")]
    need += [f"tau_{a}_{l}" for a in ("adp", "m") for l in ("h1", "h2")] + ["tau_m_o"]
    missing = [n for n in need if n not in sd]
    if missing:
        raise CheckpointError(f"{path}: not an official SHD model, missing {missing}")
    if b_j0 is None:
        b_j0 = float(attrs.get("b_o", attrs.get("b_j0", 0.01)))
    n_in = int(sd["i_2_h1.weight"].shape[1])
    hidden = (int(sd["i_2_h1.weight"].shape[0]), int(sd["h1_2_h2.weight"].shape[0]))
    cfg = network_config(n_in, int(sd["h2o.weight"].shape[0]), hidden, b_j0)
    params = {}
    for mod, (layer, kind) in _OFFICIAL_MAP.items():
        params[f"{layer}.W_{kind}"] = np.asarray(sd[f"{mod}.weight"], np.float64)
        params[f"{layer}.b_{kind}"] = np.asarray(sd[f"{mod}.bias"], np.float64)
    for layer in ("h1", "h2"):
        params[f"{layer}.tau_m"] = np.asarray(sd[f"tau_m_{layer}"], np.float64)
        params[f"{layer}.tau_adp"] = np.asarray(sd[f"tau_adp_{layer}"], np.float64)
    params["o.tau_m"] = np.asarray(sd["tau_m_o"], np.float64)
    net = Network(cfg, params=params, dtype=dtype)
    meta = {"source": str(path), "format": "official .pth", "b_j0": b_j0, "binning": "official",
            "attributes": {a: v for a, v in attrs.items()
                           if isinstance(v, (int, float, str, bool))}}
    return net, meta


def load_model(path, dtype=np.float64):
    """A spikesim checkpoint (``.ckpt``) or the official ``.pth``: returns (Network, meta)."""
    from .checkpoints import load_model_file
    net, meta = load_model_file(path, dtype, from_official)
    meta.setdefault("format", "spikesim checkpoint")
    return net, meta


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
def add_data_args(parser, dataset: str = "shd"):
    parser.add_argument("--data-dir", default=None,
                        help="folder with <dataset>_train.h5 / _test.h5 (.h5, .h5.gz or "
                             ".h5.zip); default $SPIKESIM_DATA or ~/.cache/spikesim")
    parser.add_argument("--dataset", choices=DATASETS, default=dataset,
                        help="file prefix: shd (20 classes) or ssc (35 classes); default: the "
                             "task's name")
    parser.add_argument("--download", action="store_true",
                        help="fetch missing files from the data set's server (checksums from "
                             "its published list)")
    parser.add_argument("--binning", choices=sorted(BINNINGS), default="official",
                        help="official: 250 bins of 4 ms, binary, channel 700 - unit")
    parser.add_argument("--bin-ms", type=positive_float, default=None, help="bin width in ms")
    parser.add_argument("--bins", type=positive_int, default=None, help="number of bins")
    parser.add_argument("--counts", action="store_true", help="spikes per bin, not 0/1")
    parser.add_argument("--pool", type=positive_int, default=None,
                        help="sum adjacent channels in groups of this many")


def binning_from_args(args) -> Binning:
    import dataclasses
    b = BINNINGS[args.binning]
    changes = {}
    if args.bin_ms is not None:
        changes["dt"] = args.bin_ms / 1000.0
    if args.bins is not None:
        changes["n_bins"] = args.bins
    if args.counts:
        changes["counts"] = True
    if args.pool is not None:
        changes["pool"] = args.pool
    return dataclasses.replace(b, **changes) if changes else b


def data_file(args, split: str) -> Path:
    from ..data.download import default_data_dir
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    name = f"{args.dataset}_{split}"
    try:
        return find_file(data_dir, name)
    except DataError:
        if not args.download:
            raise
    from ..data.shd_download import download
    return download(data_dir, args.dataset, [split], progress=True)[split]


def speaker_split(speakers, n_val_speakers: int, seed: int):
    """Training and validation sample indices with ``n_val_speakers`` whole speakers held out
    (chosen by ``seed``): the validation set then measures generalisation to new voices, as
    the test set does. Returns (train_idx, val_idx, val_speaker_ids)."""
    speakers = np.asarray(speakers)
    ids = np.unique(speakers)
    if not 0 <= n_val_speakers < len(ids):
        raise ValueError(f"--val-speakers must be in 0..{len(ids) - 1} (the training file has "
                         f"{len(ids)} speakers), got {n_val_speakers}")
    held = np.sort(np.random.default_rng(seed).choice(ids, n_val_speakers, replace=False))
    val = np.isin(speakers, held)
    return np.flatnonzero(~val), np.flatnonzero(val), held


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------
def evaluate_dataset(net: Network, ds: SHDDataset, init_state: str = "zeros", seed: int = 0,
                     batch_size: int = 64, seen_speakers=None, progress: bool = False,
                     keep_sample: int | None = None, val_speakers=None) -> dict:
    """Accuracy, loss, confusion matrix, per-layer firing rates and predictions of ``net`` on
    ``ds``; with ``seen_speakers`` (the training file's speaker ids) also the accuracy on the
    samples of speakers seen in the training file and of unseen ones, and with
    ``val_speakers`` on those of the speakers held out of training for validation (seen in
    the file, but never trained on). ``keep_sample``: a sample whose spikes are kept
    (``raster``: input and every spiking layer)."""
    cfg = net.config
    raster = {}

    def on_batch(b):
        if keep_sample is not None and b.start <= keep_sample < b.start + len(b.idx):
            j = keep_sample - b.start
            raster["input"] = b.x[j].copy()
            for layer, tr in zip(cfg.layers, b.trace.layers):
                if tr.s is not None:
                    raster[layer.name] = tr.s[:, j].copy()
    r = evaluate(net, ds, batch_size, init_state, seed, collect=True, progress=progress,
                 on_batch=on_batch)
    pred, labels = r["predictions"], r["labels"]
    out = {"accuracy": r["accuracy"], "loss": r["loss"], "n_samples": r["n_samples"],
           "confusion_matrix": confusion_matrix(labels, pred, cfg.n_out).tolist(),
           "firing_rates": {l.name: v for l, v in zip(cfg.layers, r["firing_rates"])
                            if v is not None},
           "predictions": pred, "labels": labels}
    if seen_speakers is not None and ds.speakers is not None:
        seen = np.isin(ds.speakers, seen_speakers)
        groups = [("seen", seen), ("unseen", ~seen)]
        if val_speakers is not None:
            groups.append(("validation", np.isin(ds.speakers, val_speakers)))
        for name, m in groups:
            out[f"accuracy_{name}_speakers"] = (float((pred[m] == labels[m]).mean())
                                                if m.any() else None)
            out[f"n_{name}_speakers"] = int(m.sum())
    if raster:
        out["raster"] = raster
    return out


def format_report(res: dict, keys=None) -> str:
    lines = [f"accuracy {res['accuracy'] * 100:.2f} % on {res['n_samples']} samples "
             f"(loss {res['loss']:.4f})"]
    for name in ("seen", "unseen", "validation"):
        acc = res.get(f"accuracy_{name}_speakers")
        if acc is not None:
            lines.append(f"  {name} speakers: {acc * 100:.2f} % "
                         f"({res[f'n_{name}_speakers']} samples)")
    lines.append("firing rates: " + ", ".join(f"{k} {v:.4f}"
                                              for k, v in res["firing_rates"].items()))
    cm = np.asarray(res["confusion_matrix"])
    keys = list(keys or [])
    names = [str(keys[i]) if i < len(keys) else str(i) for i in range(cm.shape[0])]
    lines.append("confusion matrix (rows: true, columns: predicted):")
    lines.append(" " * 8 + "".join(f"{i:>4d}" for i in range(cm.shape[0])))
    for i, row in enumerate(cm):
        lines.append(f"{i:>2d} {names[i][:5]:<5s}" + "".join(f"{v:>4d}" for v in row))
    return "\n".join(lines)


def add_eval_args(parser: argparse.ArgumentParser, name: str = "shd"):
    parser.add_argument("--checkpoint", required=True,
                        help="official shd_nmi_90.7.pth or a spikesim checkpoint (.ckpt)")
    add_data_args(parser, dataset=name if name in DATASETS else "shd")
    parser.add_argument("--split", default="test", help="file <dataset>_<split>.h5 (test)")
    parser.add_argument("--init-state", choices=INIT_STATE_CHOICES, default="zeros",
                        help="zeros: u = s = 0, b = b_j0 (deterministic); random-nmi: "
                             "u ~ U[0,1) b_j0")
    parser.add_argument("--seed", type=nonnegative_int, default=0,
                        help="seed of the random initial state")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    add_dtype_arg(parser, "float32")
    add_device_arg(parser)
    parser.add_argument("--json", default=None, help="write all results as JSON here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def model_and_data(args):
    """The checkpoint's network and the ``--split`` file binned as the checkpoint was trained
    (or by the binning options): (net, meta, events, dataset). Raises CheckpointError or
    DataError when they do not fit each other."""
    net, meta = load_model(args.checkpoint, np.dtype(args.dtype))
    net.set_backend(getattr(args, "device", "cpu"))
    binning = (Binning(**meta["binning"]) if isinstance(meta.get("binning"), dict)
               else binning_from_args(args))
    events = load_events(data_file(args, args.split), n_units=binning.n_units)
    ds = SHDDataset(events, binning, net.dtype)
    if ds.shape[1] != net.config.n_in:
        raise DataError(f"the binning gives {ds.shape[1]} channels, the network takes "
                        f"{net.config.n_in}")
    if int(events.labels.max(initial=0)) >= net.config.n_out:
        raise DataError(f"{events.path} has labels up to {events.labels.max()}, the "
                        f"network has {net.config.n_out} outputs")
    return net, meta, events, ds


def run_eval(args) -> int:
    try:
        net, meta, events, ds = model_and_data(args)
        binning = ds.binning
        seen = None
        if ds.speakers is not None:
            try:
                seen = np.unique(load_events(data_file(args, "train")).speakers)
            except DataError:
                pass
    except (CheckpointError, DataError) as e:
        print(f"spikesim: error: {e}", file=sys.stderr)
        return 2
    t0 = time.time()
    res = evaluate_dataset(net, ds, args.init_state, args.seed, args.batch_size, seen,
                           progress=not args.quiet)
    print(f"spikesim eval {args.dataset}: {args.checkpoint} ({meta.get('format')}), "
          f"{events.path}, {args.dtype}, init state {args.init_state}")
    print(format_report(res, events.keys))
    if args.json:
        rec = {k: v for k, v in res.items() if k not in ("predictions", "labels", "raster")}
        rec.update(task=args.dataset, checkpoint=str(args.checkpoint), data=events.path,
                   binning=binning.to_dict(), dtype=args.dtype, init_state=args.init_state,
                   seconds=time.time() - t0, predictions=res["predictions"].tolist())
        manifest.write_result(args.json, rec, getattr(args, "seed", None))
    return 0


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TimedDataset:
    """A dataset that adds the time spent building its batches (loading, binning) to
    ``seconds``."""

    def __init__(self, ds):
        self.ds, self.seconds = ds, 0.0

    def __len__(self):
        return len(self.ds)

    def get(self, idx):
        t = time.perf_counter()
        out = self.ds.get(idx)
        self.seconds += time.perf_counter() - t
        return out


def add_train_args(parser: argparse.ArgumentParser, name: str = "shd"):
    add_data_args(parser, dataset=name if name in DATASETS else "shd")
    add_run_args(parser)
    parser.add_argument("--epochs", type=positive_int, default=30,
                        help="StepLR halves the lr every 10 epochs")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--lr", type=positive_float, default=1e-2, help="learning rate")
    parser.add_argument("--hidden", default="128,128", help="two hidden layer widths")
    parser.add_argument("--b-j0", type=nonnegative_float, default=0.01,
                        help="baseline threshold b_j0")
    parser.add_argument("--val-speakers", type=nonnegative_int, default=None,
                        help="speakers of the training file held out for validation (default: "
                             "one in six, at least one); 0: no validation, test the last epoch")
    parser.add_argument("--init-state", choices=INIT_STATE_CHOICES, default="zeros",
                        help="initial state of every batch (random-nmi: u ~ U[0,1) b_j0)")
    parser.add_argument("--augment-shift", type=nonnegative_int, default=0,
                        help="training samples shifted in time by up to this many bins")
    parser.add_argument("--augment-channels", type=nonnegative_int, default=0,
                        help="training samples shifted by up to this many channels")
    parser.add_argument("--augment-stretch", type=fraction, default=0.0,
                        help="training samples stretched in time by a factor in 1 +- this")
    add_dtype_arg(parser, "float32")
    add_device_arg(parser)
    parser.add_argument("--no-plots", action="store_true", help="draw no plots")


def run_train(args) -> int:
    from ..io.checkpoint import load_checkpoint
    from ..network import init_params
    from ..train.trainer import Trainer
    out = Path(args.out)
    dtype = np.dtype(args.dtype)
    try:
        binning = binning_from_args(args)
        t0 = time.time()
        train_ev = load_events(data_file(args, "train"), n_units=binning.n_units)
        test_ev = load_events(data_file(args, "test"), n_units=binning.n_units)
        full = SHDDataset(train_ev, binning, dtype)
        test = SHDDataset(test_ev, binning, dtype)
        load_s = time.time() - t0
        if train_ev.speakers is None:
            raise DataError(f"{train_ev.path} has no extra/speaker: the validation split "
                            "holds out whole speakers")
        n_speakers = len(np.unique(train_ev.speakers))
        n_val = args.val_speakers if args.val_speakers is not None else max(1, n_speakers // 6)
        tr_idx, va_idx, held = speaker_split(train_ev.speakers, n_val, args.seed)
    except (DataError, ValueError) as e:
        print(f"spikesim: error: {e}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    augment = Augment(args.augment_shift, args.augment_channels, args.augment_stretch,
                      args.seed)
    train_set = TimedDataset(full.subset(tr_idx, augment or None, reuse=True))
    val_set = full.subset(va_idx) if len(va_idx) else None
    hidden = tuple(int(v) for v in str(args.hidden).split(","))
    n_classes = max(train_ev.n_classes, test_ev.n_classes)
    cfg = network_config(binning.n_channels, n_classes, hidden, args.b_j0)
    tcfg = train_config(args.epochs, args.batch_size, args.lr, args.seed, args.init_state)
    net = Network(cfg, seed=args.seed, dtype=dtype, backend=args.device)
    params0 = init_params(cfg, args.seed, dtype)
    meta = {"task": args.dataset, "seed": args.seed, "binning": binning.to_dict(),
            "augment": augment.to_dict(),
            "train_file": train_ev.path, "test_file": test_ev.path,
            "val_speakers": held.tolist(), "n_train": len(train_set),
            "n_val": 0 if val_set is None else len(val_set)}
    trainer = Trainer(net, tcfg, train_set, val_set, out_dir=out, progress=not args.quiet,
                      meta=meta)
    resumed = trainer.resume() if args.resume else False
    t1 = time.time()
    history = trainer.fit()
    wall = time.time() - t1
    select = "best.ckpt" if val_set is not None else "last.ckpt"
    best = load_checkpoint(out / select)
    best_net = Network(cfg, {k: np.asarray(v) for k, v in best.params.items()}, dtype=dtype,
                       backend=args.device)
    res = evaluate_dataset(best_net, test, tcfg.init_state, args.seed + TEST_SEED_OFFSET, 250,
                           np.unique(train_ev.speakers), keep_sample=0, val_speakers=held)
    train_s = training_seconds(history)
    results = {
        "task": args.dataset, "test_accuracy": res["accuracy"],
        "test_accuracy_seen_speakers": res.get("accuracy_seen_speakers"),
        "test_accuracy_unseen_speakers": res.get("accuracy_unseen_speakers"),
        "test_accuracy_validation_speakers": res.get("accuracy_validation_speakers"),
        "n_test_seen": res.get("n_seen_speakers"), "n_test_unseen": res.get("n_unseen_speakers"),
        "n_test_validation_speakers": res.get("n_validation_speakers"),
        "model_selection": "best validation accuracy (held-out speakers)" if val_set is not None
        else "last epoch", "best_epoch": int(best.epoch),
        "best_val_acc": float(trainer.best_val) if val_set is not None else None,
        "epochs": len(history), "train_seconds": train_s, "wall_seconds_this_run": wall,
        "load_and_bin_seconds": load_s,
        "batch_build_seconds_this_run": train_set.seconds,
        "samples_per_second": len(train_set) * len(history) / max(1e-9, train_s),
        "resumed": bool(resumed), "firing_rates": res["firing_rates"], "seed": args.seed,
        "dtype": str(dtype), "init_state": tcfg.init_state, "n_train": len(train_set),
        "n_val": meta["n_val"], "val_speakers": meta["val_speakers"], "n_test": len(test),
        "confusion_matrix": res["confusion_matrix"],
        "config": {"network": cfg.to_dict(), "train": tcfg.to_dict(),
                   "binning": binning.to_dict(), "augment": augment.to_dict()},
    }
    (out / "results.json").write_text(json.dumps(results, indent=1))
    if not args.no_plots:
        from .. import plots
        plots.learning_curves(history, out / "learning_curves.png", int(best.epoch),
                              results["model_selection"])
        plots.tau_histograms(params0, best_net.params, out / "tau_histograms.png", cfg)
        plots.confusion_figure(res["confusion_matrix"], out / "confusion_matrix.png",
                               test_ev.keys or None, "test confusion matrix")
        if "raster" in res:
            r = dict(res["raster"])
            x = r.pop("input")
            plots.raster_figure(x, r, out / "rasters.png",
                                f"test sample 0 (label {test.labels[0]})")
    print(f"spikesim train {args.dataset}: test accuracy {res['accuracy'] * 100:.2f} % "
          f"(seen speakers {_pct(res.get('accuracy_seen_speakers'))}, unseen "
          f"{_pct(res.get('accuracy_unseen_speakers'))}; model of epoch {best.epoch}, "
          f"{results['model_selection']}), {len(history)} epochs, {train_s:.0f} s training")
    return 0


def _pct(v):
    return "-" if v is None else f"{v * 100:.2f} %"


# ----------------------------------------------------------------------------------------------
# Operation and energy counts
# ----------------------------------------------------------------------------------------------
def add_energy_args(parser: argparse.ArgumentParser, name: str = "shd"):
    from ..energy import report
    parser.add_argument("--checkpoint", required=True,
                        help="official shd_nmi_90.7.pth or a spikesim checkpoint (.ckpt)")
    add_data_args(parser, dataset=name if name in DATASETS else "shd")
    parser.add_argument("--split", default="test", help="file <dataset>_<split>.h5 (test)")
    add_dtype_arg(parser, "float32")
    report.add_args(parser)


def run_energy(args) -> int:
    from ..energy import report
    try:
        net, meta, events, ds = model_and_data(args)
    except (CheckpointError, DataError) as e:
        print(f"spikesim: error: {e}", file=sys.stderr)
        return 2
    return report.run(net, ds, args, f"{args.dataset} ({args.checkpoint})",
                      info={"task": args.dataset, "checkpoint": str(args.checkpoint),
                            "data": events.path, "dtype": args.dtype, "init_state": "zeros"})
