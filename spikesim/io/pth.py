"""Read PyTorch ``.pth`` files with NumPy only (PyTorch is never imported).

Both on-disk layouts written by ``torch.save`` are understood:

* the legacy layout (torch < 1.6): five pickles in a row -- magic number,
  protocol version (1001), sys_info, the main object, the list of storage
  keys -- followed by every storage as an int64 element count plus raw
  little-endian bytes;
* the zip layout (torch >= 1.6): ``<top>/data.pkl`` plus one raw file per
  storage in ``<top>/data/<key>`` (``<top>`` is usually ``archive``).

Unpickling goes through :class:`_RestrictedUnpickler`, which only resolves an
explicit allow-list of globals (tensor rebuild helpers, storage classes,
dtypes, ``collections.OrderedDict``, ``builtins.set``/``frozenset``/``slice``,
``torch.device``/``torch.Size``).  Classes from ``__main__`` or
``torch.nn.modules.*`` -- needed for files that pickled a whole ``nn.Module``
-- become inert :class:`AttrBag` objects that merely store their state.
Every other global is refused with :class:`~spikesim.errors.CheckpointError`
before anything can run.

Tensors come back as C-contiguous NumPy arrays (``nn.Parameter`` as the plain
array).  :func:`state_dict` flattens either a loaded state_dict or an AttrBag
model into ``{"i2h.weight": array, ...}``; :func:`attributes` lists a whole
model's plain (non-tensor) attributes.

Reference files checked with this reader (shapes are ``rows x cols``):

* ``ecg_nmi_0.8589.pth`` (legacy, state_dict): i2h.weight 36x4, h2h.weight
  36x36, h2o.weight 6x36 and their biases; tau_adp_h, tau_m_h (36),
  tau_adp_o, tau_m_o (6).  ``ecg_icons_0.8533.pth``: the same without the
  tau_m entries.
* ``smnist_nmi_98.21.pth`` (legacy, whole ``__main__.RNN_custom``): i2h 64x8,
  h2h 64x64, h2d 256x64, d2d 256x256, dense1 256x256, d2o 10x256 (+ biases);
  tau_{adp,m}_{r1,r2,d1,o}.  ``psmnist_nmi_94.73.pth`` (zip): same with i2h
  64x4, attributes DC_f='adp-spike', b_j0=0.01, plus a CrossEntropyLoss
  sub-module.  ``shd_nmi_90.7.pth`` (zip, whole model): i_2_h1 128x700,
  h1_2_h1 / h1_2_h2 / h2_2_h2 128x128, h2o 20x128 (+ biases);
  tau_{adp,m}_{h1,h2,o}, plus Dropout sub-modules.
"""
from __future__ import annotations

import collections
import io
import math
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from spikesim.errors import CheckpointError

__all__ = ["AttrBag", "load_pth", "state_dict", "attributes", "LEGACY_MAGIC"]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch storage class name -> NumPy dtype ("bfloat16" is converted to float32).
_STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}

# torch dtype attribute name -> NumPy dtype.
_TORCH_DTYPES = {
    "float32": "float32", "float": "float32",
    "float64": "float64", "double": "float64",
    "float16": "float16", "half": "float16",
    "bfloat16": "bfloat16",
    "int64": "int64", "long": "int64",
    "int32": "int32", "int": "int32",
    "int16": "int16", "short": "int16",
    "int8": "int8",
    "uint8": "uint8",
    "bool": "bool",
    "complex64": "complex64", "cfloat": "complex64",
    "complex128": "complex128", "cdouble": "complex128",
}

# Module prefixes whose classes are turned into AttrBag instead of refused.
_BAG_MODULES = ("__main__", "torch.nn.modules")


# --------------------------------------------------------------------------
# Inert stand-ins
# --------------------------------------------------------------------------
class AttrBag:
    """Inert stand-in for a pickled ``nn.Module`` (or other allowed class).

    Instances keep whatever state the pickle hands them as attributes; the
    original class is never imported or executed.  ``__class_name__`` holds
    the original ``"module.Name"``.
    """

    __class_name__ = "AttrBag"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        # Only reached through REDUCE (cls(*args)); keep the arguments.
        if args:
            self.__dict__["_init_args"] = args
        if kwargs:
            self.__dict__["_init_kwargs"] = kwargs

    def __setstate__(self, state):
        slots = None
        if isinstance(state, tuple) and len(state) == 2 and (
            state[0] is None or isinstance(state[0], dict)
        ):
            state, slots = state
        if isinstance(state, dict):
            for key, value in state.items():
                if isinstance(key, str):
                    self.__dict__[key] = value
        elif state is not None:
            self.__dict__["_state"] = state
        if isinstance(slots, dict):
            for key, value in slots.items():
                if isinstance(key, str):
                    self.__dict__[key] = value

    def __repr__(self) -> str:
        return f"<AttrBag {self.__class_name__}>"


