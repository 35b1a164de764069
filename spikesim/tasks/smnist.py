"""Sequential MNIST (S-MNIST) and permuted sequential MNIST (PS-MNIST), docs/model.md section 5.

One module serves both CLI task names ``smnist`` and ``psmnist`` (``args.task`` says which).

- :func:`nmi_config` (``spikesim.model.presets.smnist_nmi_config``): the NMI network, k -> 64
  rec ALIF (r1) -> 256 rec ALIF (r2) -> 256 dense ALIF (d1) -> 10 dense ALIF (o), loss
  ``ce_sum_spike`` ("adp-spike"), later-script init.
- :func:`icons_config` (``spikesim.model.presets.smnist_icons_config``): the ICONS network,
  80 RBF fields -> 256 rec ALIF -> 128 rec ALIF -> 10. Its "adp-mem" readout is
  ``ce_sum_softmax`` over the membrane of a final *dense ALIF* layer (as the ICONS code: the
  output neurons are adaptive spiking neurons whose membrane, reset by their own spikes, is
  read through a softmax each step); Gaussian surrogate, b_j0 = 0.1.
- :class:`SMNISTDataset`: images encoded per batch (sliding window or RBF), optionally permuted.
- :func:`from_official`: the whole-model ``.pth`` files of the official code.
- ``spikesim train|eval smnist|psmnist``.

Readings of the official code:

- 2020 checkpoint (``smnist_nmi_98.21.pth``): window 8, stride 1, pixels /255 (analog), output
  spikes summed over all steps t >= 0; its random state is u, s ~ uniform[0,1) (unscaled) in
  every layer and the output spike sum also starts at uniform[0,1) values (initial-state
  preset "random-nmi2020"; the older name "official2020" is accepted).
- later script (training here, PS-MNIST): window 4 binarised at > 0.1, sum over t > 0, random
  state s = u ~ uniform[0,1) * b_j0 (the same values) in the hidden layers, u alone in the
  output layer, zero sum (preset "random-nmi-smnist"; the name "official" means it too), and
  truncated BPTT with updates after the steps 100, 200, ..., 700 (from 0) and at the end.

The initial-state presets are those of ``spikesim.model.state.INITIAL_STATES``;
:func:`preset_name` maps the ``--init-state`` choices onto them.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..data.augment import random_shift
from ..data.encoders import apply_permutation, permutation, rbf_encode, sliding_window
from ..data.mnist import FASHION_MNIST_DIR
from ..model.presets import SMNIST_N_CLASSES as N_CLASSES  # noqa: F401  (the task's names)
from ..model.presets import smnist_icons_config as icons_config  # noqa: F401
from ..model.presets import smnist_nmi_config as nmi_config
from ..model.readout import running_sum
from ..model.state import INITIAL_STATES
from ..network import Network
from ..options import (
    add_device_arg,
    add_dtype_arg,
    add_run_args,
    fraction,
    int_between,
    mean_std,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
)
from ..train import manifest
from ..train.evaluate import TEST_SEED_OFFSET, evaluate
from ..train.trainer import TrainConfig, training_seconds

N_PIXELS = 784
DEFAULT_PERM_SEED = 1234

#: older names of the initial-state presets (results and commands before the registry)
STATE_ALIASES = {"official": "random-nmi-smnist", "official2020": "random-nmi2020"}
#: ``--init-state`` choices: the presets that apply here, "random" (the official state of the
#: checkpoint's source) and the older names
INIT_STATE_CHOICES = ("zeros", "random", "random-nmi-smnist", "random-nmi", "random-nmi2020",
                      *STATE_ALIASES)


def preset_name(choice: str, source: str = "ckpt") -> str:
    """The initial-state preset of an ``--init-state`` choice (or an older name): "random" is
    the official random state of the checkpoint's source, random-nmi2020 for an official
    ``.pth`` (``source="pth"``: the 2020 notebook's), random-nmi-smnist otherwise (the later
    script's, which trains here)."""
    if choice == "random":
        return "random-nmi2020" if source == "pth" else "random-nmi-smnist"
    name = STATE_ALIASES.get(choice, choice)
    if name not in INITIAL_STATES:
        raise ValueError(f"unknown initial state {choice!r}; choose one of "
                         f"{', '.join(INIT_STATE_CHOICES)}")
    return name


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
class SMNISTDataset:
    """MNIST images encoded per batch on ``get``: (B, 784, k) windows (or RBF fields) in
    ``dtype``, which should be the network's (a float64 network then sees float64 inputs).

    ``perm`` (784 ints) reorders the pixels first (PS-MNIST). ``encoding``: "window" (sliding
    window of ``k`` pixels, stride ``stride``, ``scale`` "analog" (/255) or "binary" (pixels/255
    > ``pixel_threshold``)) or "rbf" (``k`` Gaussian fields per pixel).

    ``shift`` > 0 makes a training set that augments (``augments``): ``get(idx, rng)`` moves
    each image by up to ``shift`` pixels in each direction (:func:`random_shift`, drawn with
    ``rng``) before the permutation and the encoding. Without ``rng`` it never shifts.
    """

    def __init__(self, images, labels, k: int = 4, stride: int = 1, scale: str = "binary",
                 pixel_threshold: float = 0.1, perm=None, encoding: str = "window",
                 dtype=np.float32, shift: int = 0):
        images = np.asarray(images)
        self.images = images.reshape(len(images), -1)
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        if encoding not in ("window", "rbf"):
            raise ValueError(f"unknown encoding {encoding!r}; choose 'window' or 'rbf'")
        self.k, self.stride, self.scale = int(k), int(stride), scale
        self.pixel_threshold = pixel_threshold
        self.encoding = encoding
        self.dtype = np.dtype(dtype)
        self.perm = None if perm is None else np.asarray(perm, dtype=np.int64)
        if self.perm is not None:
            apply_permutation(self.images[:1], self.perm)       # validates
        random_shift(self.images[:1], shift, np.random.default_rng(0))   # validates
        self.shift = int(shift)

    @property
    def augments(self) -> bool:
        """Whether ``get`` takes a generator for random shifts (the Trainer then passes one
        drawn from the seed, the epoch and the batch, so that a resumed run is exact)."""
        return self.shift > 0

    def __len__(self):
        return len(self.images)

    def encode(self, images) -> np.ndarray:
        if self.perm is not None:
            images = apply_permutation(images, self.perm)
        if self.encoding == "rbf":
            return rbf_encode(images, self.k, dtype=self.dtype)
        return sliding_window(images, self.k, self.stride, scale=self.scale,
                              threshold=self.pixel_threshold, time_major=False, dtype=self.dtype)

    def get(self, idx, rng: np.random.Generator | None = None):
        idx = np.asarray(idx)
        images = self.images[idx]
        if rng is not None:
            images = random_shift(images, self.shift, rng)
        return self.encode(images), self.labels[idx]


def split_train_val(images, labels, val_fraction: float = 0.1, seed: int = 0):
    """A seeded, class-stratified split of the training images into (train, val)."""
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n = int(round(len(idx) * val_fraction))
        val.extend(rng.choice(idx, n, replace=False).tolist())
    val = np.sort(np.array(val, dtype=np.int64))
    mask = np.ones(len(labels), bool)
    mask[val] = False
    tr = np.flatnonzero(mask)
    return (images[tr], labels[tr]), (images[val], labels[val])


# ----------------------------------------------------------------------------------------------
# Official checkpoints
# ----------------------------------------------------------------------------------------------
_OFFICIAL_MAP = {"i2h": ("r1", "in"), "h2h": ("r1", "rec"), "h2d": ("r2", "in"),
                 "d2d": ("r2", "rec"), "dense1": ("d1", "in"), "d2o": ("o", "in")}


def from_official(path, dtype=np.float64, b_j0: float | None = None):
    """Load ``smnist_nmi_98.21.pth`` / ``psmnist_nmi_94.73.pth`` (whole pickled models).

    Returns (Network, meta): the window size k comes from ``i2h.weight``'s shape; b_j0 from the
    file's attribute if present, else 0.01; output spikes summed over t >= 0. ``meta`` holds the
    encoding the checkpoint needs (window k, stride, analog /255) and the file's attributes.
    """
    from ..io.pth import attributes, load_pth, state_dict
    path = Path(path)
    obj = load_pth(path)
    sd = state_dict(obj)
    try:
        attrs = attributes(obj)
    except Exception:                       # noqa: BLE001 - attributes are informative only
        attrs = {}
    need = [f"{m}.{w}" for m in _OFFICIAL_MAP for w in ("weight", "bias")]
    need += [f"tau_{a}_{l}" for a in ("adp", "m") for l in ("r1", "r2", "d1", "o")]
    missing = [n for n in need if n not in sd]
    if missing:
        raise ValueError(f"{path}: not an official (P)S-MNIST model, missing {missing}")
    k = int(sd["i2h.weight"].shape[1])
    if b_j0 is None:
        b_j0 = float(attrs.get("b_j0", 0.01))
    stride = int(attrs.get("stride", 1))
    h = (sd["i2h.weight"].shape[0], sd["h2d.weight"].shape[0], sd["dense1.weight"].shape[0])
    cfg = nmi_config(k=k, b_j0=b_j0, hidden=h, w_rec_init="orthogonal", loss_start=0)
    params = {}
    for mod, (layer, kind) in _OFFICIAL_MAP.items():
        params[f"{layer}.W_{kind}"] = np.asarray(sd[f"{mod}.weight"], dtype=np.float64)
        params[f"{layer}.b_{kind}"] = np.asarray(sd[f"{mod}.bias"], dtype=np.float64)
    for layer in ("r1", "r2", "d1", "o"):
        params[f"{layer}.tau_m"] = np.asarray(sd[f"tau_m_{layer}"], dtype=np.float64)
        params[f"{layer}.tau_adp"] = np.asarray(sd[f"tau_adp_{layer}"], dtype=np.float64)
    net = Network(cfg, params=params, dtype=dtype)
    meta = {"source": str(path), "window": k, "stride": stride, "scale": "analog",
            "pixel_threshold": 0.1, "perm": None, "b_j0": b_j0, "sum_from": 0,
            "attributes": {a: v for a, v in attrs.items()
                           if isinstance(v, (int, float, str, bool))}}
    return net, meta


def load_model(path, dtype=np.float64):
    """A spikesim checkpoint (``.ckpt``) or an official ``.pth``: returns (Network, meta)."""
    from .checkpoints import load_model_file
    net, meta = load_model_file(path, dtype, from_official)
    meta.setdefault("window", net.config.n_in)
    return net, meta


def dataset_from_meta(images, labels, meta, dtype=np.float32, shift: int = 0):
    """The dataset a checkpoint's ``meta`` describes (older checkpoints store the pixel
    threshold as "threshold"), encoding into ``dtype`` (the network's); ``shift``: see
    :class:`SMNISTDataset` (training sets only). A model trained on the first N steps
    (``meta["steps"]``) sees them only: the dataset is then a :class:`CropSteps` view."""
    perm = meta.get("perm")
    ds = SMNISTDataset(images, labels, k=meta.get("window", 4), stride=meta.get("stride", 1),
                       scale=meta.get("scale", "binary"),
                       pixel_threshold=meta.get("pixel_threshold", meta.get("threshold", 0.1)),
                       perm=None if perm is None else np.asarray(perm, dtype=np.int64),
                       encoding=meta.get("encoding", "window"), dtype=dtype, shift=shift)
    return CropSteps(ds, int(meta["steps"])) if meta.get("steps") else ds


class CropSteps:
    """A dataset view keeping only the first ``steps`` time steps."""

    def __init__(self, ds, steps: int):
        self.ds, self.steps = ds, steps

    def __len__(self):
        return len(self.ds)

    @property
    def augments(self) -> bool:
        return getattr(self.ds, "augments", False)

    def get(self, idx, rng=None):
        x, y = self.ds.get(idx) if rng is None else self.ds.get(idx, rng)
        return x[:, :self.steps], y


def run_images(meta, data_dir, train_limit=None, seed: int = 0, val_fraction: float = 0.1,
               test_limit=None) -> dict:
    """The images of a training run, as ``spikesim train`` makes them: its training subset
    (``train_limit`` class-stratified images drawn with ``seed``) split into "train" and "val"
    (:func:`split_train_val`), and the first ``test_limit`` "test" images; each an
    (images, labels) pair of ``meta["dataset"]`` (MNIST or Fashion-MNIST)."""
    dataset = meta.get("dataset", "mnist")
    images, labels = load_images(dataset, data_dir, "train", train_limit, seed)
    train, val = split_train_val(images, labels, val_fraction, seed)
    return {"train": train, "val": val,
            "test": load_images(dataset, data_dir, "test", test_limit)}


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------
def run_model(net: Network, dataset, batch_size: int = 100, init_state: str = "zeros",
              seed: int = 0, per_step: bool = False, keep_trace_of: int | None = None,
              progress: bool = False, desc: str = "eval") -> dict:
    """Predictions of ``net`` on every sample, from the initial state ``init_state`` (a preset
    or an older name, :func:`preset_name`), random numbers from ``seed``
    (``spikesim.train.evaluate.evaluate``).

    Returns predictions, summed readouts (logits), labels, loss, accuracy, firing rates (per
    layer, mean over samples, steps and neurons) and, with ``per_step``, the accuracy of the
    argmax of the running readout sum at every step t (T,). ``keep_trace_of``: sample index
    whose spikes are returned (for rasters).
    """
    cfg = net.config
    step_correct, raster = None, None

    def on_batch(b):
        nonlocal step_correct, raster
        if per_step:
            out = b.trace.output_spikes if cfg.loss.readout == "spike" else b.trace.output_mem
            run = running_sum(out, cfg.loss.readout, b.carry)
            c = (run.argmax(-1) == b.labels[None, :]).sum(1)
            step_correct = c if step_correct is None else step_correct + c
        if keep_trace_of is not None and b.start <= keep_trace_of < b.start + len(b.idx):
            j = keep_trace_of - b.start
            raster = {l.name: tr.s[:, j].copy() for l, tr in zip(cfg.layers, b.trace.layers)
                      if tr.s is not None}
            raster["_input"] = b.x[j]

    r = evaluate(net, dataset, batch_size, preset_name(init_state), seed, collect=True,
                 on_batch=on_batch, progress=progress, desc=desc)
    n = r["n_samples"]
    out = {"accuracy": r["accuracy"], "correct": r["correct"], "n_samples": n,
           "loss": r["loss"], "predictions": r["predictions"], "logits": r["logits"],
           "labels": r["labels"],
           "firing_rates": {l.name: v for l, v in zip(cfg.layers, r["firing_rates"])}}
    if per_step:
        out["per_step_accuracy"] = step_correct / n
    if raster is not None:
        out["raster"] = raster
    return out


def _mnist(data_dir, split, limit=None, seed=0):
    from ..data.mnist import load_mnist
    if limit is None:
        return load_mnist(data_dir, split)
    if split == "test":        # the first ``limit`` test images, in file order
        im, lab = load_mnist(data_dir, split)
        return im[:limit], lab[:limit]
    return load_mnist(data_dir, split, limit=limit, shuffle_seed=seed)


def add_eval_args(parser, name="smnist"):
    parser.add_argument("--checkpoint", required=True,
                        help="spikesim .ckpt from 'spikesim train' or an official .pth file")
    parser.add_argument("--data-dir", default=None,
                        help="folder with the MNIST test files (of Fashion-MNIST for a checkpoint "
                             f"trained with --dataset fashion: default {FASHION_MNIST_DIR})")
    parser.add_argument("--json", default=None, help="write the results as JSON here")
    parser.add_argument("--save-predictions", default=None, help="write predicted labels (.npy)")
    parser.add_argument("--init-state", default="zeros", choices=INIT_STATE_CHOICES,
                        help="zeros: deterministic; random: the official one of the checkpoint's "
                             "source (random-nmi2020, the 2020 notebook's, for .pth files; "
                             "random-nmi-smnist, the later script's, otherwise); official and "
                             "official2020: other names of random-nmi-smnist and random-nmi2020")
    parser.add_argument("--seeds", type=positive_int, default=1,
                        help="random initial states: how many seeds")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="first seed")
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="first N test images only")
    add_dtype_arg(parser, "float64")
    add_device_arg(parser)
    parser.add_argument("--batch-size", type=positive_int, default=100)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--perm-seed", type=nonnegative_int, default=None,
                        help="PS-MNIST: permutation seed when the checkpoint stores none")


