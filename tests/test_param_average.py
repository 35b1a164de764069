"""The moving average of the parameters (TrainConfig.average_decay, ``--ema``): it equals an
independent computation from the trained parameters, leaves training unchanged, is what
validation, best.ckpt and the test see, and survives a kill mid-epoch."""
import warnings

import numpy as np
import pytest
from test_trainer import Killer  # a dataset that dies mid-epoch, like a kill

from spikesim.io.checkpoint import load_checkpoint
from spikesim.network import Network
from spikesim.tasks import synthetic
from spikesim.train import trainer as trainer_module
from spikesim.train.trainer import TrainConfig, Trainer, evaluate, update_average

N_TRAIN = 96


def make(out=None, epochs=4, batch_size=N_TRAIN, **kw):
    tr, te = synthetic.datasets(n_train=N_TRAIN, n_test=64, seed=0)
    net = Network(synthetic.network_config(hidden=24), seed=0)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=2e-2, seed=0, **kw)
    return net, Trainer(net, cfg, tr, te, out_dir=out, progress=False)


def record_params(monkeypatch, trainer):
    """The trained parameters after every epoch, through an epoch hook, in float64 (NumPy
    keeps ``0.4 * float32_array`` in float32)."""
    seen = []
    monkeypatch.setattr(trainer_module, "EPOCH_HOOKS",
                        [lambda rec: seen.append({k: v.astype(np.float64)
                                                  for k, v in trainer.net.params.items()})])
    return seen


def test_update_average_is_the_exponential_moving_average():
    rng = np.random.default_rng(0)
    start = {"w": rng.normal(size=(3, 4))}
    steps = [{"w": rng.normal(size=(3, 4))} for _ in range(5)]
    avg = {"w": start["w"].copy()}
    for p in steps:
        update_average(avg, p, 0.8)
    # closed form: 0.8^n * start + sum_i 0.2 * 0.8^(n-1-i) * p_i
    n = len(steps)
    expected = 0.8 ** n * start["w"] + sum(0.2 * 0.8 ** (n - 1 - i) * p["w"]
                                           for i, p in enumerate(steps))
    np.testing.assert_allclose(avg["w"], expected, rtol=0, atol=1e-14)


def test_average_follows_the_trained_parameters_and_is_validated(monkeypatch, tmp_path):
    """One batch per epoch, so the average is updated once per epoch: recompute it from the
    parameters seen after each epoch and compare with the Trainer's, its best.ckpt and its
    validation accuracy."""
    decay = 0.6
    plain_net, plain = make()
    plain.fit()
    net, t = make(tmp_path, average_decay=decay)
    start = {k: v.astype(np.float64) for k, v in net.params.items()}
    seen = record_params(monkeypatch, t)
    hist = t.fit()
    # averaging does not change training
    for k in net.params:
        assert np.array_equal(net.params[k], plain_net.params[k]), k
    # ... and the history's validation of the trained parameters is the plain run's
    for h, h_plain in zip(hist, plain.history):
        assert h["val_acc_trained"] == h_plain["val_acc"]
        assert h["val_loss_trained"] == h_plain["val_loss"]
        assert "val_acc_trained" not in h_plain
    averages, avg = [], {k: v.copy() for k, v in start.items()}
    for p in seen:
        avg = {k: decay * avg[k] + (1 - decay) * p[k] for k in avg}
        averages.append(avg)
    for k in avg:
        np.testing.assert_allclose(t.average[k], averages[-1][k], rtol=0, atol=1e-12)
    # the average is not the trained parameters: the comparisons above can fail
    assert any(not np.allclose(t.average[k], net.params[k]) for k in avg)
    # validation ran on the average of each epoch
    _, te = synthetic.datasets(n_train=N_TRAIN, n_test=64, seed=0)
    for h, a in zip(hist, averages):
        probe = Network(net.config, params={k: v.astype(np.float32) for k, v in a.items()})
        v = evaluate(probe, te, N_TRAIN, seed=1)
        assert h["val_acc"] == v["accuracy"] and h["val_loss"] == pytest.approx(v["loss"])
    # best.ckpt holds the average of the best epoch, last.ckpt the trained parameters
    best_epoch = max(hist, key=lambda h: h["val_acc"])["epoch"]
    best = load_checkpoint(tmp_path / "best.ckpt")
    assert best.epoch == best_epoch
    for k in avg:
        np.testing.assert_allclose(best.params[k], averages[best_epoch - 1][k], rtol=1e-6,
                                   atol=1e-7)
    last = load_checkpoint(tmp_path / "last.ckpt")
    for k in net.params:
        assert np.array_equal(last.params[k], net.params[k])
    # after fit the network holds the trained parameters until use_average()
    t.use_average()
    for k in avg:
        np.testing.assert_allclose(net.params[k], averages[-1][k], rtol=1e-6, atol=1e-7)


def test_decay_zero_validates_the_trained_parameters():
    _, plain = make(epochs=2, batch_size=32)
    _, zero = make(epochs=2, batch_size=32, average_decay=0.0)
    for a, b in zip(plain.fit(), zero.fit()):
        assert a["val_acc"] == b["val_acc"] and a["val_loss"] == pytest.approx(b["val_loss"])


def test_resume_mid_epoch_keeps_the_average(tmp_path):
    _, ref = make(epochs=2, batch_size=32, average_decay=0.9)
    ref.fit()
    _, t1 = make(tmp_path, epochs=2, batch_size=32, average_decay=0.9, checkpoint_every_s=0.0)
    t1.train_set = Killer(t1.train_set, 4)          # 3 batches per epoch: dies in epoch 2
    with pytest.raises(KeyboardInterrupt):
        t1.fit()
    _, t2 = make(tmp_path, epochs=2, batch_size=32, average_decay=0.9, checkpoint_every_s=0.0)
    assert t2.resume() and (t2.epoch, t2.batch_index) == (1, 1)
    t2.fit()
    for k in ref.average:
        assert np.array_equal(ref.average[k], t2.average[k]), k
    assert t2.history[-1]["val_acc"] == ref.history[-1]["val_acc"]


def test_resume_without_a_stored_average_warns(tmp_path):
    _, t1 = make(tmp_path, epochs=1)
    t1.fit()
    net, t2 = make(tmp_path, epochs=2, average_decay=0.9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert t2.resume()
    texts = [str(w.message) for w in caught]
    assert any("no moving average" in m for m in texts)
    assert any("settings differ in ['average_decay']" in m for m in texts)
    for k in net.params:
        assert np.array_equal(t2.average[k], net.params[k])


@pytest.mark.parametrize("decay", [1.0, -0.1, 1.5, "0.9"])
def test_bad_decay(decay):
    with pytest.raises(ValueError, match="average_decay"):
        TrainConfig(average_decay=decay)


def test_average_refused_where_parameters_live_on_a_device(monkeypatch):
    tr, te = synthetic.datasets(n_train=N_TRAIN, n_test=64, seed=0)
    net = Network(synthetic.network_config(hidden=24), seed=0)
    monkeypatch.setattr(net.backend, "bind_params", lambda params: None, raising=False)
    with pytest.raises(ValueError, match="CPU backend only"):
        Trainer(net, TrainConfig(average_decay=0.9), tr, te, progress=False)
