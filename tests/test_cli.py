"""The command line: demo, gradcheck and bench run and report."""
import json

from spikesim.cli import main


def test_demo_trains_and_reports(tmp_path, capsys):
    out = tmp_path / "demo.json"
    assert main(["demo", "--epochs", "6", "--quiet", "--json", str(out),
                 "--out", str(tmp_path / "run")]) == 0
    res = json.loads(out.read_text())
    assert res["accuracy"] > 0.8
    assert "test accuracy" in capsys.readouterr().out
    assert (tmp_path / "run" / "last.ckpt").exists()


def test_bench_writes_records(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--config", "ecg", "--repeats", "1", "--no-torch",
                 "--json", str(out)]) == 0
    (rec,) = json.loads(out.read_text())
    for key in ("config", "median_s", "gflop", "gflops", "peak_gflops", "reference_median_s"):
        assert key in rec
    assert rec["config"] == "ecg" and rec["median_s"] > 0 and rec["reference_median_s"] > 0
    assert abs(rec["gflop"] - 0.80) < 0.02     # validation.problems.dense_gflop: 2 x MACs


def test_unknown_option_is_an_error(capsys):
    import pytest
    with pytest.raises(SystemExit) as e:
        main(["bench", "--config", "mnist"])
    assert e.value.code == 2