class _Dtype:
    """Stand-in for a ``torch.<dtype>`` global."""

    __slots__ = ("name", "np_name")

    def __init__(self, name: str, np_name: str):
        self.name = name
        self.np_name = np_name

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _StorageType:
    """Stand-in for a torch storage class (``torch.FloatStorage`` ...)."""

    __slots__ = ("name", "np_name")

    def __init__(self, name: str, np_name: str | None):
        self.name = name
        self.np_name = np_name  # None: untyped (bytes)

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _Storage:
    """One storage of a checkpoint: raw bytes interpreted as ``np_name``."""

    __slots__ = ("key", "np_name", "numel", "raw", "big_endian", "parent", "offset")

    def __init__(self, key, np_name, numel, raw=None, big_endian=False, parent=None, offset=0):
        self.key = key
        self.np_name = np_name
        self.numel = numel
        self.raw = raw
        self.big_endian = big_endian
        self.parent = parent  # legacy storage views
        self.offset = offset

    def _bytes(self):
        if self.parent is not None:
            base = self.parent._bytes()
            if base is None:
                return None
            size = _itemsize(self.np_name)
            return base[self.offset * size:(self.offset + self.numel) * size]
        return self.raw

    def elements(self, np_name: str | None = None) -> np.ndarray | None:
        """The storage as a 1-D array (``np_name`` reinterprets the bytes)."""
        raw = self._bytes()
        if raw is None:
            return None
        name = np_name or self.np_name
        if name is None:
            name = "uint8"
        size = _itemsize(name)
        count = len(raw) // size if np_name else self.numel
        if count * size > len(raw):
            raise CheckpointError(
                f"storage {self.key!r} is truncated: needs {count * size} bytes, has {len(raw)}"
            )
        if name == "bfloat16":
            bits = np.frombuffer(raw, dtype=">u2" if self.big_endian else "<u2", count=count)
            return (bits.astype(np.uint32) << 16).view(np.float32)
        dt = np.dtype(name)
        if dt.itemsize > 1:
            dt = dt.newbyteorder(">" if self.big_endian else "<")
        arr = np.frombuffer(raw, dtype=dt, count=count)
        if arr.dtype.byteorder not in ("=", "|") and not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        return arr


class _PendingTensor:
    """Placeholder returned while scanning a legacy file (data not read yet)."""


_PENDING = _PendingTensor()


def _itemsize(np_name: str) -> int:
    return 2 if np_name == "bfloat16" else np.dtype(np_name).itemsize


