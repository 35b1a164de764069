"""The built-in demo task: the delayed cue (``spikesim.data.synthetic``) on a small SRNN."""
from __future__ import annotations

from ..model.config import LayerConfig, LossConfig, NetworkConfig
from ..options import add_device_arg, add_run_args, positive_float, positive_int
from ..train.trainer import ArrayDataset, TrainConfig, training_seconds

N_CLASSES, N_IN, T, READ_FROM = 4, 16, 60, 40


def network_config(hidden: int = 48) -> NetworkConfig:
    return NetworkConfig(
        n_in=N_IN,
        layers=[LayerConfig(hidden, "rec", name="hidden", tau_m=(20.0, 5.0), tau_adp=(200.0, 25.0)),
                LayerConfig(N_CLASSES, "integrator", name="out", tau_m=(20.0, 0.0))],
        loss=LossConfig("ce_sum_softmax", start=READ_FROM))


def train_config(epochs: int = 10, seed: int = 0) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=32, lr=5e-3, optimizer="adam",
                       lr_mult={"*.tau_*": 2.0},
                       schedule={"kind": "step", "step_size": 10, "gamma": 0.5},
                       seed=seed)


def datasets(n_train: int = 1024, n_test: int = 512, seed: int = 0):
    from ..data.synthetic import delayed_cue
    kw = dict(n_classes=N_CLASSES, n_in=N_IN, T=T, read_from=READ_FROM)
    tr = delayed_cue(n_train, seed=seed, **kw)
    te = delayed_cue(n_test, seed=seed + 1000, **kw)
    return ArrayDataset(*tr), ArrayDataset(*te)


# ----------------------------------------------------------------------------------------------
# spikesim train demo: the demo as an ordinary training run (sweeps and tests use it)
# ----------------------------------------------------------------------------------------------
def add_train_args(parser, name: str = "demo"):
    add_run_args(parser, "folder for checkpoints and results")
    parser.add_argument("--epochs", type=positive_int, default=10)
    parser.add_argument("--lr", type=positive_float, default=5e-3, help="learning rate")
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--hidden", type=positive_int, default=48, help="recurrent ALIF neurons")
    parser.add_argument("--n-train", type=positive_int, default=1024,
                        help="training sequences (a quarter more are drawn for validation)")
    parser.add_argument("--no-plots", action="store_true", help="(the demo draws none)")
    add_device_arg(parser)


def run_train(args) -> int:
    import json
    import time
    from pathlib import Path

    from ..network import Network
    from ..train.evaluate import evaluate
    from ..train.trainer import Trainer
    out = Path(args.out)
    train, test = datasets(n_train=args.n_train, n_test=256, seed=args.seed)
    n_val = max(1, args.n_train // 4)
    from ..data.synthetic import delayed_cue
    val = ArrayDataset(*delayed_cue(n_val, seed=args.seed + 2000, n_classes=N_CLASSES,
                                    n_in=N_IN, T=T, read_from=READ_FROM))
    cfg = network_config(args.hidden)
    tcfg = train_config(epochs=args.epochs, seed=args.seed)
    tcfg.lr, tcfg.batch_size = args.lr, args.batch_size
    net = Network(cfg, seed=args.seed, backend=args.device)
    trainer = Trainer(net, tcfg, train, val, out_dir=out, progress=not args.quiet,
                      meta={"task": "demo", "seed": args.seed})
    if args.resume:
        trainer.resume()
    t0 = time.time()
    history = trainer.fit()
    res = evaluate(net, test, 256)
    results = {"task": "demo", "test_accuracy": res["accuracy"],
               "best_val_acc": float(trainer.best_val), "epochs": len(history),
               "model_selection": "last epoch", "seed": args.seed, "lr": args.lr,
               "batch_size": args.batch_size, "hidden": args.hidden,
               "train_seconds": training_seconds(history),
               "wall_seconds_this_run": time.time() - t0}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"spikesim train demo: test accuracy {res['accuracy'] * 100:.2f} %, best validation "
          f"{trainer.best_val * 100:.2f} %, {len(history)} epochs")
    return 0