def run_eval(args) -> int:
    t0 = time.time()
    net, meta = load_model(args.checkpoint, dtype=np.dtype(args.dtype))
    net.set_backend(getattr(args, "device", "cpu"))
    if getattr(args, "task", "smnist") == "psmnist" and meta.get("perm") is None:
        if args.perm_seed is not None:
            meta["perm"] = permutation(args.perm_seed).tolist()
        else:
            print("warning: the checkpoint stores no permutation (official PS-MNIST: it is lost); "
                  "evaluating on unpermuted images")
    images, labels = load_images(meta.get("dataset", "mnist"), args.data_dir, "test", args.limit)
    ds = dataset_from_meta(images, labels, meta, net.dtype)
    mode = preset_name(args.init_state, "pth" if str(args.checkpoint).endswith(".pth") else "ckpt")
    seeds = ([args.seed] if mode == "zeros"
             else list(range(args.seed, args.seed + max(1, args.seeds))))
    runs = []
    for s in seeds:
        r = run_model(net, ds, args.batch_size, mode, seed=s, progress=not args.quiet,
                      desc=f"seed {s}")
        runs.append(r)
        print(f"{args.task}: seed {s} init {mode}: accuracy {r['accuracy']:.4f} "
              f"({r['correct']}/{r['n_samples']})")
    accs = np.array([r["accuracy"] for r in runs])
    top2 = np.sort(runs[0]["logits"], 1)[:, -2:]
    ties = int((top2[:, 1] == top2[:, 0]).sum())
    result = {"task": args.task, "checkpoint": str(args.checkpoint), "accuracy": float(accs.mean()),
              "accuracy_std": float(accs.std()) if len(accs) > 1 else 0.0,
              "accuracies": accs.tolist(), "seeds": seeds if mode != "zeros" else None,
              "n_samples": int(len(ds)), "init_state": mode, "dtype": args.dtype,
              "window": meta.get("window"), "stride": meta.get("stride", 1),
              "scale": meta.get("scale"), "steps": meta.get("steps") or N_PIXELS,
              "permuted": meta.get("perm") is not None, "sum_from": int(net.config.loss.start),
              "ties_first_run": ties, "firing_rates": runs[0]["firing_rates"],
              "seconds": time.time() - t0}
    print(f"{args.task}: accuracy {result['accuracy']:.4f}"
          + (f" +- {result['accuracy_std']:.4f} over {len(seeds)} seeds" if len(seeds) > 1 else "")
          + f" on {len(ds)} images ({result['seconds']:.1f} s)")
    if args.json:
        manifest.write_result(args.json, result, getattr(args, "seed", None))
    if args.save_predictions:
        Path(args.save_predictions).parent.mkdir(parents=True, exist_ok=True)
        np.save(args.save_predictions, runs[0]["predictions"].astype(np.int64))
    return 0


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
#: What the from-scratch recipe changes in the official settings (see TRAIN_PRESETS)
RECIPE = {"epochs": 180, "batch_size": 32, "lr": 3e-3, "schedule": "linear",
          "readout": "ce_sum_softmax", "tau_adp": (700.0, 25.0)}