# --------------------------------------------------------------------------
# NumPy implementations of the allowed torch callables
# --------------------------------------------------------------------------
def _as_int_tuple(value, what: str) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value),)
    if not isinstance(value, (tuple, list)):
        raise CheckpointError(f"tensor {what} must be a tuple of ints, got {type(value).__name__}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise CheckpointError(f"tensor {what} must be a tuple of ints, got {value!r}")
        out.append(int(v))
    return tuple(out)


def _build_array(storage, storage_offset, size, stride, np_name=None):
    if not isinstance(storage, _Storage):
        raise CheckpointError(
            f"tensor rebuilt from a non-storage object ({type(storage).__name__})")
    elements = storage.elements(np_name)
    if elements is None:
        return _PENDING
    size = _as_int_tuple(size, "size")
    stride = _as_int_tuple(stride, "stride")
    if isinstance(storage_offset, bool) or not isinstance(storage_offset, (int, np.integer)):
        raise CheckpointError(f"tensor storage offset must be an int, got {storage_offset!r}")
    offset = int(storage_offset)
    if len(size) != len(stride):
        raise CheckpointError(f"tensor size {size} and stride {stride} differ in length")
    if offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise CheckpointError(f"negative offset/size/stride: {offset}, {size}, {stride}")
    if math.prod(size) == 0:
        return np.zeros(size, dtype=elements.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= elements.size:
        raise CheckpointError(
            f"tensor (offset {offset}, size {size}, stride {stride}) reaches beyond its "
            f"storage {storage.key!r} of {elements.size} elements"
        )
    item = elements.itemsize
    view = as_strided(
        elements[offset:], shape=size, strides=tuple(s * item for s in stride), writeable=False
    )
    return np.array(view, copy=True, order="C")


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _build_array(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _build_array(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
    if not isinstance(dtype, _Dtype):
        raise CheckpointError(f"_rebuild_tensor_v3 needs a torch dtype, got {dtype!r}")
    return _build_array(storage, storage_offset, size, stride, np_name=dtype.np_name)


def _rebuild_parameter(data, requires_grad=True, backward_hooks=None):
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return data


class _TypeMarker:
    """Stand-in for ``torch.Tensor`` / ``torch.nn.Parameter`` as a type argument."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name


def _rebuild_from_type_v2(func, new_type, args, state):
    if not isinstance(func, _Allowed):
        raise CheckpointError("_rebuild_from_type_v2 called with a refused function")
    return func(*args)


def _torch_device(*args):
    return ":".join(str(a) for a in args)


def _torch_size(*args):
    return tuple(args[0]) if args else ()


class _Allowed:
    """A callable from the allow-list, wrapped fresh for every load."""

    __slots__ = ("name", "fn")

    def __init__(self, name, fn):
        self.name = name
        self.fn = fn

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def __repr__(self):
        return f"<allowed {self.name}>"


_ALLOWED_FUNCTIONS = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "device"): _torch_device,
    ("torch", "Size"): _torch_size,
}

_PY2_BUILTINS = ("builtins", "__builtin__")
_ALLOWED_BUILTINS = {"set": set, "frozenset": frozenset, "slice": slice}


# --------------------------------------------------------------------------
# The restricted unpickler
# --------------------------------------------------------------------------
class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals (see module doc)."""

    def __init__(self, file, storage_loader=None):
        super().__init__(file, encoding="utf-8")
        self._storage_loader = storage_loader
        self._bag_classes: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        if not isinstance(module, str) or not isinstance(name, str):
            raise CheckpointError("refused a non-string global reference")
        qual = f"{module}.{name}"
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module in _PY2_BUILTINS and name in _ALLOWED_BUILTINS:
            return _ALLOWED_BUILTINS[name]
        fn = _ALLOWED_FUNCTIONS.get((module, name))
        if fn is not None:
            return _Allowed(qual, fn)
        if module in ("torch", "torch.cuda", "torch.storage"):
            if name in _STORAGE_DTYPES:
                return _StorageType(name, _STORAGE_DTYPES[name])
            if name in ("UntypedStorage", "_UntypedStorage", "TypedStorage", "_TypedStorage"):
                return _StorageType(name, None)
        if module == "torch" and name in _TORCH_DTYPES:
            return _Dtype(name, _TORCH_DTYPES[name])
        if (module, name) in (("torch", "Tensor"), ("torch.nn.parameter", "Parameter")):
            return _TypeMarker(qual)
        if "." not in name and not name.startswith("__") and (
            module == "__main__" or module == "torch.nn.modules"
            or module.startswith("torch.nn.modules.")
        ):
            return self._bag_class(qual, name)
        raise CheckpointError(f"refused to load global {qual!r} (not on the allow-list)")

    def _bag_class(self, qual: str, name: str) -> type:
        cls = self._bag_classes.get(qual)
        if cls is None:
            cls = type(name, (AttrBag,), {"__class_name__": qual, "__module__": __name__})
            self._bag_classes[qual] = cls
        return cls

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid:
            raise CheckpointError(f"unsupported persistent id {pid!r}")
        kind = pid[0]
        if isinstance(kind, bytes):
            kind = kind.decode("ascii", "replace")
        if kind == "module":
            # Legacy whole-model files: ('module', cls, source_file, source).
            cls = pid[1] if len(pid) > 1 else None
            if not (isinstance(cls, type) and issubclass(cls, AttrBag)):
                raise CheckpointError(f"persistent 'module' id with unexpected class {cls!r}")
            if len(pid) >= 4 and isinstance(pid[3], str):
                cls.__source__ = pid[3]
            return cls
        if kind == "storage" and self._storage_loader is not None:
            return self._storage_loader(pid[1:])
        raise CheckpointError(f"unsupported persistent id type {kind!r}")


def _storage_np_name(storage_type) -> str | None:
    if isinstance(storage_type, _StorageType):
        return storage_type.np_name or "uint8"
    if isinstance(storage_type, _Dtype):
        return storage_type.np_name
    raise CheckpointError(f"unknown storage type {storage_type!r}")


def _unpickle(fileobj, storage_loader=None, what="pickle"):
    try:
        return _RestrictedUnpickler(fileobj, storage_loader).load()
    except CheckpointError:
        raise
    except (EOFError, pickle.UnpicklingError) as exc:
        raise CheckpointError(f"{what} is truncated or corrupt: {exc}") from exc
    except Exception as exc:  # malformed content reaching our rebuild helpers
        raise CheckpointError(f"{what} could not be decoded: {type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------
# The two file layouts
# --------------------------------------------------------------------------
def _load_zip(path: Path):
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt or truncated zip-format .pth file: {exc}") from exc
    with zf:
        names = zf.namelist()
        pkls = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
        if not pkls:
            pkls = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
        if not pkls:
            raise CheckpointError(f"{path}: zip file has no */data.pkl, not a PyTorch file")
        pkl = min(pkls, key=len)
        top = pkl[: -len("data.pkl")]
        big_endian = False
        if top + "byteorder" in names:
            order = zf.read(top + "byteorder").decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise CheckpointError(f"{path}: unknown byteorder {order!r}")
            big_endian = order == "big"
        cache: dict[str, _Storage] = {}

        def load_storage(data):
            if len(data) < 4:
                raise CheckpointError(f"{path}: malformed storage id {data!r}")
            storage_type, key, _location, numel = data[:4]
            key = str(key)
            if key in cache:
                return cache[key]
            np_name = _storage_np_name(storage_type)
            member = f"{top}data/{key}"
            if member not in names:
                raise CheckpointError(f"{path}: storage file {member!r} is missing")
            try:
                raw = zf.read(member)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise CheckpointError(f"{path}: cannot read {member!r}: {exc}") from exc
            if isinstance(storage_type, _StorageType) and storage_type.np_name is None:
                numel = len(raw)  # untyped storage: numel counts bytes
            if isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
                raise CheckpointError(f"{path}: bad element count {numel!r} for storage {key!r}")
            if len(raw) < numel * _itemsize(np_name):
                raise CheckpointError(
                    f"{path}: storage {member!r} is truncated "
                    f"({len(raw)} bytes, expected {numel * _itemsize(np_name)})"
                )
            st = _Storage(key, np_name, numel, raw=raw, big_endian=big_endian)
            cache[key] = st
            return st

        try:
            data = zf.read(pkl)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise CheckpointError(f"{path}: cannot read {pkl!r}: {exc}") from exc
        return _unpickle(io.BytesIO(data), load_storage, what=f"{path}: {pkl}")


def _load_legacy(path: Path, blob: bytes):
    f = io.BytesIO(blob)
    magic = _unpickle(f, what=f"{path}: header")
    if magic != LEGACY_MAGIC:
        raise CheckpointError(f"{path}: not a PyTorch .pth file (bad magic number)")
    protocol = _unpickle(f, what=f"{path}: header")
    if protocol != LEGACY_PROTOCOL:
        raise CheckpointError(f"{path}: unsupported legacy protocol version {protocol!r}")
    sys_info = _unpickle(f, what=f"{path}: sys_info")
    big_endian = isinstance(sys_info, dict) and sys_info.get("little_endian") is False
    main_start = f.tell()

    storages: dict[str, _Storage] = {}

    def load_storage(data):
        if len(data) < 4:
            raise CheckpointError(f"{path}: malformed storage id {data!r}")
        storage_type, root_key, _location, numel = data[:4]
        view = data[4] if len(data) > 4 else None
        root_key = str(root_key)
        np_name = _storage_np_name(storage_type)
        if isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
            raise CheckpointError(f"{path}: bad element count {numel!r}")
        root = storages.get(root_key)
        if root is None:
            root = _Storage(root_key, np_name, numel, big_endian=big_endian)
            storages[root_key] = root
        if view is None:
            return root
        try:
            view_key, offset, view_size = view
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: malformed storage view {view!r}") from exc
        key = str(view_key)
        if key not in storages:
            storages[key] = _Storage(key, np_name, int(view_size), big_endian=big_endian,
                                     parent=root, offset=int(offset))
        return storages[key]

    # Pass 1: learn the storages (tensors are placeholders).
    _unpickle(f, load_storage, what=f"{path}: main pickle")
    keys = _unpickle(f, what=f"{path}: storage key list")
    if not isinstance(keys, list):
        raise CheckpointError(f"{path}: storage key list is malformed")
    for key in keys:
        st = storages.get(str(key))
        if st is None or st.parent is not None:
            raise CheckpointError(f"{path}: unexpected storage key {key!r}")
        head = f.read(8)
        if len(head) != 8:
            raise CheckpointError(f"{path}: truncated file (storage {key!r} header missing)")
        (count,) = struct.unpack("<q", head)
        nbytes = count * _itemsize(st.np_name)
        if count < st.numel:
            raise CheckpointError(
                f"{path}: storage {key!r} has {count} elements, expected {st.numel}")
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise CheckpointError(
                f"{path}: truncated file (storage {key!r} has {len(raw)} of {nbytes} bytes)"
            )
        st.raw = raw
        st.numel = count
    missing = [k for k, s in storages.items() if s.parent is None and s.raw is None]
    if missing:
        raise CheckpointError(f"{path}: storages without data: {missing[:5]}")

    # Pass 2: the real objects.
    f.seek(main_start)
    return _unpickle(f, load_storage, what=f"{path}: main pickle")


def load_pth(path) -> Any:
    """Load a PyTorch ``.pth``/``.pt`` file (legacy or zip layout) without torch.

    Tensors become NumPy arrays, whole ``nn.Module`` objects become
    :class:`AttrBag` trees.  Raises :class:`CheckpointError` for a missing,
    foreign, truncated or corrupt file and for any global outside the
    allow-list.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such .pth file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc}") from exc
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _load_zip(path)
    if not head.startswith(b"\x80"):
        raise CheckpointError(f"{path}: not a PyTorch .pth file (unknown header {head!r})")
    blob = path.read_bytes()
    return _load_legacy(path, blob)


# --------------------------------------------------------------------------
# Views of a loaded object
# --------------------------------------------------------------------------
def state_dict(obj, prefix: str = "") -> dict[str, np.ndarray]:
    """Flatten a loaded object into ``{"name": array}``.

    ``obj`` is a state_dict (dict/OrderedDict of arrays) or an :class:`AttrBag`
    module; for the latter ``_parameters``, persistent ``_buffers`` and
    ``_modules`` are walked recursively in PyTorch's order (``i2h.weight``,
    ``layer.sub.bias`` ...).  ``None`` entries are skipped.
    """
    out: dict[str, np.ndarray] = {}
    if isinstance(obj, AttrBag):
        _walk_module(obj, prefix, out)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            name = f"{prefix}{key}"
            if isinstance(value, np.ndarray):
                out[name] = value
            elif isinstance(value, AttrBag):
                _walk_module(value, name + ".", out)
    else:
        raise CheckpointError(
            f"cannot take a state_dict of {type(obj).__name__}: expected a dict or a module"
        )
    return out


def _walk_module(bag: AttrBag, prefix: str, out: dict) -> None:
    d = bag.__dict__
    params = d.get("_parameters")
    if isinstance(params, dict):
        for name, value in params.items():
            if isinstance(value, np.ndarray):
                out[f"{prefix}{name}"] = value
    buffers = d.get("_buffers")
    skip = d.get("_non_persistent_buffers_set")
    skip = skip if isinstance(skip, (set, frozenset)) else set()
    if isinstance(buffers, dict):
        for name, value in buffers.items():
            if isinstance(value, np.ndarray) and name not in skip:
                out[f"{prefix}{name}"] = value
    modules = d.get("_modules")
    if isinstance(modules, dict):
        for name, sub in modules.items():
            if isinstance(sub, AttrBag):
                _walk_module(sub, f"{prefix}{name}.", out)


def _is_plain(value) -> bool:
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return True
    if isinstance(value, (np.generic,)):
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict) and not isinstance(value, collections.OrderedDict):
        return all(_is_plain(k) and _is_plain(v) for k, v in value.items())
    return False


def attributes(obj) -> dict:
    """Plain (non-tensor, non-module) public attributes of a whole-model AttrBag.

    Example for the psMNIST reference model: ``{"DC_f": "adp-spike",
    "b_j0": 0.01, ...}``.  Names starting with ``_`` are left out.
    """
    if not isinstance(obj, AttrBag):
        raise CheckpointError(f"attributes() needs a whole-model object, got {type(obj).__name__}")
    return {
        k: v for k, v in obj.__dict__.items()
        if not k.startswith("_") and _is_plain(v)
    }
