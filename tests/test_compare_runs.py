"""experiments/smnist/compare_runs.py: the table of runs at matched epochs."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("compare_runs",
                                              ROOT / "experiments" / "smnist" / "compare_runs.py")
compare_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_runs)


def _history(vals):
    return [{"epoch": e, "val_acc": v, "train_acc": v / 2, "seconds": 10.0}
            for e, v in enumerate(vals, start=1)]


def test_rows_at_matched_epochs():
    hist = _history([0.1, 0.5, 0.2, 0.3, 0.4, 0.6])
    rows = compare_runs.at_epochs(hist, [2, 5, 9], window=3)
    assert [r["epoch"] for r in rows] == [2, 5]          # epoch 9 was not reached
    two, five = rows
    assert two["val"] == 0.5 and two["val_best"] == 0.5
    assert two["val_mean"] == pytest.approx((0.1 + 0.5) / 2)    # only two epochs exist
    assert five["val"] == 0.4 and five["val_best"] == 0.5 and five["train"] == 0.2
    assert five["val_mean"] == pytest.approx((0.2 + 0.3 + 0.4) / 3)


def test_table_from_run_folders(tmp_path, capsys):
    for name, vals in {"a": [0.2, 0.4], "b": [0.3]}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "history.json").write_text(json.dumps(_history(vals)))
    assert compare_runs.main([str(tmp_path / "a"), str(tmp_path / "b"), "--at", "2",
                              "--window", "2"]) is None
    out = capsys.readouterr().out
    assert "| a | 2 | 40.0 | 30.0 | 40.0 | 20.0 |" in out
    assert "| b | (reached epoch 1) |" in out


def test_pauses_count_at_the_median():
    hist = [{"seconds": s} for s in (10.0, 12.0, 900.0, 11.0)]
    assert compare_runs.epoch_seconds(hist) == [10.0, 12.0, 900.0, 11.0]
    assert compare_runs.epoch_seconds(hist, pauses_over=100) == [10.0, 12.0, 11.0, 11.0]


@pytest.mark.parametrize("argv", [["--at", "0"], ["--at", "x"], ["--at", "3", "--window", "0"],
                                  []])
def test_bad_arguments_are_refused(tmp_path, argv):
    (tmp_path / "history.json").write_text(json.dumps(_history([0.5])))
    with pytest.raises(SystemExit) as e:
        compare_runs.main([str(tmp_path)] + argv)
    assert e.value.code == 2
