"""Spiking Heidelberg Digits (SHD) and Spiking Speech Commands (SSC): the HDF5 reader and the
binning of spike events into dense time steps.

File layout (both data sets)::

    spikes/times    variable-length float arrays, seconds, sorted in time (float16 in SHD)
    spikes/units    variable-length int arrays, 0 .. 699
    labels          (N,) int
    extra/speaker   (N,) int (optional here)
    extra/keys      the class names (optional here)

``.h5``, ``.h5.gz`` and ``.h5.zip`` files are read. The spikes stay events in memory
(:class:`SpikeEvents`, about 4 bytes per spike); :class:`SHDDataset` turns them into dense
(batch, steps, channels) arrays one batch at a time: the whole SHD training set as dense
float32 would take 5.7 GB.

Binning (:class:`Binning`; the preset ``"official"`` is the official preprocessing): bin i of
``n_bins`` bins of width ``dt`` holds the spikes with (i - 1) dt < t <= i dt, so bin 0 holds
t <= 0 and spikes after (n_bins - 1) dt are dropped; the edges i dt are compared with the times
in the file's own precision (the official code compares float16 times with i * dt, which NumPy
rounds to float16). Channel ``700 - unit``, unit 0 dropped. Binary per bin, or counts.
"""
from __future__ import annotations

import gzip
import shutil
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from spikesim.errors import DataError

__all__ = ["Binning", "BINNINGS", "Augment", "SpikeEvents", "load_events", "find_file",
           "SHDDataset", "bin_events", "N_UNITS"]

N_UNITS = 700
_CHUNK = 1 << 22        # events binned at a time
SUFFIXES = (".h5", ".h5.gz", ".h5.zip")


