"""``spikesim bench`` study options: custom shapes, workloads, truncated BPTT, target firing
rates, per-kernel breakdown, sweeps, memory, JSON and plots. Every check is about what is
reported (shapes, rates, fields, sums), never about how fast anything ran."""
import json
import math

import numpy as np
import pytest

from spikesim.backends.cpu import backend as cpu_backend
from spikesim.cli import main
from validation import bench_machine, bench_study
from validation.bench_breakdown import breakdown, kernel_timing, time_train_step
from validation.bench_counts import step_counts
from validation.bench_memory import measure
from validation.bench_rate import target_rate, within
from validation.problems import (
    build,
    custom_spec,
    make_problem,
    named_spec,
    parse_layers,
    with_overrides,
)

TINY = ["--layers", "rec:20,dense:5", "--n-in", "12", "--batch", "4", "--steps", "30",
        "--repeats", "1", "--no-reference", "--no-torch"]


@pytest.fixture(autouse=True)
def quick_ceilings(monkeypatch):
    """Small copies and products for the machine's ceilings (the real ones take seconds)."""
    monkeypatch.setattr(bench_study, "ceilings", lambda: bench_machine.ceilings(quick=True))


def test_layer_and_sweep_syntax():
    layers = parse_layers("rec:8,dense:4,integrator:3")
    assert [(l.kind, l.size, l.name) for l in layers] == [("rec", 8, "l0"), ("dense", 4, "l1"),
                                                          ("integrator", 3, "l2")]
    assert parse_layers("16")[0].kind == "rec"
    for bad in ("conv:8", "rec:x", "rec:8,,dense:2", "rec:0"):
        with pytest.raises(ValueError):
            parse_layers(bad)
    assert bench_study.parse_sweep("batch=16,32") == ("batch", [16, 32])
    assert bench_study.parse_sweep("rate=0.05,0.2") == ("rate", [0.05, 0.2])
    for bad in ("batch", "depth=2", "rate=1.5", "steps=0", "width=a"):
        with pytest.raises(ValueError):
            bench_study.parse_sweep(bad)


def test_named_problems_unchanged_and_overrides():
    """make_problem builds what it always built; overrides change only what they name."""
    net, x, labels = make_problem("ecg")
    assert x.shape == (64, 1301, 4) and labels.shape == (64, 1301)
    assert np.isclose(np.mean(x), 0.1, atol=0.01)
    s = with_overrides(named_spec("shd"), batch=3, steps=20, width=16, density=0.5,
                       dtype="float64")
    assert [l.size for l in s.cfg.layers] == [16, 16, 20] and s.cfg.loss.start == 11
    net, x, labels = build(s)
    assert x.shape == (3, 20, 700) and x.dtype == np.float64 and labels.shape == (3,)
    assert with_overrides(named_spec("shd"), steps=5).cfg.loss.start == 4