#: Training presets of ``spikesim train smnist|psmnist``. "official": the later official
#: script's settings (200 epochs of 60 000 images on a GPU). "recipe": this project's recipe for
#: training from scratch on the 5 000-image subset on a CPU, found by the probes recorded in
#: experiments/smnist/README.md; it differs from "official" in exactly the keys it sets. Every
#: key is also a command-line option that overrides the preset.
TRAIN_PRESETS = {
    "official": {"epochs": 200, "batch_size": 300, "lr": 8e-3, "optimizer": "adamax",
                 "schedule": "linear200", "clip_norm": None, "tbptt": 100, "tbptt_offset": 1,
                 "window": 4, "analog": False, "pixel_threshold": 0.1,
                 "readout": "ce_sum_spike", "w_rec_init": "zeros", "tau_adp": (200.0, 25.0),
                 "augment_shift": 0, "weight_decay": 0.0, "ema": None, "warmup": 0},
}
TRAIN_PRESETS["recipe"] = {**TRAIN_PRESETS["official"], **RECIPE}
#: ``--schedule`` choices: the learning-rate factor per epoch (``spikesim.train.optim``)
SCHEDULES = {"linear200": lambda epochs: {"kind": "linear", "total": 200},
             "linear": lambda epochs: {"kind": "linear", "total": epochs},
             "constant": lambda epochs: None}


