"""Training: the loss falls, runs are reproducible, and a killed run resumes with nothing lost."""
import json

import numpy as np
import pytest

from spikesim.network import Network
from spikesim.tasks import synthetic
from spikesim.train.trainer import ArrayDataset, TrainConfig, Trainer, evaluate


def small_data(n=96):
    return synthetic.datasets(n_train=n, n_test=64, seed=0)


def make(out=None, epochs=3, **kw):
    tr, te = small_data()
    net = Network(synthetic.network_config(hidden=24), seed=0)
    cfg = TrainConfig(epochs=epochs, batch_size=32, lr=5e-3, seed=0, **kw)
    return net, Trainer(net, cfg, tr, te, out_dir=out, progress=False)


def test_loss_falls_and_accuracy_rises():
    tr, te = synthetic.datasets(n_train=256, n_test=128, seed=0)
    net = Network(synthetic.network_config(hidden=32), seed=0)
    before = evaluate(net, te, 128)
    hist = Trainer(net, TrainConfig(epochs=6, batch_size=32, lr=5e-3), tr, te, progress=False).fit()
    assert hist[-1]["train_loss"] < 0.7 * hist[0]["train_loss"]
    after = evaluate(net, te, 128)
    assert after["loss"] < before["loss"]
    assert after["accuracy"] > 0.6 > before["accuracy"]


def test_same_seed_same_result():
    n1, t1 = make()
    n2, t2 = make()
    t1.fit()
    t2.fit()
    for k in n1.params:
        assert np.array_equal(n1.params[k], n2.params[k])


def test_resume_after_epochs(tmp_path):
    ref, tref = make(epochs=3)
    tref.fit()
    n1, t1 = make(tmp_path, epochs=2)
    t1.fit()
    assert (tmp_path / "last.ckpt").exists() and (tmp_path / "best.ckpt").exists()
    n2, t2 = make(tmp_path, epochs=3)
    assert t2.resume() and t2.epoch == 2
    hist = t2.fit()
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    for k in ref.params:
        assert np.array_equal(ref.params[k], n2.params[k]), k
    assert json.loads((tmp_path / "history.json").read_text())[-1]["epoch"] == 3


class Killer(ArrayDataset):
    """Raises KeyboardInterrupt at the n-th batch fetched, like a kill mid-epoch."""

    def __init__(self, base, n):
        super().__init__(base.x, base.labels)
        self.n = n

    def get(self, idx):
        self.n -= 1
        if self.n < 0:
            raise KeyboardInterrupt
        return super().get(idx)


def test_resume_mid_epoch_loses_nothing(tmp_path):
    ref, tref = make(epochs=2)
    tref.fit()
    n1, t1 = make(tmp_path, epochs=2, checkpoint_every_s=0.0)
    t1.train_set = Killer(t1.train_set, 4)          # 3 batches per epoch: dies in epoch 2
    with pytest.raises(KeyboardInterrupt):
        t1.fit()
    n2, t2 = make(tmp_path, epochs=2, checkpoint_every_s=0.0)
    assert t2.resume() and (t2.epoch, t2.batch_index) == (1, 1)
    t2.fit()
    for k in ref.params:
        assert np.array_equal(ref.params[k], n2.params[k]), k
    assert t2.history[-1]["train_loss"] == pytest.approx(tref.history[-1]["train_loss"], rel=1e-12)


def test_resume_refuses_a_different_network(tmp_path):
    n1, t1 = make(tmp_path, epochs=1)
    t1.fit()
    tr, te = small_data()
    net = Network(synthetic.network_config(hidden=20), seed=0)
    t = Trainer(net, TrainConfig(epochs=2, batch_size=32), tr, te, out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="config differs"):
        t.resume()


def test_resume_names_changed_data_settings(tmp_path):
    n1, t1 = make(tmp_path, epochs=1)
    t1.meta = {"window": 4}
    t1.fit()
    n2, t2 = make(tmp_path, epochs=2)
    t2.meta = {"window": 8}
    with pytest.warns(UserWarning, match=r"task settings differ in \['window'\]"):
        assert t2.resume()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for same_or_none in ({"window": 4}, {}):   # no meta given: nothing to compare
            t2.meta = same_or_none
            assert t2.resume()


def test_weight_decay_reaches_the_optimiser_and_shrinks_the_weights():
    n0, t0 = make(epochs=1)
    n1, t1 = make(epochs=1, weight_decay=0.5)
    assert t1.opt.weight_decay == 0.5 and t0.opt.weight_decay == 0.0
    t0.fit()
    t1.fit()
    weights = [k for k in n0.params if ".W_" in k]
    assert weights and all(np.abs(n1.params[k]).sum() < np.abs(n0.params[k]).sum()
                           for k in weights)


def test_bad_train_config():
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="tbptt"):
        TrainConfig(tbptt=0)
    with pytest.raises(ValueError, match="unknown schedule"):
        TrainConfig(schedule={"kind": "warm"})
