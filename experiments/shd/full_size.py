"""Memory and time of SHD training at the real data set's size, on a generated file.

The real ``shd_train.h5`` has 8 156 samples. This writes a file in the SHD layout with that many
samples, each a copy of a random sample of a given SHD-layout file (by default the synthetic
stand-in's training file: its spike density, 4 347 spikes per sample on average), then, in this
process: reads it (``spikesim.data.shd.load_events``), bins it (``SHDDataset``), and trains one
full epoch of the SHD network with the official settings through ``spikesim.train.Trainer``.
It prints the time of each stage, the share of the epoch spent building batches, and the
process's peak resident memory (``ru_maxrss``).

    python experiments/shd/full_size.py --data-dir ../shared/data/shd_synth [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from spikesim.data.shd import SHDDataset, find_file, load_events
from spikesim.network import Network
from spikesim.tasks.shd import TimedDataset, network_config, train_config
from spikesim.train.trainer import Trainer

N_REAL = 8156


def write_copy(src, path: Path, n: int, seed: int = 0):
    """An SHD-layout file of ``n`` samples drawn with replacement from ``src`` (SpikeEvents)."""
    import h5py
    pick = np.random.default_rng(seed).integers(0, len(src), n)
    o = src.offsets
    with h5py.File(path, "w") as f:
        t = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(src.times.dtype))
        u = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        for i, k in enumerate(pick):
            t[i] = src.times[o[k]:o[k + 1]]
            u[i] = src.units[o[k]:o[k + 1]]
        f["labels"] = src.labels[pick].astype(np.uint16)
        f["extra/speaker"] = src.speakers[pick].astype(np.uint16)
        f["extra/keys"] = np.array([k.encode() for k in src.keys])
    return int(np.diff(o)[pick].sum())


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="folder with an SHD-layout shd_train.h5")
    p.add_argument("--samples", type=int, default=N_REAL)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    src = load_events(find_file(args.data_dir, "shd_train"))
    rec = {"samples": args.samples, "source": src.path}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shd_train.h5"
        t = time.perf_counter()
        rec["spikes"] = write_copy(src, path, args.samples)
        rec["write_s"] = time.perf_counter() - t
        rec["file_mb"] = path.stat().st_size / 2**20
        del src
        base = peak_mb()
        t = time.perf_counter()
        ev = load_events(path)
        rec["read_s"] = time.perf_counter() - t
        t = time.perf_counter()
        ds = TimedDataset(SHDDataset(ev, "official", np.float32, reuse=True))
        rec["bin_s"] = time.perf_counter() - t
    net = Network(network_config(), seed=0, dtype=np.float32)
    trainer = Trainer(net, train_config(epochs=1), ds, None, progress=False)
    t = time.perf_counter()
    trainer.fit()
    rec["epoch_s"] = time.perf_counter() - t
    rec["batch_build_s"] = ds.seconds
    rec["batch_build_share"] = ds.seconds / rec["epoch_s"]
    rec["samples_per_s"] = args.samples / rec["epoch_s"]
    rec["peak_rss_mb"] = peak_mb()
    rec["peak_rss_before_reading_mb"] = base
    rec["dense_float32_would_be_mb"] = args.samples * 250 * 700 * 4 / 2**20
    for k, v in rec.items():
        print(f"{k:28s} {v:.3f}" if isinstance(v, float) else f"{k:28s} {v}")
    if args.json:
        from spikesim.train import manifest
        Path(args.json).write_text(json.dumps({**rec, "manifest": manifest.collect()},
                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
