"""The figures of spikesim.plots are written as PNG files."""
import numpy as np
import pytest

pytest.importorskip("matplotlib")
from spikesim import plots  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    return path.is_file() and path.read_bytes()[:8] == PNG


def test_learning_curves(tmp_path):
    hist = [{"epoch": e, "train_loss": 2.0 / e, "train_acc": 0.5 + 0.05 * e,
             "val_loss": 2.2 / e, "val_acc": 0.45 + 0.05 * e} for e in range(1, 6)]
    assert _is_png(plots.learning_curves(hist, tmp_path / "lc.png"))
    nov = [{k: v for k, v in h.items() if not k.startswith("val")} for h in hist]
    assert _is_png(plots.learning_curves(nov, tmp_path / "sub" / "lc2.png"))
    with pytest.raises(ValueError):
        plots.learning_curves([], tmp_path / "x.png")


def test_tau_histograms(tmp_path):
    rng = np.random.default_rng(0)
    before = {"hidden.tau_m": np.full(36, 20.0), "hidden.tau_adp": np.full(36, 7.0),
              "out.tau_m": np.full(6, 20.0), "out.W_in": np.zeros((6, 36))}
    after = {k: v + rng.normal(0, 3, v.shape) for k, v in before.items()}
    assert _is_png(plots.tau_histograms(before, after, tmp_path / "tau.png"))
    assert _is_png(plots.tau_histograms(None, after, tmp_path / "tau2.png"))
    with pytest.raises(ValueError):
        plots.tau_histograms({"a.W_in": np.zeros(3)}, None, tmp_path / "no.png")


def test_raster_and_sequence_figure(tmp_path):
    from matplotlib.figure import Figure
    rng = np.random.default_rng(1)
    T = 200
    x = (rng.random((T, 4)) < 0.05).astype(float)
    hs = (rng.random((T, 36)) < 0.2).astype(float)
    fig = Figure()
    ax = fig.add_subplot()
    assert plots.raster(ax, hs, "hidden") is ax
    with pytest.raises(ValueError):
        plots.raster(ax, hs[0], "bad")
    um = rng.normal(size=(T, 6))
    labels = np.repeat(np.arange(5), T // 5)
    pred = um.argmax(1)
    assert _is_png(plots.sequence_figure(x, hs, um, labels, pred, tmp_path / "seq.png"))


def test_missing_matplotlib_warns_once_and_skips(tmp_path, monkeypatch):
    import sys
    import warnings
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)      # import matplotlib -> ImportError
    monkeypatch.setattr(plots, "_WARNED", False)
    hist = [{"epoch": 1, "train_loss": 1.0, "train_acc": 0.5}]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert plots.learning_curves(hist, tmp_path / "a.png") is None
        assert plots.tau_histograms({"x.tau_m": np.ones(3)}, None, tmp_path / "b.png") is None
    assert len([x for x in w if "matplotlib" in str(x.message)]) == 1
    assert not (tmp_path / "a.png").exists()