@dataclass(frozen=True)
class Binning:
    """How spike events become dense time steps.

    dt: bin width in seconds; n_bins: number of bins (the official 250 x 4 ms covers 0-1 s);
    counts: spikes per bin instead of 0/1; channels: "flip" (channel = n_units - unit, unit 0
    dropped: the official code) or "unit" (channel = unit); pool: adjacent channels summed (or
    OR-ed) in groups of ``pool``."""
    dt: float = 4e-3
    n_bins: int = 250
    counts: bool = False
    channels: str = "flip"
    pool: int = 1
    n_units: int = N_UNITS

    def __post_init__(self):
        if not (self.dt > 0 and np.isfinite(self.dt)):
            raise ValueError(f"bin width dt must be a positive number of seconds, got {self.dt}")
        if int(self.n_bins) != self.n_bins or self.n_bins < 1:
            raise ValueError(f"n_bins must be a positive integer, got {self.n_bins}")
        if self.channels not in ("flip", "unit"):
            raise ValueError(f"channels must be 'flip' or 'unit', got {self.channels!r}")
        if int(self.pool) != self.pool or self.pool < 1:
            raise ValueError(f"pool must be a positive integer, got {self.pool}")

    @property
    def n_channels(self) -> int:
        return -(-self.n_units // self.pool)

    def to_dict(self) -> dict:
        return asdict(self)

    def edges(self, dtype) -> np.ndarray:
        """The upper bin edges i dt, i = 0 .. n_bins - 1, in the times' dtype."""
        return (np.arange(self.n_bins) * self.dt).astype(dtype)


BINNINGS = {
    "official": Binning(),                                     # 250 x 4 ms, binary, 700 - unit
    "counts": Binning(counts=True),                            # the same, spikes per bin
    "10ms": Binning(dt=1e-2, n_bins=100, counts=True),         # 100 x 10 ms, counts
}


@dataclass
class SpikeEvents:
    """The spike trains of one file, concatenated: sample i's spikes are
    times[offsets[i]:offsets[i + 1]], units[...] (times as stored, e.g. float16)."""
    times: np.ndarray
    units: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    speakers: np.ndarray | None
    keys: list
    path: str

    def __len__(self):
        return len(self.labels)

    @property
    def n_classes(self) -> int:
        return len(self.keys) if self.keys else int(self.labels.max()) + 1

    def spike_counts(self) -> np.ndarray:
        return np.diff(self.offsets)


def find_file(data_dir, name: str) -> Path:
    """``data_dir/name`` with one of the suffixes .h5, .h5.gz, .h5.zip (``name`` without
    suffix, e.g. "shd_train"); ``data_dir`` may also hold an ``shd/`` or ``ssc/`` subfolder."""
    data_dir = Path(data_dir)
    dirs = [data_dir] + [data_dir / sub for sub in ("shd", "ssc", "shd_synth")]
    for d in dirs:
        for suf in SUFFIXES:
            if (d / (name + suf)).is_file():
                return d / (name + suf)
    raise DataError(f"{name}.h5 (or .h5.gz, .h5.zip) not found in {data_dir}; download it "
                    "with --download or pass --data-dir")


def _open_h5(path: Path, stack):
    """An h5py File for .h5, or for the .h5 inside .h5.gz / .h5.zip (decompressed to a
    temporary file, deleted on exit of ``stack``)."""
    import h5py
    name = path.name
    try:
        if name.endswith(".h5"):
            return stack.enter_context(h5py.File(path, "r"))
        tmp = stack.enter_context(tempfile.TemporaryFile())
        if name.endswith(".gz"):
            with gzip.open(path, "rb") as src:
                shutil.copyfileobj(src, tmp, 1 << 20)
        else:
            with zipfile.ZipFile(path) as z:
                inner = [n for n in z.namelist() if n.endswith(".h5")]
                if len(inner) != 1:
                    raise DataError(f"{path}: expected one .h5 file in the archive, found "
                                    f"{inner or z.namelist()}")
                with z.open(inner[0]) as src:
                    shutil.copyfileobj(src, tmp, 1 << 20)
        tmp.seek(0)
        return stack.enter_context(h5py.File(tmp, "r"))
    except DataError:
        raise
    except (OSError, EOFError, zipfile.BadZipFile, gzip.BadGzipFile) as exc:
        raise DataError(f"{path} is not a readable HDF5 file ({type(exc).__name__}: {exc})") \
            from exc


def load_events(path, n_units: int = N_UNITS, n_classes: int | None = None) -> SpikeEvents:
    """Read and check one file of the SHD layout. Any fault (missing dataset, times and units
    of different lengths, units out of range, negative or non-finite times, labels out of
    range) raises :class:`DataError` naming the file, the sample and what is wrong."""
    from contextlib import ExitStack
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    with ExitStack() as stack:
        f = _open_h5(path, stack)
        for key in ("spikes/times", "spikes/units", "labels"):
            if key not in f:
                raise DataError(f"{path}: dataset {key!r} is missing (the SHD layout has "
                                "spikes/times, spikes/units, labels)")
        times, units = f["spikes/times"][()], f["spikes/units"][()]
        labels = np.asarray(f["labels"][()])
        speakers = (np.asarray(f["extra/speaker"][()]).astype(np.int64)
                    if "extra/speaker" in f else None)
        keys = ([k.decode("utf-8") if isinstance(k, bytes) else str(k)
                 for k in f["extra/keys"][()]] if "extra/keys" in f else [])
    n = len(labels)
    if labels.ndim != 1 or len(times) != n or len(units) != n:
        raise DataError(f"{path}: {len(times)} spike-time arrays, {len(units)} unit arrays and "
                        f"labels of shape {labels.shape}; expected one of each per sample")
    if speakers is not None and speakers.shape != (n,):
        raise DataError(f"{path}: extra/speaker has shape {speakers.shape}, expected ({n},)")
    lengths = np.fromiter((len(t) for t in times), np.int64, n)
    ulengths = np.fromiter((len(u) for u in units), np.int64, n)
    bad = np.flatnonzero(lengths != ulengths)
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{path}: sample {i} has {lengths[i]} spike times but {ulengths[i]} "
                        "units")
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    t_all = np.concatenate(times) if n else np.zeros(0, np.float32)
    u_all = np.concatenate(units) if n else np.zeros(0, np.uint16)
    if not np.issubdtype(t_all.dtype, np.floating):
        t_all = t_all.astype(np.float64)

    def sample_of(k):
        return int(np.searchsorted(offsets, k, side="right") - 1)
    wrong = np.flatnonzero(~np.isfinite(t_all) | (t_all < 0))
    if wrong.size:
        k = int(wrong[0])
        raise DataError(f"{path}: sample {sample_of(k)} has spike time {t_all[k]} (times must "
                        "be finite and >= 0 seconds)")
    if not np.issubdtype(u_all.dtype, np.integer):
        raise DataError(f"{path}: spikes/units has dtype {u_all.dtype}, expected integers")
    wrong = np.flatnonzero((u_all < 0) | (u_all >= n_units))
    if wrong.size:
        k = int(wrong[0])
        raise DataError(f"{path}: sample {sample_of(k)} has unit {u_all[k]} (units must be in "
                        f"0..{n_units - 1})")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: labels have dtype {labels.dtype}, expected integers")
    limit = n_classes or (len(keys) if keys else None)
    wrong = np.flatnonzero((labels < 0) | ((labels >= limit) if limit else False))
    if wrong.size:
        i = int(wrong[0])
        raise DataError(f"{path}: sample {i} has label {labels[i]} (labels must be in "
                        f"0..{(limit or 1) - 1})")
    return SpikeEvents(t_all, u_all.astype(np.uint16, copy=False), offsets,
                       labels.astype(np.int64), speakers, keys, str(path))


def bin_events(times: np.ndarray, units: np.ndarray, binning: Binning):
    """(bin, channel) of each event and a mask of the events kept (within the bins, and not
    unit 0 under the official channel order)."""
    bins = np.searchsorted(binning.edges(times.dtype), times, side="left")
    units = units.astype(np.int64)
    keep = bins < binning.n_bins
    if binning.channels == "flip":
        keep &= units > 0
        ch = binning.n_units - units
    else:
        ch = units
    return bins, ch // binning.pool, keep


