"""Short recipe probes for S-MNIST/PS-MNIST from scratch: one Trainer run with the settings of
the command line, printing train and validation accuracy per epoch. Two levers the CLI lacks
are applied to the network here: --gain scales every initial W_in and W_rec, --out-int makes
the output layer a non-spiking integrator. Run from anywhere:

    python probe.py NAME --data-dir ../shared/data/mnist [settings]

probes.json beside this file holds the arguments and per-epoch history of each probe run.
"""
import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))   # the repository root

from spikesim.data.encoders import permutation  # noqa: E402
from spikesim.model.presets import smnist_nmi_config  # noqa: E402
from spikesim.network import Network  # noqa: E402
from spikesim.tasks import smnist  # noqa: E402
from spikesim.train import trainer  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("name")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--out", default="probes")
    p.add_argument("--task", default="smnist", choices=("smnist", "psmnist"))
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--tbptt", type=int, default=100, help="0: full BPTT")
    p.add_argument("--offset", type=int, default=1)
    p.add_argument("--analog", action="store_true")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--loss", default="ce_sum_spike")
    p.add_argument("--wrec", default="zeros")
    p.add_argument("--opt", default="adamax")
    p.add_argument("--clip", type=float, default=None)
    p.add_argument("--sched", default="constant", choices=("constant", "linear200", "lin"))
    p.add_argument("--limit", type=int, default=5000)
    p.add_argument("--init", default="random-nmi-smnist")
    p.add_argument("--b0", type=float, default=0.01)
    p.add_argument("--taumult", type=float, default=1.0)
    p.add_argument("--surr", default="multi_gaussian")
    p.add_argument("--hidden", default="64,256,256")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tau-adp", type=float, default=200.0)
    p.add_argument("--gain", type=float, default=1.0)
    p.add_argument("--out-int", action="store_true")
    a = p.parse_args()
    out = Path(a.out) / a.name
    out.mkdir(parents=True, exist_ok=True)
    (out / "args.json").write_text(json.dumps(vars(a)))
    perm = permutation(1234) if a.task == "psmnist" else None
    meta = {"window": a.k, "stride": 1, "scale": "analog" if a.analog else "binary",
            "pixel_threshold": 0.1, "perm": perm.tolist() if perm is not None else None,
            "encoding": "window"}
    images, labels = smnist._mnist(a.data_dir, "train", a.limit, a.seed)
    (tri, trl), (vai, val) = smnist.split_train_val(images, labels, 0.1, a.seed)
    train_set = smnist.dataset_from_meta(tri, trl, meta)
    val_set = smnist.dataset_from_meta(vai, val, meta)
    cfg = smnist_nmi_config(k=a.k, b_j0=a.b0, surrogate=a.surr, w_rec_init=a.wrec,
                            hidden=tuple(int(v) for v in a.hidden.split(",")),
                            tau_adp=(a.tau_adp, a.tau_adp / 8), readout=a.loss)
    if a.out_int:
        cfg.layers[-1] = dataclasses.replace(cfg.layers[-1], kind="integrator")
    net = Network(cfg, seed=a.seed, dtype=np.float32)
    for k in list(net.params):
        if k.endswith(".W_in") or k.endswith(".W_rec"):
            net.params[k] *= a.gain
    sched = {"constant": None, "linear200": {"kind": "linear", "total": 200},
             "lin": {"kind": "linear", "total": a.epochs}}[a.sched]
    tc = trainer.TrainConfig(
        epochs=a.epochs, batch_size=a.batch, lr=a.lr, optimizer=a.opt,
        lr_mult={"*.tau_adp": 3.0 * a.taumult, "*.tau_m": 2.0 * a.taumult}, schedule=sched,
        tbptt=a.tbptt or None, tbptt_offset=a.offset if a.tbptt else 0, seed=a.seed,
        init_state=a.init, clip_norm=a.clip, eval_batch_size=250)
    run = trainer.Trainer(net, tc, train_set, val_set, out_dir=out, progress=False, meta=meta)
    run.resume()

    def report(rec):
        rates = " ".join(f"{v:.4f}" for v in (rec.get("firing_rates") or []) if v is not None)
        print(f"{a.name} ep {rec['epoch']} loss {rec['train_loss']:.3f} "
              f"tr {rec['train_acc']:.3f} val {rec['val_acc']:.3f} ({rec['seconds']:.0f}s) "
              f"fr {rates}", flush=True)

    trainer.EPOCH_HOOKS.append(report)
    run.fit()


if __name__ == "__main__":
    main()
