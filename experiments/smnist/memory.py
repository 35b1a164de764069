"""Peak memory of one 784-step S-MNIST training step (batch 256), full vs truncated BPTT.

Each configuration runs in a fresh subprocess: a tiny warm-up step compiles the kernels, then
tracemalloc (NumPy's allocations are traced) and ru_maxrss are read around one real step.
Usage: python experiments/smnist/memory.py [--batch 256] [--dtype float32]
"""
import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, tracemalloc
import numpy as np
from spikesim.network import Network, initial_state
from spikesim.tasks.smnist import nmi_config, train_config
from spikesim.train.optim import Optimizer
from spikesim.train.trainer import train_step
B, tb, dtype = int(sys.argv[1]), (None if sys.argv[2] == "none" else int(sys.argv[2])), sys.argv[3]
net = Network(nmi_config(k=4), seed=0, dtype=np.dtype(dtype))
tc = train_config()
opt = Optimizer(net.params, tc.lr, tc.optimizer, lr_mult=tc.lr_mult)
rng = np.random.default_rng(0)
def data(b, T):
    return (rng.random((b, T, 4)) > 0.8).astype(np.float32), rng.integers(0, 10, b)
x, y = data(4, 50)
train_step(net, opt, x, y, initial_state(net.config, 4, net.dtype), 20)   # compile
x, y = data(B, 784)
st = initial_state(net.config, B, net.dtype, mode="random", rng=rng)
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
base = tracemalloc.get_traced_memory()[0]
t = time.time()
train_step(net, opt, x, y, st, tb)
sec = time.time() - t
peak = tracemalloc.get_traced_memory()[1] - base
tracemalloc.stop()
rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"batch": B, "tbptt": tb, "dtype": dtype, "tracemalloc_peak_MiB": peak / 2**20,
                  "maxrss_before_MiB": rss0 / 1024, "maxrss_after_MiB": rss1 / 1024,
                  "seconds": sec}))
"""

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    recs = []
    for tb in ("none", "100"):
        out = subprocess.run([sys.executable, "-c", CHILD, str(a.batch), tb, a.dtype],
                             capture_output=True, text=True, check=True).stdout
        recs.append(json.loads(out.strip().splitlines()[-1]))
        print(recs[-1])
    if a.json:
        open(a.json, "w").write(json.dumps(recs, indent=1))