@dataclass(frozen=True)
class Augment:
    """Random changes of each training sample, drawn per sample and batch: a time shift of up
    to ``shift`` bins, a channel shift of up to ``channel_shift`` channels, and a time stretch
    by a factor in [1 - stretch, 1 + stretch] (about the first bin). Spikes moved outside the
    bins or channels are dropped. The random numbers are a function of ``seed`` and the batch's
    sample indices, so a resumed run draws the same ones."""
    shift: int = 0
    channel_shift: int = 0
    stretch: float = 0.0
    seed: int = 0

    def __bool__(self):
        return bool(self.shift or self.channel_shift or self.stretch)

    def to_dict(self) -> dict:
        return asdict(self)


class SHDDataset:
    """Dense batches of a file's samples, binned on demand: ``get(idx)`` returns
    (x (B, n_bins, n_channels) in ``dtype``, labels (B,)).

    The events are binned once, at construction, into one int32 cell index per kept spike
    (bin * channels + channel); a batch is then one scatter into a zeroed array. ``augment``
    (:class:`Augment`) changes each sample at random, for training. With ``reuse`` every
    ``get`` returns the same array, refilled (only the cells the last batch set are cleared):
    for a training loop that is done with a batch before it asks for the next."""

    def __init__(self, events: SpikeEvents, binning: Binning | str = "official",
                 dtype=np.float32, index=None, augment: Augment | None = None,
                 reuse: bool = False):
        self.binning = BINNINGS[binning] if isinstance(binning, str) else binning
        self.augment = augment
        self.reuse = reuse
        self._buf, self._set = None, None
        self.events, self.dtype = events, np.dtype(dtype)
        self.index = (np.arange(len(events)) if index is None
                      else np.asarray(index, dtype=np.int64))
        b = self.binning
        n_ev = len(events.times)
        cells = np.empty(n_ev, np.int32)
        keep = np.empty(n_ev, bool)
        for lo in range(0, n_ev, _CHUNK):       # in chunks: int64 temporaries stay small
            hi = min(n_ev, lo + _CHUNK)
            bins, ch, keep[lo:hi] = bin_events(events.times[lo:hi], events.units[lo:hi], b)
            cells[lo:hi] = bins * b.n_channels + ch
        lengths = np.diff(events.offsets)
        kept = np.zeros(len(events), np.int64)          # kept spikes per sample
        full = lengths > 0
        if n_ev:
            kept[full] = np.add.reduceat(keep, events.offsets[:-1][full], dtype=np.int64)
        self._cells = cells[keep]
        self._offsets = np.zeros(len(events) + 1, np.int64)   # sample i: _cells[o[i]:o[i+1]]
        np.cumsum(kept, out=self._offsets[1:])
        self.labels = events.labels[self.index]
        self.speakers = None if events.speakers is None else events.speakers[self.index]

    def subset(self, positions, augment: Augment | None = None,
               reuse: bool = False) -> "SHDDataset":
        """The samples at ``positions`` of this dataset (sharing the binned events), with
        ``augment`` (none by default) and ``reuse``."""
        sub = object.__new__(SHDDataset)
        sub.__dict__.update(self.__dict__)
        sub.augment, sub.reuse, sub._buf, sub._set = augment, reuse, None, None
        sub.index = self.index[np.asarray(positions, dtype=np.int64)]
        sub.labels = self.events.labels[sub.index]
        sub.speakers = None if self.events.speakers is None else self.events.speakers[sub.index]
        return sub

    def __len__(self):
        return len(self.index)

    @property
    def shape(self) -> tuple:
        return (self.binning.n_bins, self.binning.n_channels)

    def get(self, idx):
        samples = self.index[np.asarray(idx, dtype=np.int64).reshape(-1)]
        T, C = self.shape
        shape = (len(samples), T, C)
        if self.reuse and self._buf is not None and self._buf.shape == shape:
            x = self._buf
            x.reshape(-1)[self._set] = 0
        else:
            x = np.zeros(shape, self.dtype)
        starts, ends = self._offsets[samples], self._offsets[samples + 1]
        n = ends - starts
        rows = np.repeat(np.arange(len(samples)), n)
        pos = np.repeat(starts - np.concatenate(([0], np.cumsum(n)[:-1])), n) + np.arange(n.sum())
        cells = self._cells[pos]
        if self.augment:
            cells, rows = self._augmented(cells, rows, samples)
        flat = rows * (T * C) + cells
        if self.binning.counts:
            np.add.at(x.reshape(-1), flat, 1)
        else:
            x.reshape(-1)[flat] = 1
        if self.reuse:
            self._buf, self._set = x, flat
        return x, self.events.labels[samples]

    def _augmented(self, cells, rows, samples):
        a, (T, C) = self.augment, self.shape
        rng = np.random.default_rng([a.seed, len(samples), *samples.tolist()])
        B = len(samples)
        dt = rng.integers(-a.shift, a.shift + 1, B)
        dc = rng.integers(-a.channel_shift, a.channel_shift + 1, B)
        f = rng.uniform(1 - a.stretch, 1 + a.stretch, B)
        t = np.rint((cells // C) * f[rows]).astype(np.int64) + dt[rows]
        c = cells % C + dc[rows]
        keep = (t >= 0) & (t < T) & (c >= 0) & (c < C)
        return (t * C + c)[keep], rows[keep]
