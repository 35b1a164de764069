"""Paired comparison of a ``--ema`` run's two models at its last epoch: the trained parameters
(``last.ckpt``'s parameters) against their moving average (stored beside them), on the run's
validation split and on the test set, evaluated exactly as ``spikesim train`` evaluates.

    python experiments/smnist/compare_average.py RUN_DIR --data-dir ../shared/data/mnist

Prints one line per model and writes RUN_DIR/average_vs_trained.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from spikesim.io.checkpoint import load_checkpoint
from spikesim.network import Network
from spikesim.tasks import smnist
from spikesim.train.evaluate import TEST_SEED_OFFSET, VALIDATION_SEED_OFFSET, evaluate


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="folder of a spikesim train smnist|psmnist --ema run")
    p.add_argument("--data-dir", default=None, help="folder with the MNIST files")
    p.add_argument("--train-limit", type=int, default=None,
                   help="the run's --train-limit, where it had one")
    args = p.parse_args(argv)
    ck = load_checkpoint(args.run / "last.ckpt")
    average = (ck.optimizer_state or {}).get("average")
    if average is None:
        print(f"{args.run}: last.ckpt holds no moving average (not an --ema run)", file=sys.stderr)
        return 2
    train_cfg = ck.config["train"]
    seed, init_state = int(ck.seed), train_cfg["init_state"]
    results = json.loads((args.run / "results.json").read_text())
    trained_net, meta = smnist.load_model(args.run / "last.ckpt", dtype=np.float32)
    average_net = Network(trained_net.config,
                          {k: np.asarray(v, np.float32) for k, v in average.items()})
    # the run's data: the same subset, split and encoding as spikesim train made them
    n_images = results["n_train"] + results["n_val"]
    images = smnist.run_images(meta, args.data_dir, args.train_limit, seed,
                               results["n_val"] / n_images)
    n_split = len(images["train"][1]) + len(images["val"][1])
    if n_split != n_images:
        print(f"the run split {n_images} images, these are {n_split}: pass the run's "
              "--train-limit", file=sys.stderr)
        return 2
    val_set = smnist.dataset_from_meta(*images["val"], meta, np.float32)
    test_set = smnist.dataset_from_meta(*images["test"], meta, np.float32)
    out = {"run": str(args.run), "epoch": int(ck.epoch), "decay": train_cfg["average_decay"]}
    for name, net in (("trained", trained_net), ("average", average_net)):
        val = evaluate(net, val_set, 250, init_state, seed=seed + VALIDATION_SEED_OFFSET)
        test = smnist.run_model(net, test_set, 250, init_state, seed=seed + TEST_SEED_OFFSET)
        out[name] = {"val_acc": val["accuracy"], "test_acc": test["accuracy"]}
        print(f"{name:8s} epoch {ck.epoch}: validation {val['accuracy']:.4f}  "
              f"test {test['accuracy']:.4f}")
    (args.run / "average_vs_trained.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