def train_config(epochs: int = 200, batch_size: int = 300, tbptt: int | None = 100,
                 seed: int = 0, lr: float = 8e-3, tbptt_offset: int = 1,
                 optimizer: str = "adamax", schedule: str = "linear200",
                 clip_norm: float | None = None, weight_decay: float = 0.0,
                 ema: float | None = None, warmup: int = 0) -> TrainConfig:
    """Training settings; the defaults are the later script's: Adamax lr 8e-3, tau_adp 3x,
    tau_m 2x, linear decay over 200 epochs (``schedule``: a key of :data:`SCHEDULES`),
    truncated BPTT with an update after the steps 100, 200, ..., 700 (counted from 0) and at
    the end (``tbptt_offset=1``: the first chunk has 101 steps), and the script's random
    initial state s = u ~ U[0,1) * b_j0 in the hidden layers (random-nmi-smnist). ``ema``:
    the decay of a moving average of the parameters, validated and tested in their place
    (None: off; ``TrainConfig.average_decay``). ``warmup``: the learning rate rises linearly
    over the first this many epochs, on top of ``schedule`` (0: no warm-up;
    ``spikesim.train.optim.LinearWarmup``)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    spec = SCHEDULES[schedule](epochs)
    if warmup:          # absent without warm-up, so that older runs resume unchanged
        spec = {**(spec or {"kind": "constant"}), "warmup": warmup}
    return TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                       lr_mult={"*.tau_adp": 3.0, "*.tau_m": 2.0},
                       schedule=spec, tbptt=tbptt,
                       tbptt_offset=tbptt_offset if tbptt else 0, seed=seed,
                       init_state="random-nmi-smnist", clip_norm=clip_norm,
                       weight_decay=weight_decay, average_decay=ema)


def preset_settings(args) -> dict:
    """The training settings of a parsed ``train`` command line: its ``--preset``, with every
    option given on the command line in its place."""
    settings = dict(TRAIN_PRESETS[args.preset])
    for k in settings:
        v = getattr(args, k, None)
        if v is not None:
            settings[k] = v
    if getattr(args, "full_bptt", False):
        settings["tbptt"] = None
    if getattr(args, "pixel_threshold", None) is not None:
        settings["analog"] = False          # a threshold given: binarised pixels
    if getattr(args, "no_clip", False):
        settings["clip_norm"] = None
    return settings


def _preset_help(key: str) -> str:
    def text(v):
        return ",".join(f"{x:g}" for x in v) if isinstance(v, tuple) else v
    recipe, official = (text(TRAIN_PRESETS[p][key]) for p in ("recipe", "official"))
    if recipe == official:
        return f"default: {recipe}"
    return f"default: {recipe} (--preset official: {official})"


def add_train_args(parser, name="smnist"):
    parser.add_argument("--data-dir", default=None,
                        help="folder with the MNIST files (Fashion-MNIST with --dataset fashion: "
                             f"default {FASHION_MNIST_DIR})")
    parser.add_argument("--dataset", choices=("mnist", "fashion"), default="mnist",
                        help="digits (MNIST) or Fashion-MNIST, read from the same IDX layout")
    add_run_args(parser)
    parser.add_argument("--preset", choices=tuple(TRAIN_PRESETS), default="recipe",
                        help="recipe: this project's from-scratch recipe for the 5 000-image "
                             "subset on a CPU; official: the official script's settings. Every "
                             "option below overrides the preset")
    parser.add_argument("--epochs", type=positive_int, default=None, help=_preset_help("epochs"))
    parser.add_argument("--train-limit", type=positive_int, default=None,
                        help="use N training images")
    parser.add_argument("--test-limit", type=positive_int, default=None,
                        help="test on the first N test images")
    parser.add_argument("--val-fraction", type=fraction, default=0.1,
                        help="fraction of the training images held out for validation")
    parser.add_argument("--select", choices=("val", "last"), default=None,
                        help="model tested: val = the epoch of best validation accuracy "
                             "(default with a validation split), last = the last epoch")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help=_preset_help("batch_size"))
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--tbptt", type=positive_int, default=None,
                   help="truncated BPTT chunk length in steps; " + _preset_help("tbptt"))
    g.add_argument("--full-bptt", action="store_true", help="backpropagate through all 784 steps")
    parser.add_argument("--tbptt-offset", type=nonnegative_int, default=None,
                        help="steps added to the first truncated-BPTT chunk; 1: updates after "
                             "steps 100, 200, ..., 700 (from 0) and at the end, as the official "
                             "script; " + _preset_help("tbptt_offset"))
    t = parser.add_mutually_exclusive_group()
    t.add_argument("--pixel-threshold", "--threshold", dest="pixel_threshold",
                   type=nonnegative_float, default=None,
                   help="binarise pixels/255 > this; " + _preset_help("pixel_threshold"))
    t.add_argument("--analog", action="store_const", const=True, default=None,
                   help="pixels /255 instead of binarised; " + _preset_help("analog"))
    parser.add_argument("--window", type=positive_int, default=None,
                        help="sliding window size k; " + _preset_help("window"))
    parser.add_argument("--lr", type=positive_float, default=None,
                        help="learning rate; " + _preset_help("lr"))
    parser.add_argument("--optimizer", default=None, choices=["adamax", "adam"],
                        help=_preset_help("optimizer"))
    parser.add_argument("--schedule", default=None, choices=tuple(SCHEDULES),
                        help="learning-rate factor per epoch: linear200 = linear decay to 0 over "
                             "200 epochs (official), linear = to 0 over --epochs, constant; "
                             + _preset_help("schedule"))
    parser.add_argument("--warmup", type=nonnegative_int, default=None, metavar="EPOCHS",
                        help="raise the learning rate linearly over the first EPOCHS epochs "
                             "(1/EPOCHS of it in the first, all of it from epoch EPOCHS on), on "
                             "top of --schedule; 0: no warm-up; " + _preset_help("warmup"))
    c = parser.add_mutually_exclusive_group()
    c.add_argument("--clip-norm", type=positive_float, default=None,
                   help="clip the gradient norm of every update; " + _preset_help("clip_norm"))
    c.add_argument("--no-clip", action="store_true", help="no gradient clipping")
    parser.add_argument("--readout", default=None, choices=("ce_sum_spike", "ce_sum_softmax"),
                        help="loss: ce_sum_spike = cross-entropy of the output spike counts "
                             "(official), ce_sum_softmax = of the summed softmax of the output "
                             "membrane; " + _preset_help("readout"))
    parser.add_argument("--w-rec-init", default=None, choices=("zeros", "orthogonal"),
                        help="recurrent weight initialisation; " + _preset_help("w_rec_init"))
    parser.add_argument("--tau-adp", type=mean_std, default=None, metavar="MEAN,STD",
                        help="initial adaptation time constants ~ N(MEAN, STD) in steps (the "
                             "2020 checkpoint's: 700,25); " + _preset_help("tau_adp"))
    parser.add_argument("--augment-shift", type=int_between(0, 27, "pixels"), default=None,
                        metavar="PIXELS",
                        help="move each training image by a random whole number of pixels, up "
                             "to this many in each direction, every time it is drawn (0: no "
                             "augmentation); " + _preset_help("augment_shift"))
    parser.add_argument("--weight-decay", type=nonnegative_float, default=None,
                        help="decoupled weight decay of the weight matrices (AdamW's: each "
                             "update first scales them by 1 - lr * this); "
                             + _preset_help("weight_decay"))
    parser.add_argument("--ema", type=fraction, default=None, metavar="DECAY",
                        help="validate, select and test an exponential moving average of the "
                             "parameters, updated after every batch with this decay (0.999: "
                             "about the last 1 000 batches); CPU backend only; "
                             + _preset_help("ema"))
    add_dtype_arg(parser, "float32")
    add_device_arg(parser)
    parser.add_argument("--perm-seed", type=nonnegative_int, default=DEFAULT_PERM_SEED,
                        help="PS-MNIST permutation seed (stored in the checkpoint)")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help="use only the first N time steps (tests, quick checks)")
    parser.add_argument("--hidden", default="64,256,256", help="sizes of r1, r2, d1")
    parser.add_argument("--per-step-limit", type=nonnegative_int, default=1000,
                        help="test images used for the per-time-step accuracy curve")
    parser.add_argument("--no-plots", action="store_true", help="draw no plots")


def run_train(args) -> int:
    from ..train.trainer import Trainer
    task = getattr(args, "task", "smnist")
    st = preset_settings(args)
    if args.select == "val" and args.val_fraction == 0:
        raise ValueError("--select val needs a validation split (--val-fraction > 0)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    hidden = tuple(int(v) for v in str(args.hidden).split(","))
    perm = permutation(args.perm_seed) if task == "psmnist" else None
    meta = {"task": task, "dataset": args.dataset, "preset": args.preset,
            "window": st["window"], "stride": 1,
            "scale": "analog" if st["analog"] else "binary",
            "pixel_threshold": st["pixel_threshold"],
            "perm_seed": args.perm_seed if perm is not None else None,
            "perm": perm.tolist() if perm is not None else None, "encoding": "window",
            "steps": args.steps, "sum_from": 1}
    if st["augment_shift"]:         # absent: none (so that older runs resume unchanged)
        meta["augment_shift"] = st["augment_shift"]
    images = run_images(meta, args.data_dir, args.train_limit, args.seed, args.val_fraction,
                        args.test_limit)
    (tri, trl), (vai, val) = images["train"], images["val"]
    dtype = np.dtype(args.dtype)
    train_set = dataset_from_meta(tri, trl, meta, dtype, shift=st["augment_shift"])
    val_set = dataset_from_meta(vai, val, meta, dtype) if len(val) else None
    select = args.select or ("val" if val_set is not None else "last")
    net = Network(nmi_config(k=st["window"], hidden=hidden, w_rec_init=st["w_rec_init"],
                             readout=st["readout"], tau_adp=tuple(st["tau_adp"])),
                  seed=args.seed, dtype=np.dtype(args.dtype), backend=args.device)
    params_before = {k: v.copy() for k, v in net.params.items()}
    cfg = train_config(st["epochs"], st["batch_size"], st["tbptt"], args.seed, st["lr"],
                       st["tbptt_offset"], st["optimizer"], st["schedule"], st["clip_norm"],
                       st["weight_decay"], st["ema"], st["warmup"])
    cfg.eval_batch_size = 250
    trainer = Trainer(net, cfg, train_set, val_set, out_dir=out, progress=not args.quiet, meta=meta)
    if args.resume and trainer.resume():
        print(f"{task}: resumed from {out / 'last.ckpt'} at epoch {trainer.epoch}, "
              f"batch {trainer.batch_index}")
    t0 = time.time()
    history = trainer.fit()
    wall_this_run = time.time() - t0
    train_s = training_seconds(history)
    for h in history:
        if args.quiet:
            print(f"{task}: epoch {h['epoch']} train_loss {h['train_loss']:.4f} "
                  f"train_acc {h['train_acc']:.4f} val_acc {h.get('val_acc', float('nan')):.4f} "
                  f"({h['seconds']:.0f} s)")
    # test: the model chosen on validation accuracy (best.ckpt) or the last epoch's
    if select == "val":
        from ..io.checkpoint import load_checkpoint
        best = load_checkpoint(out / "best.ckpt")
        net = Network(net.config, {k: np.asarray(v) for k, v in best.params.items()},
                      dtype=net.dtype, backend=args.device)
        tested_epoch = int(best.epoch)
    else:
        trainer.use_average()       # with --ema the model of the last epoch is the average
        tested_epoch = trainer.epoch
    test_set = dataset_from_meta(*images["test"], meta, net.dtype)
    t1 = time.time()
    res = run_model(net, test_set, 250, cfg.init_state, seed=args.seed + TEST_SEED_OFFSET)
    test_s = time.time() - t1
    n_ps = min(len(test_set), args.per_step_limit)
    sub = _Subset(test_set, np.arange(n_ps))
    ps = run_model(net, sub, 250, "zeros", per_step=True, keep_trace_of=0)
    result = {"task": task, "accuracy": res["accuracy"], "test_accuracy": res["accuracy"],
              "n_samples": res["n_samples"], "test_init_state": cfg.init_state,
              "model": _SELECT_TEXT[select], "select": select, "tested_epoch": tested_epoch,
              "best_val_acc": float(trainer.best_val) if select == "val" else None,
              "epochs": trainer.epoch, "settings": st,
              "n_train": len(train_set), "n_val": 0 if val_set is None else len(val_set),
              "test_firing_rates": res["firing_rates"], "train_seconds": train_s,
              "wall_seconds_this_run": wall_this_run, "test_seconds": test_s, "history": history,
              "meta": {k: v for k, v in meta.items() if k != "perm"},
              "train_config": cfg.to_dict(), "network": net.config.to_dict(),
              "per_step_accuracy_n": n_ps,
              "per_step_accuracy": [float(a) for a in ps["per_step_accuracy"]]}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    np.save(out / "test_predictions.npy", res["predictions"].astype(np.int64))
    print(f"{task}: test accuracy {res['accuracy']:.4f} ({res['correct']}/{res['n_samples']}) "
          f"with the {_SELECT_TEXT[select]} (epoch {tested_epoch} of {trainer.epoch}), "
          "firing rates "
          + ", ".join(f"{k} {v:.3f}" for k, v in res["firing_rates"].items() if v is not None))
    if not args.no_plots:
        _plots(out, history, params_before, net, ps, tested_epoch, _SELECT_TEXT[select])
    return 0


_SELECT_TEXT = {"val": "best validation accuracy", "last": "last epoch"}


def load_images(dataset: str, data_dir, split: str, limit=None, seed: int = 0):
    """Images and labels of MNIST (:func:`_mnist`) or Fashion-MNIST (``data_dir`` or the
    Debian package's folder): the first ``limit`` test images in file order, or a
    class-stratified subset of ``limit`` training images."""
    if dataset == "mnist":
        return _mnist(data_dir, split, limit, seed)
    from ..data.mnist import load_fashion_mnist
    folder = data_dir or FASHION_MNIST_DIR
    if limit is None or split == "test":
        images, labels = load_fashion_mnist(folder, split)
        return images[:limit], labels[:limit]
    return load_fashion_mnist(folder, split, limit=limit, shuffle_seed=seed)


class _Subset:
    def __init__(self, ds, idx):
        self.ds, self.idx = ds, np.asarray(idx)

    def __len__(self):
        return len(self.idx)

    def get(self, idx):
        return self.ds.get(self.idx[np.asarray(idx)])


def _plots(out: Path, history, params_before, net, ps, epoch: int, selected: str):
    """Learning curves, tau histograms, per-step accuracy and rasters (skipped if the plotting
    module or matplotlib is unavailable)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:           # noqa: BLE001
        print(f"plots skipped: {e}")
        return
    try:
        from .. import plots
    except Exception:                # noqa: BLE001 - another developer's module, may be absent
        plots = None
    for fn, a in (("learning_curves", (history, out / "learning_curves.png", epoch, selected)),
                  ("tau_histograms", (params_before, net.params, out / "tau_histograms.png",
                                      net.config))):
        f = getattr(plots, fn, None) if plots is not None else None
        if f is not None:
            try:
                f(*a)
            except Exception as e:   # noqa: BLE001
                print(f"plot {fn} failed: {e}")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    acc = np.asarray(ps["per_step_accuracy"])
    ax.plot(np.arange(1, len(acc) + 1), acc)
    ax.set_xlabel("time step t")
    ax.set_ylabel("accuracy of the running readout sum")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "per_step_accuracy.png", dpi=100)
    plt.close(fig)
    r = ps.get("raster")
    if r:
        names = [k for k in r if k != "_input"]
        fig, axes = plt.subplots(len(names) + 1, 1, figsize=(8, 2 * (len(names) + 1)), sharex=True)
        axes[0].imshow(np.asarray(r["_input"]).T, aspect="auto", interpolation="nearest",
                       cmap="gray_r")
        axes[0].set_title("input (window)")
        raster_fn = getattr(plots, "raster", None) if plots is not None else None
        for ax, n in zip(axes[1:], names):
            if raster_fn is not None:
                try:
                    raster_fn(ax, r[n], n)
                    continue
                except Exception:    # noqa: BLE001
                    pass
            t, j = np.nonzero(r[n])
            ax.scatter(t, j, s=0.5, c="k")
            ax.set_title(n)
        axes[-1].set_xlabel("time step")
        fig.tight_layout()
        fig.savefig(out / "raster.png", dpi=100)
        plt.close(fig)


