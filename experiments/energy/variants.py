"""The energy ratios of the records in experiments/energy/runs under several sets of
assumptions, from the operations each record counted (no rerun):

- A: float32 for every operation, both networks (the default of ``spikesim energy``);
- B: the spiking network in int32 (AC 0.1 pJ, mul 3.1 pJ), the dense ones in float32;
- C: as A, plus 5 pJ per synaptic operation for reading its weight from an 8 KB SRAM;
- ops: the ratio of synaptic operations (dense MACs / spiking ACs + MACs), no energy model.

    python experiments/energy/variants.py experiments/energy/runs/*.json [--markdown]
"""
from __future__ import annotations

import argparse
import json
import sys

from spikesim.energy.costs import EnergyTable

VARIANTS = {
    "A float32": (EnergyTable(), EnergyTable()),
    "B int32 SRNN": (EnergyTable.default("int32"), EnergyTable()),
    "C float32 + SRAM": (EnergyTable(mem=5.0), EnergyTable(mem=5.0)),
}


def energy(record, model, table) -> float:
    layers = record["models"][model]["per_sample"]["layers"]
    return sum(table.energy_pj(ops) for ops in layers.values())


def ratios(record) -> dict:
    out = {}
    for name, (t_srnn, t_dense) in VARIANTS.items():
        e = energy(record, "srnn", t_srnn)
        out[name] = {c: energy(record, c, t_dense) / e for c in ("rnn", "gru", "lstm")}
    out["ops"] = {c: record["ratios"][c]["synaptic_ops"] for c in ("rnn", "gru", "lstm")}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("records", nargs="+")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    cols = list(VARIANTS) + ["ops"]
    if args.markdown:
        print("| record | accuracy | SRNN energy/sample | "
              + " | ".join(f"{c}: RNN / GRU / LSTM" for c in cols) + " |")
        print("|---" * (3 + len(cols)) + "|")
    for path in args.records:
        rec = json.load(open(path))
        r = ratios(rec)
        name = path.rsplit("/", 1)[-1].removesuffix(".json")
        e = energy(rec, "srnn", EnergyTable()) / 1e3
        cells = [" / ".join(f"{r[c][m]:.1f}" for m in ("rnn", "gru", "lstm")) for c in cols]
        if args.markdown:
            print(f"| {name} | {rec['accuracy'] * 100:.2f} % | {e:.3g} nJ | "
                  + " | ".join(cells) + " |")
        else:
            print(f"{name:32s} acc {rec['accuracy'] * 100:6.2f} %  SRNN {e:9.3g} nJ  "
                  + "  ".join(f"{c}: {x}" for c, x in zip(cols, cells)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
