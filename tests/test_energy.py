"""Operation and energy counts: tiny networks counted by hand (silent, every neuron spiking
every step, analog input), the dense equivalents' formulas, the energy table, the command."""
import json
from pathlib import Path

import numpy as np
import pytest

from spikesim.cli import main
from spikesim.energy.costs import EnergyTable
from spikesim.energy.counts import count_network
from spikesim.energy.dense import network_ops, parameter_count
from spikesim.energy.report import analyse
from spikesim.model.config import LayerConfig, LossConfig, NetworkConfig
from spikesim.network import Network
from spikesim.train.trainer import ArrayDataset

SHARED = Path(__file__).resolve().parents[2] / "shared"
T, B = 5, 2


def _net(drive: float):
    """3 inputs -> 4 rec LIF -> 5 dense ALIF -> 2 integrator; ``drive`` on every bias."""
    cfg = NetworkConfig(3, [LayerConfig(4, "rec", name="r", beta=0.0, b_j0=0.01),
                            LayerConfig(5, "dense", name="d", beta=1.8, b_j0=0.01),
                            LayerConfig(2, "integrator", name="o")],
                        LossConfig("ce_sum_softmax", 0))
    net = Network(cfg, seed=0, dtype=np.float64)
    for k, v in net.params.items():
        if k.endswith(("b_in", "b_rec")):
            v[...] = drive
        if drive == 0 and (k.endswith("W_in") or k.endswith("W_rec")):
            v[...] = 0
    return net


def _count(net, x):
    return count_network(net, ArrayDataset(x, np.zeros(len(x), np.int64)), batch_size=B)


def test_every_neuron_spiking_every_step_counted_by_hand():
    net = _net(1000.0)
    c = _count(net, np.ones((B, T, 3)))
    r, d, o = c.layers
    assert r.spikes == T * B * 4 and d.spikes == T * B * 5     # every neuron, every step
    assert r.input_events == T * B * 3 and r.input_binary
    assert r.rec_events == (T - 1) * B * 4                       # slot 0: the zero state
    assert d.input_events == T * B * 4 and o.input_events == T * B * 5
    ops = c.layer_ops(net.config)
    assert ops["r"] == {"ac": 30 * 4 + 32 * 4, "mac": 0.0, "mul": 3 * 40, "add": 6 * 40}
    assert ops["d"] == {"ac": 40 * 5, "mac": 0.0, "mul": 6 * 50, "add": 7 * 50}
    assert ops["o"] == {"ac": 50 * 2, "mac": 0.0, "mul": 2 * 20, "add": 2 * 20}
    res = analyse(c, net.config, EnergyTable())
    srnn = res["models"]["srnn"]["per_sample"]
    assert srnn["synaptic_ops"] == (248 + 200 + 100) / B
    assert res["conventions"]["neurobench_activation_sparsity"] == 0.0
    assert res["conventions"]["sinabs_synops_per_sample"] == srnn["synaptic_ops"]
    e = (548 * 0.9 + (120 + 300 + 40) * 3.7 + (240 + 350 + 40) * 0.9) / B
    assert srnn["energy_pj"]["total"] == pytest.approx(e, rel=1e-12)


def test_silent_network_costs_only_its_neuron_updates():
    net = _net(0.0)
    c = _count(net, np.zeros((B, T, 3)))
    assert all(l.spikes == 0 and l.input_events == 0 and l.rec_events == 0 for l in c.layers)
    ops = c.layer_ops(net.config)
    assert ops["r"]["ac"] == ops["d"]["ac"] == ops["o"]["ac"] == 0
    assert ops["d"]["mul"] == 6 * T * B * 5
    res = analyse(c, net.config, EnergyTable())
    assert res["conventions"]["neurobench_activation_sparsity"] == 1.0
    assert res["models"]["srnn"]["per_sample"]["synaptic_ops"] == 0


def test_analog_input_costs_macs():
    net = _net(1000.0)
    c = _count(net, np.full((B, T, 3), 0.5))
    r = c.layers[0]
    assert not r.input_binary and c.layers[1].input_binary
    ops = c.layer_ops(net.config)
    assert ops["r"]["mac"] == 30 * 4 and ops["r"]["ac"] == 32 * 4
    res = analyse(c, net.config, EnergyTable())
    assert res["conventions"]["neurobench_effective_macs_per_sample"] == 120 / B
    assert res["conventions"]["sinabs_synops_per_sample"] == (128 + 200 + 100) / B


def test_dense_equivalents_by_formula():
    cfg = _net(0.0).config
    lstm = network_ops(cfg, "lstm")
    assert lstm["r"] == {"mac": 4 * 4 * (3 + 4), "mul": 12, "add": 36, "act": 20}
    assert lstm["d"] == {"mac": 5 * 4, "mul": 0, "add": 5, "act": 5}
    assert lstm["o"] == {"mac": 2 * 5, "mul": 0, "add": 2, "act": 0}
    assert network_ops(cfg, "rnn")["r"]["mac"] == 4 * 7
    assert network_ops(cfg, "gru", widths=[8, 6])["d"]["mac"] == 6 * 8
    assert parameter_count(cfg, "lstm") == (4 * 4 * 7 + 8 * 4) + (5 * 4 + 5) + (2 * 5 + 2)
    with pytest.raises(ValueError, match="2 widths"):
        network_ops(cfg, "rnn", widths=[3])
    with pytest.raises(ValueError, match="unknown cell"):
        network_ops(cfg, "transformer")


def test_energy_table_defaults_and_overrides(tmp_path):
    t = EnergyTable()
    assert (t.mac, t.add, t.mul) == (4.6, 0.9, 3.7)
    i = EnergyTable.default("int32")
    assert (i.mul, i.add) == (3.1, 0.1)
    f = tmp_path / "e.json"
    f.write_text(json.dumps({"mem": 5.0}))
    t2 = t.override(["add=1.5", str(f)])
    assert t2.add == 1.5 and t2.mem == 5.0 and t2.mac == 4.6
    assert t2.energy_pj({"ac": 2, "mac": 1}) == pytest.approx(2 * 1.5 + 4.6 + 3 * 5.0)
    for bad, msg in ((["joule=1"], "unknown operation"), (["add=-1"], ">= 0"),
                     (["add=x"], "number"), (["nofile"], "KEY=PJ")):
        with pytest.raises(ValueError, match=msg):
            t.override(bad)


def test_energy_command_on_the_official_ecg_checkpoint(tmp_path, capsys):
    pth, data = SHARED / "reference" / "ecg_nmi_0.8589.pth", SHARED / "data"
    if not pth.exists() or not (data / "qtdb").exists():
        pytest.skip("official ECG checkpoint or QTDB data not found")
    out = tmp_path / "e.json"
    assert main(["energy", "ecg", "--checkpoint", str(pth), "--data-dir", str(data), "--limit",
                 "8", "--quiet", "--json", str(out), "--plot", str(tmp_path / "e.png")]) == 0
    text = capsys.readouterr().out
    assert "LSTM" in text and "NeuroBench" in text and "dense / SRNN" in text
    res = json.loads(out.read_text())
    assert res["samples"] == 8 and res["steps"] == 1301
    assert set(res["ratios"]) == {"rnn", "gru", "lstm"}