def test_custom_study_json_fields_and_shapes(tmp_path, capsys):
    out = tmp_path / "study.json"
    assert main(["bench", *TINY, "--dtype", "float64", "--loss", "ce_sum_spike",
                 "--rate", "0.1", "--breakdown", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    for key in ("date", "git_commit", "git_dirty", "versions", "machine", "kernel_threads",
                "loadavg", "loadavg_end"):
        assert key in res["meta"]
    assert res["meta"]["versions"]["numba"]
    for key in ("sgemm_peak_gflops", "copy_gbs_1thread", "copy_gbs_all"):
        assert res["ceilings"][key] > 0
    (p,) = res["points"]
    assert (p["batch"], p["steps"], p["dtype"], p["loss"], p["layers"], p["n_in"]) == \
        (4, 30, "float64", "ce_sum_spike", "rec:20,dense:5", 12)
    assert len(p["firing_rates"]) == 2 and p["rate_reached"] is True
    assert all(within(r, 0.1, 0.1) for r in p["firing_rates"])
    assert p["model_bytes"] > 0 and p["model_flops"] > 0 and p["reference_s"] is None
    assert math.isclose(p["per_sample_step_s"], p["median_s"] / 120)
    parts = {q["part"] for q in p["breakdown"]["parts"]}
    assert {"input lists", "l0 forward", "l1 forward", "loss", "l1 backward", "l0 backward",
            "optimiser"} <= parts
    text = capsys.readouterr().out
    assert "breakdown of one custom step" in text
    kt = res["meta"]["machine"]["kernel_target"]       # which vector code ran, said and kept
    assert f"kernels compiled for {kt['cpu_name']} ({kt['vector']} vectors, " \
           f"{kt['list_builder']} list builder)" in text


def test_breakdown_sums_to_the_step_and_sees_every_chunk():
    spec = with_overrides(custom_spec("rec:24,rec:16,integrator:3", 10), batch=6, steps=50)
    net, x, labels = build(spec)
    b = breakdown(net, x, labels, tbptt=20, repeats=2)
    total = sum(p["seconds"] for p in b["parts"])
    assert math.isclose(total, b["total_s"], rel_tol=1e-9)
    assert math.isclose(sum(p["share"] for p in b["parts"]), 1.0, rel_tol=1e-9)
    kernels = [p for p in b["parts"] if "forward" in p["part"] or "backward" in p["part"]
               or p["part"] == "input lists"]
    assert all(p["seconds"] >= 0 for p in kernels if "host" not in p["part"])
    # truncated BPTT runs train_step's chunks: 50 steps in chunks of 20 = 3 forward passes
    calls = []
    with kernel_timing(calls):
        time_train_step(net, x, labels, tbptt=20, repeats=1, warmup=0)
    assert cpu_backend.kernel_timer is None
    nch = 1 + max(c for c, *_ in calls)
    assert sum(1 for c in calls if c[2] == "input_lists") == 3 * nch
    assert sum(1 for c in calls if c[2] == "alif_backward") == 3 * 2 * nch


def test_timing_hook_changes_no_bit():
    net, x, labels = make_problem("ecg")
    x, labels = x[:8, :200], labels[:8, :200]
    loss0, g0, _, _ = net.loss_and_grad(x, labels)
    g0 = {k: v.copy() for k, v in g0.items()}
    with kernel_timing([]):
        loss1, g1, _, _ = net.loss_and_grad(x, labels)
    assert loss0 == loss1 and all(np.array_equal(g0[k], g1[k]) for k in g0)


def test_rate_targeting_reaches_and_reports_failure():
    spec = with_overrides(custom_spec("rec:32,dense:8", 16, density=0.1), batch=8, steps=80)
    res = target_rate(spec, 0.08)
    assert res["reached"] is True
    assert all(within(r, 0.08) for r in res["rates"])
    net, x, _ = build(res["spec"])              # the gains found, in the spec they return
    assert res["rates"] == pytest.approx(net.forward(x).firing_rates())
    # one input channel: the neurons with a negative weight never fire, so 90 % is out of reach
    one = with_overrides(custom_spec("dense:16", 1, density=0.05), batch=8, steps=60)
    bad = target_rate(one, 0.9)
    assert bad["reached"] is False and bad["rates"][0] < 0.8


def test_cli_exit_status_when_rate_unreachable(capsys):
    rc = main(["bench", "--layers", "dense:16", "--n-in", "1", "--batch", "4", "--steps", "40",
               "--rate", "0.9", "--repeats", "1", "--no-reference", "--no-torch"])
    out = capsys.readouterr().out
    assert rc == 1 and "RATE NOT REACHED" in out


def test_sweep_points_plot_and_reference(tmp_path):
    out, png = tmp_path / "sweep.json", tmp_path / "sweep.png"
    pytest.importorskip("matplotlib")
    args = [a for a in TINY if a != "--no-reference"]
    assert main(["bench", *args, "--sweep", "batch=2,4", "--sweep", "width=8,16",
                 "--json", str(out), "--plot", str(png)]) == 0
    res = json.loads(out.read_text())
    assert [(s["axis"], s["values"]) for s in res["sweeps"]] == [("batch", [2, 4]),
                                                                 ("width", [8, 16])]
    assert [p["batch"] for p in res["sweeps"][0]["points"]] == [2, 4]
    assert [p["layers"] for p in res["sweeps"][1]["points"]] == ["rec:8,dense:5",
                                                                 "rec:16,dense:5"]
    assert all(p["reference_s"] > 0 for s in res["sweeps"] for p in s["points"])
    assert png.stat().st_size > 1000


def test_model_counts_of_a_dense_layer():
    """One dense layer, 4 -> 3, rate 0.5, input density 0.25, float32, B = 2, T = 5."""
    from spikesim.model.config import LayerConfig, NetworkConfig
    cfg = NetworkConfig(4, [LayerConfig(3, "dense")])
    c = step_counts(cfg, 2, 5, 4, 0.25, [0.5])
    R = 10
    gather = 2 * R * 0.25 * 4 * 3
    assert c["flops"] == R * 4 + (gather + R * 3 * 12) + (gather + R * 3 * 40) + 10 * R * 3
    lists_in = R * 0.25 * 4 * 8 + R * 16
    own = R * 0.5 * 3 * 8 + R * 16
    u, b = 6 * 2 * 3 * 4, 1 * 2 * 3 * 4
    assert c["bytes"] == (R * 4 * 4 + lists_in) + 2 * (lists_in + u + b + own) + R * 3 * 4 \
        + 2 * R * 3 * 4


def test_memory_in_a_fresh_process_full_and_truncated():
    spec = with_overrides(custom_spec("rec:32,dense:4", 8), batch=4, steps=120)
    full, trunc = measure(spec), measure(spec, tbptt=20)
    for m in (full, trunc):
        assert "error" not in m, m
        assert m["peak_bytes"] >= 0 and m["method"] and m["workspace_bytes"] > 0
    assert trunc["workspace_bytes"] < full["workspace_bytes"]      # arrays sized for 20 steps
    assert trunc["model_trace_bytes"] < full["model_trace_bytes"]


def test_default_bench_records_carry_the_manifest(tmp_path):
    out = tmp_path / "b.json"
    assert main(["bench", "--config", "ecg", "--repeats", "1", "--no-reference", "--no-torch",
                 "--json", str(out)]) == 0
    (rec,) = json.loads(out.read_text())
    for key in ("median_s", "gflop", "machine", "versions", "git_commit", "loadavg"):
        assert key in rec
    assert rec["machine"]["cores"] >= 1 and rec["reference_median_s"] is None


def test_which_options_start_a_study():
    from spikesim.cli import build_parser
    from validation.bench import is_study
    parse = build_parser().parse_args
    assert not is_study(parse(["bench", "--config", "ecg", "--torch-threads", "1"]))
    for extra in (["--rate", "0.1"], ["--tbptt", "50"], ["--sweep", "batch=2"], ["--memory"],
                  ["--layers", "rec:4"], ["--breakdown"], ["--dtype", "float64"]):
        assert is_study(parse(["bench", *extra]))



def test_list_probe_builds_the_same_lists_every_way():
    from validation.bench_list_probe import probe
    r = probe(B=4, T=10, N=40, density=0.1, repeats=1)     # raises if any mode's lists differ
    assert r["entries"] > 0 and all(r[k] > 0 for k in ("vcompress", "vcompress_if_any",
                                                         "bit_loop"))


def test_block_probe_gives_the_same_sums_both_ways():
    from validation.bench_block_probe import probe
    # N = 200: a 128-lane block, then a 64-lane block and a partial one
    r = probe(rows=50, N=200, rate=0.2, repeats=1)  # raises if the two ways' sums differ
    assert r["entries"] > 0 and all(r[k] > 0 for k in ("gather_128", "gather_64",
                                                         "scatter_128", "scatter_64"))
