"""One evaluation loop for the trainer and every task: a dataset in batches, each from a named
initial state (``spikesim.model.state.INITIAL_STATES``), through ``net.forward`` and
``net.loss``, with no updates.

A dataset is anything with ``len(ds)`` and ``ds.get(idx) -> (x (B, T, C), labels)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.state import preset_state
from ..network import Network

#: Offsets added to a run's seed for the random initial states of its evaluations, so that
#: validation (every epoch) and the final test draw their own streams, and any script that
#: re-evaluates a run (experiments/smnist/compare_average.py) reproduces them exactly.
VALIDATION_SEED_OFFSET = 1
TEST_SEED_OFFSET = 7


@dataclass
class Batch:
    """One evaluated batch, as :func:`evaluate` hands it to ``on_batch``: samples
    ``idx`` of the dataset (``start`` = idx[0]), their input and labels, the backend's trace,
    the loss result and the summed readout's starting value (``carry``, None: 0). With reused
    work arrays the trace and the result are overwritten by the next batch: copy what you keep."""
    start: int
    idx: np.ndarray
    x: np.ndarray
    labels: np.ndarray
    trace: object
    result: object
    carry: np.ndarray | None


def evaluate(net: Network, dataset, batch_size: int = 64, init_state="zeros", seed: int = 0,
             collect: bool = False, on_batch=None, progress: bool = False,
             desc: str = "eval") -> dict:
    """Loss, accuracy and firing rates of ``net`` over ``dataset`` (no updates).

    Samples are taken in order, ``batch_size`` at a time; each batch starts from the initial
    state ``init_state`` (a preset name, or an older checkpoint's dict spec), its random numbers
    drawn from one ``np.random.default_rng(seed)`` for the whole pass. Runs inside
    ``net.session()`` with reused work arrays (the setting is restored after).

    Returns ``loss`` (the mean over samples of the per-batch loss), ``accuracy`` (correct /
    count, as ``net.loss`` counts them: per labelled step for ``nll_per_step``, per sample
    otherwise), ``correct``, ``count``, ``n_samples`` and ``firing_rates`` (per layer, the mean
    spikes per neuron per step; None for a non-spiking layer). With ``collect`` also
    ``predictions`` ((N,) or, per step, (N, T)), ``logits`` (the summed readouts (N, C), None
    for the per-step loss) and ``labels``. ``on_batch(batch)`` is called with each
    :class:`Batch`.
    """
    from tqdm.auto import tqdm
    n = len(dataset)
    if n == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    rng = np.random.default_rng(seed)
    loss = correct = count = 0.0
    rates, preds, logits, labels = None, [], [], []
    reuse, net.reuse_buffers = net.reuse_buffers, True
    try:
        with net.session():
            for lo in tqdm(range(0, n, batch_size), desc=desc, disable=not progress,
                           leave=False):
                idx = np.arange(lo, min(n, lo + batch_size))
                x, y = dataset.get(idx)
                state, carry = preset_state(net.config, init_state, len(idx), net.dtype, rng)
                trace = net.forward(x, state)
                res = net.loss(trace, y, carry=carry)
                loss += res.loss * len(idx)
                correct += res.correct
                count += res.count
                fr = trace.firing_rates()
                rates = [None if r is None else (0 if rates is None else rates[i]) + r * len(idx)
                         for i, r in enumerate(fr)]
                if collect:
                    preds.append(res.pred.copy())   # (reused buffers: the next batch overwrites)
                    if res.logits is not None:
                        logits.append(res.logits.copy())
                    labels.append(np.asarray(y))
                if on_batch is not None:
                    on_batch(Batch(lo, idx, x, y, trace, res, carry))
    finally:
        net.reuse_buffers = reuse
    out = {"loss": loss / n, "accuracy": correct / max(1, count), "correct": int(correct),
           "count": int(count), "n_samples": n,
           "firing_rates": [None if r is None else r / n for r in rates]}
    if collect:
        out["predictions"] = np.concatenate(preds)
        out["logits"] = np.concatenate(logits) if logits else None
        out["labels"] = np.concatenate(labels)
    return out