# ----------------------------------------------------------------------------------------------
# Operation and energy counts
# ----------------------------------------------------------------------------------------------
def add_energy_args(parser, name="smnist"):
    from ..energy import report
    parser.add_argument("--checkpoint", required=True,
                        help="official .pth (whole pickled model) or a spikesim checkpoint")
    parser.add_argument("--data-dir", default=None,
                        help="folder with the MNIST test IDX files (of Fashion-MNIST for a "
                             "checkpoint trained with --dataset fashion)")
    add_dtype_arg(parser, "float64")
    parser.add_argument("--batch-size", type=positive_int, default=250)
    if name == "psmnist":
        parser.add_argument("--perm-seed", type=nonnegative_int, default=None,
                            help="permutation seed when the checkpoint stores none")
    report.add_args(parser)


def run_energy(args) -> int:
    from ..energy import report
    net, meta = load_model(args.checkpoint, dtype=np.dtype(args.dtype))
    note = None
    if getattr(args, "task", "smnist") == "psmnist" and meta.get("perm") is None:
        if getattr(args, "perm_seed", None) is not None:
            meta["perm"] = permutation(args.perm_seed).tolist()
        else:
            note = ("the checkpoint stores no permutation (official PS-MNIST: it is lost); "
                    "counted on unpermuted images")
            print(f"warning: {note}")
    images, labels = load_images(meta.get("dataset", "mnist"), args.data_dir, "test", args.limit)
    ds = dataset_from_meta(images, labels, meta, net.dtype)
    return report.run(net, ds, args, f"{args.task} ({args.checkpoint})",
                      batch_size=args.batch_size,
                      info={"task": args.task, "checkpoint": str(args.checkpoint),
                            "dtype": args.dtype, "init_state": "zeros", "note": note,
                            "window": meta.get("window"), "scale": meta.get("scale")})
