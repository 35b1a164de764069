"""Training loop: epochs over shuffled batches, optional truncated BPTT, validation, atomic
checkpoints and resume, a progress bar, and a results history.

A dataset is anything with ``len(ds)`` and ``ds.get(idx) -> (x (B, T, C), labels)``; the
task modules build them (encoding on the fly where the encoded set would not fit in memory).
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
from ..kernels.threads import compute_threads
from ..model.network import Network, initial_state
from .optim import Optimizer, make_schedule


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
    tbptt: int | None = None                         # truncated BPTT chunk length in steps
    seed: int = 0
    init_state: dict = field(default_factory=lambda: {"mode": "zeros"})
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
        self.betas = tuple(self.betas)
        make_schedule(self.schedule)    # validates

    def to_dict(self):
        return dataclasses.asdict(self)


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


def make_state(net: Network, batch: int, spec: dict, rng: np.random.Generator | None):
    spec = dict(spec or {"mode": "zeros"})
    mode = spec.pop("mode", "zeros")
    return initial_state(net.config, batch, net.dtype, mode=mode, rng=rng, **spec)


def train_step(net: Network, opt: Optimizer | None, x, labels, state, tbptt: int | None = None):
    """Forward, loss, BPTT and (if ``opt``) the update; with ``tbptt`` the sequence is cut into
    chunks of that many steps, each followed by an update, the state carried forward detached
    and, for the summed readouts, the running sum carried as a constant (official PS-MNIST).
    Returns (loss, correct, count, firing_rates)."""
    T = x.shape[1]
    k = tbptt if tbptt else T
    start, per_step = net.config.loss.start, net.config.loss.kind == "nll_per_step"
    carry, loss_sum, correct, count = None, 0.0, 0, 0
    rates = []
    for t0 in range(0, T, k):
        t1 = min(T, t0 + k)
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


def evaluate(net: Network, dataset, batch_size: int = 64, init_state: dict | None = None,
             seed: int = 0, collect=False, progress=False, desc="eval") -> dict:
    """Loss, accuracy and firing rates over a dataset (no updates). With ``collect``, also the
    predictions and summed readouts per sample."""
    from tqdm.auto import tqdm
    n = len(dataset)
    rng = np.random.default_rng(seed)
    loss = correct = count = 0.0
    rates, preds, logits = None, [], []
    reuse, net.reuse_buffers = net.reuse_buffers, True
    with compute_threads():
        for b0 in tqdm(range(0, n, batch_size), desc=desc, disable=not progress, leave=False):
            idx = np.arange(b0, min(n, b0 + batch_size))
            x, y = dataset.get(idx)
            st = make_state(net, len(idx), init_state, rng)
            trace = net.forward(x, st)
            res = net.loss(trace, y)
            loss += res.loss * len(idx)
            correct += res.correct
            count += res.count
            fr = trace.firing_rates()
            rates = [None if r is None else (0 if rates is None else rates[i]) + r * len(idx)
                     for i, r in enumerate(fr)]
            if collect:
                preds.append(res.pred.copy())   # (reused buffers: the next batch overwrites it)
                if res.logits is not None:
                    logits.append(res.logits)
    net.reuse_buffers = reuse
    out = {"loss": loss / n, "accuracy": correct / max(1, count), "correct": int(correct),
           "count": int(count), "n_samples": n,
           "firing_rates": [None if r is None else r / n for r in rates]}
    if collect:
        out["predictions"] = np.concatenate(preds)
        out["logits"] = np.concatenate(logits) if logits else None
    return out


class Trainer:
    """Runs epochs of ``train_step`` with validation, checkpoints and resume in ``out_dir``.

    Files in out_dir: ``last.ckpt`` (after every epoch, and every ``checkpoint_every_s``
    seconds mid-epoch), ``best.ckpt`` (best validation accuracy), ``history.json``.
    A killed run resumes from ``last.ckpt`` at the batch where it stopped: the batch order of
    each epoch is a function of (seed, epoch) alone.
    """

    def __init__(self, net: Network, cfg: TrainConfig, train_set, val_set=None, out_dir=None,
                 progress: bool = True, meta: dict | None = None):
        self.net, self.cfg = net, cfg
        self.train_set, self.val_set = train_set, val_set
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        self.meta = dict(meta or {})
        self.opt = Optimizer(net.params, cfg.lr, cfg.optimizer, cfg.betas, cfg.eps, cfg.lr_mult,
                             cfg.clip_norm, frozen=_frozen(net))
        self.schedule = make_schedule(cfg.schedule)
        net.reuse_buffers = True        # work arrays reused across steps (no page faults)
        self.history: list = []
        self.epoch, self.batch = 0, 0
        self.best_val = -1.0
        self._stats = None       # running sums of the epoch in progress

    # -- checkpoints -----------------------------------------------------------------------------
    def _save(self, name: str):
        if self.out_dir is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        save_checkpoint(self.out_dir / name, self.net.params, self._config_dict(),
                        self.opt.state_dict(), epoch=self.epoch, seed=self.cfg.seed,
                        extra={"batch": self.batch, "history": self.history,
                               "best_val": self.best_val, "meta": self.meta,
                               "epoch_stats": self._stats if self.batch else None})

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
        for k, v in ck.params.items():
            self.net.params[k][...] = v
        self.opt.load_state_dict(ck.optimizer_state)
        stored = ck.config.get("train", {})
        changed = sorted(k for k, v in json.loads(json.dumps(self.cfg.to_dict())).items()
                         if k in stored and stored[k] != v and k != "epochs")
        if changed:
            warnings.warn(f"{path}: resuming a run whose training settings differ in {changed}; "
                          "the run continues with the checkpoint's optimiser state (learning "
                          "rate included) and this run's other settings", stacklevel=2)
        self.epoch, self.batch = ck.epoch, int(ck.extra.get("batch", 0))
        self.history = list(ck.extra.get("history", []))
        self.best_val = float(ck.extra.get("best_val", -1.0))
        self._stats = ck.extra.get("epoch_stats") if self.batch else None
        return True

    # -- loop ------------------------------------------------------------------------------------
    def fit(self) -> list:
        from tqdm.auto import tqdm
        cfg, n = self.cfg, len(self.train_set)
        nb = math.ceil(n / cfg.batch_size)
        with compute_threads():
            while self.epoch < cfg.epochs:
                e = self.epoch
                self.opt.lr = self.opt.base_lr * self.schedule.factor(e)
                order = np.random.default_rng([cfg.seed, e]).permutation(n)
                t_start, last_ck = time.time(), time.time()
                stats = self._stats if (self.batch and self._stats) else {
                    "loss": 0.0, "correct": 0, "count": 0, "n": 0, "seconds": 0.0}
                self._stats = stats
                bar = tqdm(total=nb, initial=self.batch, desc=f"epoch {e + 1}/{cfg.epochs}",
                           disable=not self.progress, leave=False)
                fr = None
                while self.batch < nb:
                    i = self.batch
                    idx = np.sort(order[i * cfg.batch_size:(i + 1) * cfg.batch_size])
                    x, y = self.train_set.get(idx)
                    st = make_state(self.net, len(idx), cfg.init_state,
                                    np.random.default_rng([cfg.seed, e, i, 1]))
                    loss, c, k, fr = train_step(self.net, self.opt, x, y, st, cfg.tbptt)
                    self._clamp()
                    stats["loss"] += loss * len(idx)
                    stats["correct"] += c
                    stats["count"] += k
                    stats["n"] += len(idx)
                    self.batch += 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{stats['loss'] / stats['n']:.4f}",
                                    acc=f"{stats['correct'] / max(1, stats['count']):.3f}")
                    if time.time() - last_ck > cfg.checkpoint_every_s and self.batch < nb:
                        stats["seconds"] += time.time() - t_start
                        t_start = last_ck = time.time()
                        self._save("last.ckpt")
                bar.close()
                stats["seconds"] += time.time() - t_start
                rec = {"epoch": e + 1, "lr": self.opt.lr,
                       "train_loss": stats["loss"] / max(1, stats["n"]),
                       "train_acc": stats["correct"] / max(1, stats["count"]),
                       "seconds": stats["seconds"], "firing_rates": fr}
                if self.val_set is not None and len(self.val_set):
                    v = evaluate(self.net, self.val_set, cfg.eval_batch_size or cfg.batch_size,
                                 cfg.init_state, seed=cfg.seed + 1)
                    rec.update(val_loss=v["loss"], val_acc=v["accuracy"],
                               firing_rates=v["firing_rates"])
                self.history = [h for h in self.history if h.get("epoch") != e + 1] + [rec]
                self.epoch, self.batch = e + 1, 0
                if self.progress:
                    tqdm.write(_fmt(rec))
                if rec.get("val_acc", -1) > self.best_val:
                    self.best_val = rec["val_acc"]
                    self._save("best.ckpt")
                self._save("last.ckpt")
                self._write_history()
        return self.history

    def _clamp(self):
        if self.cfg.tau_min is None:
            return
        for k, v in self.net.params.items():
            if k.endswith(".tau_m") or k.endswith(".tau_adp"):
                np.maximum(v, self.cfg.tau_min, out=v)

    def _write_history(self):
        if self.out_dir is None:
            return
        tmp = self.out_dir / "history.json.tmp"
        tmp.write_text(json.dumps(self.history, indent=1))
        os.replace(tmp, self.out_dir / "history.json")


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
    return s + f"  ({rec['seconds']:.1f} s)"
