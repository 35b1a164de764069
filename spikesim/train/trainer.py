"""Training loop: epochs over shuffled batches, optional truncated BPTT, validation, atomic
checkpoints and resume, a run manifest, a progress bar, and a results history.

A dataset is anything with ``len(ds)`` and ``ds.get(idx) -> (x (B, T, C), labels)``; the
task modules build them (encoding on the fly where the encoded set would not fit in memory).
Validation (and every task's evaluation) runs :func:`spikesim.train.evaluate.evaluate`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io.checkpoint import load_checkpoint, save_checkpoint
from ..model.config import NetworkConfig
from ..model.state import preset_state, state_name
from ..network import Network
from . import manifest
from .evaluate import VALIDATION_SEED_OFFSET, evaluate
from .optim import Optimizer, make_schedule

__all__ = ["TrainConfig", "ArrayDataset", "tbptt_chunks", "train_step", "evaluate", "Trainer",
           "EPOCH_HOOKS", "StopTraining", "load_trained", "training_seconds",
           "update_average"]

#: functions called with each finished epoch's history record, after its checkpoints are
#: written (a sweep reports validation accuracy to its search through this). A hook may raise
#: ``StopTraining`` to end the run there.
EPOCH_HOOKS: list = []


class StopTraining(Exception):
    """Raised by an epoch hook to stop a run early (the checkpoints of that epoch exist)."""


@dataclass
class TrainConfig:
    """Everything that decides a training run besides the network and the data."""
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-2
    optimizer: str = "adam"
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    lr_mult: dict = field(default_factory=dict)      # glob pattern -> multiplier
    schedule: dict | None = None                     # see optim.make_schedule
    clip_norm: float | None = None
    weight_decay: float = 0.0       # decoupled (AdamW) decay of the weight matrices
    # exponential moving average of the parameters, updated after every batch with this decay;
    # None: off. Validation, best.ckpt and model selection then use the average
    average_decay: float | None = None
    tbptt: int | None = None                         # truncated BPTT chunk length in steps
    tbptt_offset: int = 0           # steps added to the first chunk (see ``tbptt_chunks``)
    seed: int = 0
    init_state: str = "zeros"       # a preset of spikesim.model.state.INITIAL_STATES
    tau_min: float | None = None                     # optional clamp of tau after each update
    checkpoint_every_s: float = 120.0                # mid-epoch checkpoints for long epochs
    eval_batch_size: int | None = None

    def __post_init__(self):
        for k in ("epochs", "batch_size"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{k} must be a positive integer, got {v!r}")
        if self.tbptt is not None and (not isinstance(self.tbptt, int) or self.tbptt < 1):
            raise ValueError(f"tbptt must be a positive integer or None, got {self.tbptt!r}")
        if not isinstance(self.tbptt_offset, int) or self.tbptt_offset < 0:
            raise ValueError(f"tbptt_offset must be an integer >= 0, got {self.tbptt_offset!r}")
        if self.average_decay is not None and not (
                isinstance(self.average_decay, (int, float)) and 0 <= self.average_decay < 1):
            raise ValueError(f"average_decay must be a number in [0, 1) or None, "
                             f"got {self.average_decay!r}")
        self.betas = tuple(self.betas)
        self.init_state = state_name(self.init_state)   # older configs: a dict spec
        make_schedule(self.schedule)    # validates

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A TrainConfig from ``to_dict``'s form, as checkpoints store it (older ones hold
        ``init_state`` as a dict spec, read as its preset name)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}")
        return cls(**d)


def load_trained(path, dtype=np.float32) -> tuple:
    """The network a :class:`Trainer` checkpoint holds (its stored configuration and
    parameters, in ``dtype``) and the checkpoint's ``meta`` (what the task stored about its
    data), with ``source`` set to ``path``: (Network, meta)."""
    ck = load_checkpoint(path)
    cfg = NetworkConfig.from_dict(ck.config["network"])
    net = Network(cfg, params={k: np.asarray(v) for k, v in ck.params.items()}, dtype=dtype)
    meta = dict((ck.extra or {}).get("meta") or {})
    meta["source"] = str(path)
    return net, meta


class ArrayDataset:
    """In-memory inputs x (N, T, C) and labels (N,) or (N, T)."""

    def __init__(self, x: np.ndarray, labels: np.ndarray):
        if len(x) != len(labels):
            raise ValueError(f"{len(x)} inputs but {len(labels)} labels")
        self.x, self.labels = x, labels

    def __len__(self):
        return len(self.x)

    def get(self, idx):
        return self.x[idx], self.labels[idx]


def tbptt_chunks(T: int, tbptt: int | None = None, offset: int = 0) -> list:
    """The (t0, t1) step ranges of truncated BPTT over T steps, each followed by an update:
    chunks of ``tbptt`` steps, the first ``offset`` steps longer, the last what remains
    (without ``tbptt``: one chunk). The official S-MNIST script updates after the steps
    i = 100, 200, ..., 700 (counted from 0) and at the end: ``tbptt=100, offset=1``, chunks
    [0, 101), [101, 201), ..., [701, 784)."""
    if not tbptt:
        return [(0, T)]
    ends = list(range(tbptt + offset, T, tbptt)) + [T]
    return list(zip([0] + ends[:-1], ends))


def train_step(net: Network, opt: Optimizer | None, x, labels, state, tbptt: int | None = None,
               carry=None, tbptt_offset: int = 0):
    """Forward, loss, BPTT and (if ``opt``) the update; with ``tbptt`` the sequence is cut into
    chunks of that many steps (``tbptt_chunks``: the first ``tbptt_offset`` steps longer), each
    followed by an update, the state carried forward detached
    and, for the summed readouts, the running sum carried as a constant (official PS-MNIST).
    ``carry``: the summed readout's starting value (None: 0), as ``preset_state`` gives it.
    Returns (loss, correct, count, firing_rates)."""
    T = x.shape[1]
    start, per_step = net.config.loss.start, net.config.loss.kind == "nll_per_step"
    loss_sum, correct, count = 0.0, 0, 0
    rates = []
    for t0, t1 in tbptt_chunks(T, tbptt, tbptt_offset):
        trace = net.forward(x[:, t0:t1], state)
        rates.append((t1 - t0, trace.firing_rates()))
        if t1 > start:
            ys = labels[:, t0:t1] if per_step else labels
            res = net.loss(trace, ys, carry=carry, grad=opt is not None, start=max(0, start - t0))
            if opt is not None:
                grads = net.backward(trace, res.grad)
                opt.step(grads)
            if per_step:
                loss_sum += res.loss
                correct += res.correct
                count += res.count
            else:
                loss_sum, correct, count, carry = res.loss, res.correct, res.count, res.logits
        if t1 < T:
            state = trace.final_state(net.config)
    total = sum(n for n, _ in rates)
    fr = [None if r is None else sum(n * rr[i] for n, rr in rates) / total
          for i, r in enumerate(rates[0][1])]
    return loss_sum, correct, count, fr


def update_average(average: dict, params: dict, decay: float) -> None:
    """One step of the exponential moving average of the parameters, in place:
    average = decay * average + (1 - decay) * params (Polyak averaging; ``average`` starts as
    the initial parameters, so it needs no bias correction)."""
    for k, a in average.items():
        a += (1.0 - decay) * (params[k] - a)


class Trainer:
    """Runs epochs of ``train_step`` with validation, checkpoints and resume in ``out_dir``.

    Files in out_dir: ``manifest.json`` (what ran, where and from which code: written when
    the run starts, a record appended to its ``resumes`` when it is resumed; see
    ``spikesim.train.manifest``), ``last.ckpt`` (after every epoch, and every
    ``checkpoint_every_s`` seconds mid-epoch), ``best.ckpt`` (best validation accuracy),
    ``history.json``. A killed run resumes from ``last.ckpt`` at the batch where it stopped:
    the batch order of each epoch is a function of (seed, epoch) alone. Each batch starts from
    the preset ``cfg.init_state``, its random numbers a function of (seed, epoch, batch index).
    A training set whose ``augments`` is true gets a generator of (seed, epoch, batch index) as
    the second argument of ``get`` too. With ``cfg.average_decay`` the Trainer keeps an
    exponential moving average of the parameters (float64, updated after every batch, stored
    in ``last.ckpt`` beside the optimiser's state): validation runs on the average, and
    ``best.ckpt`` holds the average of the best epoch; training accuracy is that of the
    parameters being trained, and the history records their validation accuracy too.
    ``meta`` (the task's own settings: data encoding, augmentation, model selection) is
    stored in the checkpoints; resuming with other training or task settings warns and names
    them.
    """

    def __init__(self, net: Network, cfg: TrainConfig, train_set, val_set=None, out_dir=None,
                 progress: bool = True, meta: dict | None = None):
        self.net, self.cfg = net, cfg
        self.train_set, self.val_set = train_set, val_set
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        self.meta = dict(meta or {})
        self.opt = Optimizer(net.params, cfg.lr, cfg.optimizer, cfg.betas, cfg.eps, cfg.lr_mult,
                             cfg.clip_norm, frozen=_frozen(net), weight_decay=cfg.weight_decay)
        self.schedule = make_schedule(cfg.schedule)
        self.average = None     # the moving average of the parameters (cfg.average_decay)
        if cfg.average_decay is not None:
            if hasattr(net.backend, "bind_params"):
                raise ValueError("averaging the parameters (average_decay, --ema) runs on the "
                                 "CPU backend only: the CUDA backend keeps the parameters on "
                                 "the device during a fit")
            self.average = {k: np.array(v, dtype=np.float64) for k, v in net.params.items()}
        net.reuse_buffers = True        # work arrays reused across steps (no page faults)
        self.history: list = []
        self.epoch, self.batch_index = 0, 0    # the next batch of the epoch in progress
        self.best_val = -1.0
        self._stats = None       # running sums of the epoch in progress
        self._resumed = False
        self._manifest_done = False     # written (or its resume recorded) by this Trainer

    # -- checkpoints -----------------------------------------------------------------------------
    def _save(self, name: str):
        if self.out_dir is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.opt.sync_params()          # the device's parameters, where they are kept there
        opt_state = self.opt.state_dict()
        params = self.net.params
        if self.average is not None:
            opt_state["average"] = {k: a.copy() for k, a in self.average.items()}
            if name == "best.ckpt":     # the model selected is the average
                params = self.averaged_params()
        save_checkpoint(self.out_dir / name, params, self._config_dict(),
                        opt_state, epoch=self.epoch, seed=self.cfg.seed,
                        extra={"batch_index": self.batch_index, "history": self.history,
                               "best_val": self.best_val, "meta": self.meta,
                               "epoch_stats": self._stats if self.batch_index else None})

    def _config_dict(self):
        return {"network": self.net.config.to_dict(), "train": self.cfg.to_dict(),
                "dtype": str(self.net.dtype)}

    def resume(self) -> bool:
        """Load ``last.ckpt`` from out_dir if present; returns whether it did."""
        path = None if self.out_dir is None else self.out_dir / "last.ckpt"
        if path is None or not path.exists():
            return False
        ck = load_checkpoint(path)
        # JSON has no tuples: compare both sides in their JSON form
        if ck.config.get("network") != json.loads(json.dumps(self.net.config.to_dict())):
            raise ValueError(f"{path}: checkpoint network config differs from this run's")
        # task settings: compared where both sides have them (a Trainer made without ``meta``,
        # as in the API examples, resumes any run's checkpoint without a word)
        stored_meta, meta = ck.extra.get("meta"), json.loads(json.dumps(self.meta))
        if stored_meta and meta and stored_meta != meta:
            keys = sorted(k for k in set(stored_meta) | set(meta)
                          if stored_meta.get(k) != meta.get(k))
            warnings.warn(f"{path}: resuming a run whose task settings differ in {keys}; the "
                          "run continues with this run's", stacklevel=2)
        self._copy_into_params(ck.params)
        self.opt.load_state_dict(ck.optimizer_state)
        if self.average is not None:
            stored_average = ck.optimizer_state.get("average")
            if stored_average is None:
                warnings.warn(f"{path}: the checkpoint holds no moving average of the "
                              "parameters; the average starts from its parameters", stacklevel=2)
            elif set(stored_average) != set(self.average):
                raise ValueError(f"{path}: the stored moving average does not match the "
                                 "parameters")
            for k, a in self.average.items():
                a[...] = self.net.params[k] if stored_average is None else stored_average[k]
        stored = dict(ck.config.get("train", {}))
        if isinstance(stored.get("init_state"), dict):      # older checkpoints: a dict spec
            stored["init_state"] = state_name(stored["init_state"])
        changed = sorted(k for k, v in json.loads(json.dumps(self.cfg.to_dict())).items()
                         if k in stored and stored[k] != v and k != "epochs")
        if changed:
            warnings.warn(f"{path}: resuming a run whose training settings differ in {changed}; "
                          "the run continues with the checkpoint's optimiser state (learning "
                          "rate included) and this run's other settings", stacklevel=2)
        # older checkpoints: "batch"
        self.epoch = ck.epoch
        self.batch_index = int(ck.extra.get("batch_index", ck.extra.get("batch", 0)))
        self.history = list(ck.extra.get("history", []))
        self.best_val = float(ck.extra.get("best_val", -1.0))
        self._stats = ck.extra.get("epoch_stats") if self.batch_index else None
        self._resumed = True
        return True

    def _write_manifest(self):
        """manifest.json at the start of this Trainer's first ``fit``: a new one for a new run,
        a record appended to ``resumes`` after :meth:`resume`."""
        if self.out_dir is None or self._manifest_done:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / manifest.FILE_NAME
        if self._resumed:
            manifest.record_resume(path, self.cfg.seed, epoch=self.epoch,
                                   batch_index=self.batch_index)
        else:
            manifest.write(path, {**manifest.collect(self.cfg.seed),
                                  "backend": self.net.backend.name})
        self._manifest_done = True

    def averaged_params(self) -> dict:
        """The moving average of the parameters in the network's dtype (None: no averaging)."""
        if self.average is None:
            return None
        return {k: a.astype(self.net.params[k].dtype) for k, a in self.average.items()}

    def use_average(self) -> None:
        """Put the moving average into the network's parameters (after ``fit``: the model to
        test when the last epoch is chosen). No averaging: nothing changes."""
        if self.average is not None:
            self._copy_into_params(self.average)

    def _copy_into_params(self, values: dict) -> None:
        """Overwrite the network's parameters in place (the kernels and the optimiser hold
        these arrays, so they are filled, never replaced)."""
        for k, a in values.items():
            self.net.params[k][...] = a

    def _validate(self) -> dict:
        """The validation record of an epoch: ``evaluate``'s loss, accuracy and firing rates
        on the validation set. With a moving average they are the average's, and the trained
        parameters' loss and accuracy come as ``val_loss_trained`` and ``val_acc_trained`` (so
        that a run measures what the average changes; the trained parameters are put back)."""
        def run():
            return evaluate(self.net, self.val_set,
                            self.cfg.eval_batch_size or self.cfg.batch_size, self.cfg.init_state,
                            seed=self.cfg.seed + VALIDATION_SEED_OFFSET)
        trained_result = run()
        if self.average is None:
            return {"val_loss": trained_result["loss"], "val_acc": trained_result["accuracy"],
                    "firing_rates": trained_result["firing_rates"]}
        trained = {k: v.copy() for k, v in self.net.params.items()}
        self.use_average()
        try:
            v = run()
        finally:
            self._copy_into_params(trained)
        return {"val_loss": v["loss"], "val_acc": v["accuracy"], "firing_rates": v["firing_rates"],
                "val_loss_trained": trained_result["loss"],
                "val_acc_trained": trained_result["accuracy"]}

    # -- loop ------------------------------------------------------------------------------------
    def fit(self) -> list:
        """Train to ``cfg.epochs``; returns the history. On the CUDA backend the parameters and
        the optimiser's moments stay on the device for the whole fit (``_to_device``): the host
        parameters are brought up to date for each checkpoint and at the end."""
        on_device = self._to_device()
        try:
            return self._fit()
        finally:
            if on_device:
                self.opt.sync_params()
                self.net.backend.unbind_params()

    def _to_device(self) -> bool:
        """Where the backend keeps parameters on its device (``bind_params``: CUDA), bind them
        and move the optimiser there (``Optimizer.to_device``); returns whether it did."""
        backend = self.net.backend
        if not hasattr(backend, "bind_params"):
            return False
        from ..backends.cuda.optim import DeviceUpdate
        dparams = backend.bind_params(self.net.params)
        self.opt.to_device(dparams, DeviceUpdate(self.net.dtype, backend.block_threads))
        return True

    def _fit(self) -> list:
        from tqdm.auto import tqdm
        cfg, n = self.cfg, len(self.train_set)
        nb = math.ceil(n / cfg.batch_size)
        self._write_manifest()
        # the first batch of a fit compiles the kernels in a fresh process: its bar starts
        # after that batch, so that the time estimate is that of training, not of compiling
        first_batch = True
        with self.net.session():
            while self.epoch < cfg.epochs:
                e = self.epoch
                self.opt.lr = self.opt.base_lr * self.schedule.factor(e)
                order = np.random.default_rng([cfg.seed, e]).permutation(n)
                t_start, last_ck = time.time(), time.time()
                stats = self._stats if (self.batch_index and self._stats) else {
                    "loss": 0.0, "correct": 0, "count": 0, "n": 0, "seconds": 0.0}
                self._stats = stats
                def new_bar(e=e):
                    return tqdm(total=nb, initial=self.batch_index,
                                desc=f"epoch {e + 1}/{cfg.epochs}", disable=not self.progress,
                                leave=False)
                bar = None if first_batch else new_bar()
                fr = None
                while self.batch_index < nb:
                    i = self.batch_index
                    idx = np.sort(order[i * cfg.batch_size:(i + 1) * cfg.batch_size])
                    if getattr(self.train_set, "augments", False):
                        # random augmentation drawn from (seed, epoch, batch): exact on resume
                        x, y = self.train_set.get(idx, np.random.default_rng([cfg.seed, e, i, 2]))
                    else:
                        x, y = self.train_set.get(idx)
                    st, carry = preset_state(self.net.config, cfg.init_state, len(idx),
                                             self.net.dtype,
                                             np.random.default_rng([cfg.seed, e, i, 1]))
                    loss, c, k, fr = train_step(self.net, self.opt, x, y, st, cfg.tbptt, carry,
                                                cfg.tbptt_offset)
                    self._clamp()
                    if self.average is not None:
                        update_average(self.average, self.net.params, cfg.average_decay)
                    stats["loss"] += loss * len(idx)
                    stats["correct"] += c
                    stats["count"] += k
                    stats["n"] += len(idx)
                    self.batch_index += 1
                    if bar is None:
                        bar, first_batch = new_bar(), False
                    else:
                        bar.update(1)
                    bar.set_postfix(loss=f"{stats['loss'] / stats['n']:.4f}",
                                    acc=f"{stats['correct'] / max(1, stats['count']):.3f}")
                    if time.time() - last_ck > cfg.checkpoint_every_s and self.batch_index < nb:
                        stats["seconds"] += time.time() - t_start
                        t_start = last_ck = time.time()
                        self._save("last.ckpt")
                if bar is not None:
                    bar.close()
                stats["seconds"] += time.time() - t_start
                rec = {"epoch": e + 1, "lr": self.opt.lr,
                       "train_loss": stats["loss"] / max(1, stats["n"]),
                       "train_acc": stats["correct"] / max(1, stats["count"]),
                       "seconds": stats["seconds"], "firing_rates": fr}
                if self.val_set is not None and len(self.val_set):
                    rec.update(self._validate())
                self.history = [h for h in self.history if h.get("epoch") != e + 1] + [rec]
                self.epoch, self.batch_index = e + 1, 0
                if self.progress:
                    tqdm.write(_fmt(rec))
                if rec.get("val_acc", -1) > self.best_val:
                    self.best_val = rec["val_acc"]
                    self._save("best.ckpt")
                self._save("last.ckpt")
                self._write_history()
                for hook in EPOCH_HOOKS:
                    hook(rec)           # may raise StopTraining (after the checkpoint)
        return self.history

    def _clamp(self):
        if self.cfg.tau_min is None:
            return
        for k, v in self.net.params.items():
            if k.endswith(".tau_m") or k.endswith(".tau_adp"):
                if self.opt.on_device:
                    self.opt.ops.clamp_min(self.opt.dparams[k], self.cfg.tau_min)
                else:
                    np.maximum(v, self.cfg.tau_min, out=v)

    def _write_history(self):
        if self.out_dir is None:
            return
        tmp = self.out_dir / "history.json.tmp"
        tmp.write_text(json.dumps(self.history, indent=1))
        os.replace(tmp, self.out_dir / "history.json")


def training_seconds(history: list) -> float:
    """The training time of a run: the sum of its epochs' own seconds, so that every leg of a
    resumed run counts (the wall time of one process would count only the last)."""
    return float(sum(h.get("seconds", 0.0) for h in history))


def _frozen(net: Network):
    out = []
    for l in net.config.layers:
        if not l.train_tau_m:
            out.append(f"{l.name}.tau_m")
        if l.spiking and not l.train_tau_adp:
            out.append(f"{l.name}.tau_adp")
    return out


def _fmt(rec: dict) -> str:
    s = f"epoch {rec['epoch']:3d}  loss {rec['train_loss']:.4f}  acc {rec['train_acc']:.4f}"
    if "val_acc" in rec:
        s += f"  val_loss {rec['val_loss']:.4f}  val_acc {rec['val_acc']:.4f}"
    if "val_acc_trained" in rec:        # with a moving average: val_acc is the average's
        s += f"  (trained {rec['val_acc_trained']:.4f})"
    return s + f"  ({rec['seconds']:.1f} s)"
