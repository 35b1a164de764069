"""Energies, ratios and the conventions of other tools, from counted operations; the table,
JSON and plot of ``spikesim energy``.

Conventions reported beside spikesim's own counts, so that numbers can be set beside those of
other tools:

- sinabs ``SynOps``: synaptic operations caused by spikes, each input spike times its fan-out
  (recurrent spikes included); analog inputs are not spikes and are left out.
- NeuroBench: effective ACs (synaptic operations with a non-zero binary input), effective MACs
  (with a non-zero non-binary input), and activation sparsity (the fraction of zero outputs of
  the spiking neurons over all neuron-steps). A dense network's effective MACs are all its
  synaptic operations, its activation sparsity 0.
"""
from __future__ import annotations

from ..options import positive_int
from ..train import manifest
from .costs import EnergyTable
from .counts import NetworkCounts
from .dense import CELLS, network_ops, parameter_count

OPS = ("ac", "mac", "mul", "add", "act")


def _scale(ops: dict, f: float) -> dict:
    return {k: ops.get(k, 0.0) * f for k in OPS}


def _sum(dicts) -> dict:
    out = dict.fromkeys(OPS, 0.0)
    for d in dicts:
        for k in OPS:
            out[k] += d.get(k, 0.0)
    return out


def analyse(counts: NetworkCounts, cfg, table: EnergyTable, widths=None,
            srnn_table: EnergyTable | None = None) -> dict:
    """Per layer and in total, per sample and per step: operations and energy (pJ) of the
    spiking network (under ``srnn_table``, default ``table``) and of each dense equivalent
    (under ``table``), their ratios, and the conventions above."""
    srnn_table = srnn_table or table
    S, T = counts.samples, counts.steps
    srnn = {name: _scale(ops, 1.0 / S) for name, ops in counts.layer_ops(cfg).items()}
    models = {"srnn": srnn}
    for cell in CELLS:
        models[cell] = {name: _scale(ops, T) for name, ops in
                        network_ops(cfg, cell, widths).items()}
    out = {"samples": S, "steps": T, "accuracy": counts.accuracy,
           "energy_table_pj": table.to_dict(), "srnn_energy_table_pj": srnn_table.to_dict(),
           "dense_hidden": list(widths or []),
           "models": {}}
    for m, layers in models.items():
        total = _sum(layers.values())
        t = srnn_table if m == "srnn" else table
        energy = {name: t.energy_pj(ops) for name, ops in layers.items()}
        out["models"][m] = {
            "per_sample": {"layers": layers, "total": total,
                           "synaptic_ops": total["ac"] + total["mac"],
                           "energy_pj": {"layers": energy, "total": sum(energy.values())}},
            "per_step": {"total": _scale(total, 1.0 / T),
                         "energy_pj": sum(energy.values()) / T},
            "parameters": (None if m == "srnn" else parameter_count(cfg, m, widths)),
        }
    e_srnn = out["models"]["srnn"]["per_sample"]["energy_pj"]["total"]
    syn_srnn = out["models"]["srnn"]["per_sample"]["synaptic_ops"]
    out["ratios"] = {cell: {
        "energy": out["models"][cell]["per_sample"]["energy_pj"]["total"] / max(e_srnn, 1e-300),
        "synaptic_ops": out["models"][cell]["per_sample"]["synaptic_ops"] / max(syn_srnn, 1e-300),
    } for cell in CELLS}
    spiking = [l for l in counts.layers if l.neuron != "integrator"]
    neuron_steps = sum(counts.neuron_steps(l) for l in spiking)
    synops = sum((l.input_events * l.size if l.input_binary else 0.0) + l.rec_events * l.size
                 for l in counts.layers) / S
    out["conventions"] = {
        "sinabs_synops_per_sample": synops,
        "neurobench_effective_acs_per_sample": srnn_total(out)["ac"],
        "neurobench_effective_macs_per_sample": srnn_total(out)["mac"],
        "neurobench_activation_sparsity": (1.0 - sum(l.spikes for l in spiking) / neuron_steps
                                           if neuron_steps else None),
        "dense_effective_macs_per_sample": {c: out["models"][c]["per_sample"]["total"]["mac"]
                                            for c in CELLS},
    }
    out["firing_rates"] = counts.firing_rates()
    out["input_binary"] = {l.name: l.input_binary for l in counts.layers}
    return out


def srnn_total(res: dict) -> dict:
    return res["models"]["srnn"]["per_sample"]["total"]


def _e(pj: float) -> str:
    for unit, f in (("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)):
        if pj >= f:
            return f"{pj / f:.3g} {unit}"
    return f"{pj:.3g} pJ"


def _n(x: float) -> str:
    return f"{x:.3g}"


def format_table(res: dict) -> str:
    """Per layer and model: synaptic operations and energy per sample; totals per sample and
    per step; ratios; the conventions."""
    names = list(res["models"]["srnn"]["per_sample"]["layers"])
    def tab(t):
        return (", ".join(f"{k} {v} pJ" for k, v in t.items() if k != "precision")
                + f" ({t['precision']})")
    lines = [f"{res['samples']} samples x {res['steps']} steps; energy table "
             + tab(res["energy_table_pj"])
             + ("" if res["srnn_energy_table_pj"] == res["energy_table_pj"]
                else f"; the SRNN's: {tab(res['srnn_energy_table_pj'])}"),
             "", "per sample         " + "".join(f"{m.upper():>24s}" for m in res["models"])]
    for name in names:
        cells = []
        for m in res["models"].values():
            ops = m["per_sample"]["layers"][name]
            e = m["per_sample"]["energy_pj"]["layers"][name]
            cells.append(f"{_n(ops['ac'] + ops['mac']):>9s} / {_e(e):>10s}")
        lines.append(f"  {name:<16s}" + "".join(f"{c:>24s}" for c in cells))
    tot = [f"{_n(m['per_sample']['synaptic_ops']):>9s} / "
           f"{_e(m['per_sample']['energy_pj']['total']):>10s}" for m in res["models"].values()]
    lines.append(f"  {'total':<16s}" + "".join(f"{c:>24s}" for c in tot))
    step = [f"{_e(m['per_step']['energy_pj']):>24s}" for m in res["models"].values()]
    lines.append(f"  {'energy per step':<16s}" + "".join(step))
    lines.append("  (synaptic operations: ACs + MACs / energy: synapses, neuron updates and "
                 "activations)")
    s = srnn_total(res)
    lines.append(f"SRNN per sample: {_n(s['ac'])} AC, {_n(s['mac'])} MAC, {_n(s['mul'])} mul, "
                 f"{_n(s['add'])} add; firing rates " + ", ".join(
                     f"{k} {v:.4f}" for k, v in res["firing_rates"].items()))
    lines.append("dense / SRNN: " + "; ".join(
        f"{c.upper()} energy {r['energy']:.1f}x, synaptic ops {r['synaptic_ops']:.1f}x"
        for c, r in res["ratios"].items()))
    c = res["conventions"]
    sp = c["neurobench_activation_sparsity"]
    lines.append(f"sinabs SynOps/sample {_n(c['sinabs_synops_per_sample'])}; NeuroBench "
                 f"effective ACs {_n(c['neurobench_effective_acs_per_sample'])}, effective MACs "
                 f"{_n(c['neurobench_effective_macs_per_sample'])}, activation sparsity "
                 + ("-" if sp is None else f"{sp:.4f}"))
    return "\n".join(lines)


def energy_figure(res: dict, path, title: str = ""):
    """Stacked bars per layer: energy per sample of the SRNN and each dense equivalent, log
    scale."""
    from .. import plots
    if not plots.have_matplotlib():
        return None
    import numpy as np
    models = list(res["models"])
    names = list(res["models"]["srnn"]["per_sample"]["layers"])
    fig, ax = plots._figure(1, 1, figsize=(7, 4.5))
    a = ax[0, 0]
    bottom = np.zeros(len(models))
    for name in names:
        vals = np.array([res["models"][m]["per_sample"]["energy_pj"]["layers"][name]
                         for m in models]) / 1e3
        a.bar([m.upper() for m in models], vals, bottom=bottom, label=name)
        bottom += vals
    a.set_yscale("log")
    a.set_ylabel("energy per sample (nJ)")
    a.set_title(title or "energy per sample")
    a.legend(fontsize=8)
    return plots._save(fig, path)


def add_args(parser):
    parser.add_argument("--precision", choices=("float32", "int32"), default="float32",
                        help="energy table: 45 nm float32 (default) or int32 operations")
    parser.add_argument("--srnn-precision", choices=("float32", "int32"), default=None,
                        help="energy table of the spiking network alone (default: "
                             "--precision), e.g. int32 accumulates against float32 dense MACs")
    parser.add_argument("--energy", nargs="*", default=None, metavar="KEY=PJ|FILE.json",
                        help="override pJ per operation: mac, mul, add, act, mem (weight read "
                             "per synaptic operation; default 0)")
    parser.add_argument("--dense-hidden", default=None,
                        help="widths of the dense equivalents' hidden layers (default: the "
                             "spiking network's), e.g. 256,256")
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="count on the first N samples")
    parser.add_argument("--json", default=None, help="write everything as JSON here")
    parser.add_argument("--plot", default=None, help="write the bar chart (PNG) here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(net, dataset, args, title: str, init_state: str = "zeros", batch_size: int = 64,
        info: dict | None = None) -> int:
    """Count ``net`` on ``dataset`` and report (the body of ``spikesim energy TASK``)."""
    from .counts import count_network
    table = EnergyTable.default(args.precision).override(args.energy)
    srnn_table = (EnergyTable.default(args.srnn_precision).override(args.energy)
                  if args.srnn_precision else table)
    widths = ([int(w) for w in str(args.dense_hidden).split(",")] if args.dense_hidden
              else None)
    if args.limit is not None:
        if args.limit < 1:
            raise ValueError(f"--limit must be a positive number of samples, got {args.limit}")
        dataset = _Head(dataset, args.limit)
    counts = count_network(net, dataset, batch_size, init_state, progress=not args.quiet)
    res = analyse(counts, net.config, table, widths, srnn_table)
    res["info"] = dict(info or {})
    res["manifest"] = manifest.collect()
    print(f"spikesim energy {title}: accuracy {counts.accuracy * 100:.2f} %")
    print(format_table(res))
    if args.json:
        manifest.write_result(args.json, res, getattr(args, "seed", None))
    if args.plot:
        energy_figure(res, args.plot, title)
    return 0


class _Head:
    def __init__(self, ds, n):
        self.ds, self.n = ds, min(n, len(ds))

    def __len__(self):
        return self.n

    def get(self, idx):
        return self.ds.get(idx)
