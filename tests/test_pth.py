"""Tests for spikesim.io.pth: torch-free .pth reading and its safety checks.

The .pth files are written here without PyTorch: a pure-Python pickler emits
the same opcodes torch.save does (GLOBAL torch._utils _rebuild_tensor_v2,
BINPERSID storage ids, NEWOBJ + BUILD for modules) and the helpers lay them
out in the legacy or zip container.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from spikesim.errors import CheckpointError
from spikesim.io.pth import LEGACY_MAGIC, AttrBag, attributes, load_pth, state_dict


# ---------------------------------------------------------------------------
# A tiny torch.save imitation
# ---------------------------------------------------------------------------
class G:
    """A global reference written as GLOBAL 'module name' (never imported)."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *a):  # pickle insists REDUCE callables are callable
        raise AssertionError("never called")


class Call:
    """Pickles as ``func(*args)`` (REDUCE)."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


class NewObj:
    """Pickles as ``cls.__new__(cls)`` + BUILD(state), like an nn.Module."""

    def __init__(self, cls, state):
        self.cls, self.state = cls, state


class Storage:
    def __init__(self, key, type_name, data: np.ndarray):
        self.key, self.type_name, self.data = key, type_name, np.ascontiguousarray(data)


class _Writer(pickle._Pickler):
    """Pure-Python pickler that knows the fake objects above."""

    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file, legacy: bool):
        super().__init__(file, protocol=2)
        self.legacy = legacy
        self.globals: dict[tuple[str, str], G] = {}
        self.storages: dict[str, Storage] = {}
        self.seen_module_classes: set[int] = set()

    def g(self, module, name):
        return self.globals.setdefault((module, name), G(module, name))

    def save_g(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch[G] = save_g

    def save_newobj(self, obj):
        self.save(obj.cls)
        self.save(())
        self.write(pickle.NEWOBJ)
        self.memoize(obj)
        self.save(obj.state)
        self.write(pickle.BUILD)

    dispatch[NewObj] = save_newobj

    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            self.storages[obj.key] = obj
            pid = ("storage", self.g("torch", obj.type_name), obj.key, "cpu", obj.data.size)
            return pid + (None,) if self.legacy else pid
        if (self.legacy and isinstance(obj, G) and id(obj) not in self.seen_module_classes
                and (obj.module == "__main__" or obj.module.startswith("torch.nn.modules"))):
            # torch's legacy format saves module classes with their source.
            self.seen_module_classes.add(id(obj))
            return ("module", obj, "model.py", f"class {obj.name}(nn.Module): pass\n")
        return None


_TYPE_NAMES = {
    np.dtype("float32"): "FloatStorage", np.dtype("float64"): "DoubleStorage",
    np.dtype("float16"): "HalfStorage", np.dtype("int64"): "LongStorage",
    np.dtype("int32"): "IntStorage", np.dtype("uint8"): "ByteStorage",
    np.dtype("bool"): "BoolStorage",
}


class Model:
    """Builds tensors/parameters/modules that share one writer's globals."""

    def __init__(self):
        self._n = 0
        self._globals: dict[tuple[str, str], G] = {}

    def g(self, module, name):
        return self._globals.setdefault((module, name), G(module, name))

    def storage(self, flat):
        self._n += 1
        flat = np.asarray(flat)
        return Storage(str(1000 + self._n), _TYPE_NAMES[flat.dtype], flat.ravel())

    def tensor(self, storage, offset=0, shape=None, stride=None):
        if shape is None:
            shape = (storage.data.size,)
        if stride is None:
            stride = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
        return Call(self.g("torch._utils", "_rebuild_tensor_v2"),
                    (storage, offset, tuple(shape), tuple(stride), False,
                     collections.OrderedDict()))

    def from_array(self, arr):
        arr = np.ascontiguousarray(arr)
        return self.tensor(self.storage(arr.ravel()), 0, arr.shape)

    def parameter(self, arr):
        return Call(self.g("torch._utils", "_rebuild_parameter"),
                    (self.from_array(arr), True, collections.OrderedDict()))

    def module(self, module, name, params=(), modules=(), **attrs):
        state = {
            "training": True,
            "_parameters": collections.OrderedDict(params),
            "_buffers": collections.OrderedDict(),
            "_non_persistent_buffers_set": set(),
            "_backward_hooks": collections.OrderedDict(),
            "_modules": collections.OrderedDict(modules),
        }
        state.update(attrs)
        return NewObj(self.g(module, name), state)


def _pickle_main(obj, legacy, globals_from=None):
    buf = io.BytesIO()
    w = _Writer(buf, legacy)
    if globals_from is not None:
        w.globals = globals_from._globals
    w.dump(obj)
    return buf.getvalue(), w.storages


def write_zip(path, obj, model=None, top="archive"):
    data, storages = _pickle_main(obj, legacy=False, globals_from=model)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{top}/data.pkl", data)
        zf.writestr(f"{top}/byteorder", "little")
        for key, st in storages.items():
            zf.writestr(f"{top}/data/{key}",
                        st.data.astype(st.data.dtype.newbyteorder("<")).tobytes())
        zf.writestr(f"{top}/version", "3\n")


def write_legacy(path, obj, model=None):
    data, storages = _pickle_main(obj, legacy=True, globals_from=model)
    with open(path, "wb") as fh:
        pickle.dump(LEGACY_MAGIC, fh, protocol=2)
        pickle.dump(1001, fh, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True,
                     "type_sizes": {"short": 2, "int": 4, "long": 4}}, fh, protocol=2)
        fh.write(data)
        keys = sorted(storages)
        pickle.dump(keys, fh, protocol=2)
        for key in keys:
            st = storages[key]
            fh.write(struct.pack("<q", st.data.size))
            fh.write(st.data.astype(st.data.dtype.newbyteorder("<")).tobytes())


WRITERS = {"zip": write_zip, "legacy": write_legacy}


# ---------------------------------------------------------------------------
# Fixtures: a state_dict and a whole model
# ---------------------------------------------------------------------------
def make_state_dict():
    m = Model()
    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 3)).astype(np.float32)
    v = rng.standard_normal(5)
    base = np.arange(10, dtype=np.float32) * 1.5
    idx = np.array([[1, -2, 3], [7, 8, 9]], dtype=np.int64)
    mask = np.array([True, False, True])
    half = np.array([0.5, -2.25, 1e-3], dtype=np.float16)
    shared = m.storage(w.ravel())
    base_st = m.storage(base)
    obj = collections.OrderedDict([
        ("w", m.tensor(shared, 0, (2, 3))),
        ("w_t", m.tensor(shared, 0, (3, 2), (1, 3))),          # transposed view
        ("v", m.from_array(v)),
        ("every_other", m.tensor(base_st, 4, (3,), (2,))),    # offset + stride
        ("block", m.tensor(base_st, 1, (2, 2), (4, 1))),
        ("idx", m.from_array(idx)),
        ("mask", m.from_array(mask)),
        ("half", m.from_array(half)),
        ("scalar", m.tensor(m.storage(np.array([3.25], np.float64)), 0, (), ())),
    ])
    expected = {
        "w": w, "w_t": w.T, "v": v, "every_other": base[4:10:2],
        "block": np.array([[base[1], base[2]], [base[5], base[6]]]),
        "idx": idx, "mask": mask, "half": half, "scalar": np.array(3.25),
    }
    return m, obj, expected


def make_whole_model():
    m = Model()
    rng = np.random.default_rng(1)
    arrs = {
        "i2h.weight": rng.standard_normal((4, 3)).astype(np.float32),
        "i2h.bias": rng.standard_normal(4).astype(np.float32),
        "layer.sub.weight": rng.standard_normal((2, 4)).astype(np.float32),
        "tau_m_h": rng.uniform(10, 30, 4).astype(np.float32),
    }
    linear = m.module("torch.nn.modules.linear", "Linear",
                      params=[("weight", m.parameter(arrs["i2h.weight"])),
                              ("bias", m.parameter(arrs["i2h.bias"]))],
                      in_features=3, out_features=4)
    inner = m.module("torch.nn.modules.linear", "Linear",
                     params=[("weight", m.parameter(arrs["layer.sub.weight"])), ("bias", None)],
                     in_features=4, out_features=2)
    drop = m.module("torch.nn.modules.dropout", "Dropout", p=0.1, inplace=False)
    layer = m.module("__main__", "Block", modules=[("sub", inner), ("drop", drop)])
    loss = m.module("torch.nn.modules.loss", "CrossEntropyLoss", reduction="mean")
    model = m.module(
        "__main__", "RNN_custom",
        params=[("tau_m_h", m.parameter(arrs["tau_m_h"]))],
        modules=[("i2h", linear), ("layer", layer), ("criterion", loss), ("missing", None)],
        DC_f="adp-spike", b_j0=0.01, hidden=[4, 2],
        b_h=m.from_array(np.ones((2, 4), np.float32)),
    )
    return m, model, arrs


# ---------------------------------------------------------------------------
# Tests on synthetic files
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_state_dict_round_trip(tmp_path, fmt):
    m, obj, expected = make_state_dict()
    path = tmp_path / f"sd_{fmt}.pth"
    WRITERS[fmt](path, obj, m)
    loaded = load_pth(path)
    assert isinstance(loaded, collections.OrderedDict)
    assert list(loaded) == list(expected)
    for name, want in expected.items():
        got = loaded[name]
        assert isinstance(got, np.ndarray), name
        assert got.dtype == want.dtype, name
        assert got.shape == want.shape, name
        assert got.flags.c_contiguous and got.flags.writeable, name
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert got.tobytes() == np.ascontiguousarray(want).tobytes(), name
    sd = state_dict(loaded)
    assert type(sd) is dict and list(sd) == list(expected)
    assert list(state_dict(loaded, prefix="net.")) == [f"net.{k}" for k in expected]


def test_zip_with_other_top_folder(tmp_path):
    m, obj, expected = make_state_dict()
    path = tmp_path / "renamed.pth"
    write_zip(path, obj, m, top="my_model_v2")
    loaded = load_pth(path)
    np.testing.assert_array_equal(loaded["w_t"], expected["w_t"])


def test_tensors_sharing_a_storage_are_independent_copies(tmp_path):
    m, obj, expected = make_state_dict()
    path = tmp_path / "sd.pth"
    write_zip(path, obj, m)
    loaded = load_pth(path)
    loaded["w"][0, 0] = 123.0
    assert loaded["w_t"][0, 0] == expected["w"][0, 0]


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_whole_model(tmp_path, fmt):
    m, model, arrs = make_whole_model()
    path = tmp_path / f"model_{fmt}.pth"
    WRITERS[fmt](path, model, m)
    obj = load_pth(path)
    assert isinstance(obj, AttrBag)
    assert obj.__class_name__ == "__main__.RNN_custom"
    assert obj._modules["i2h"].__class_name__ == "torch.nn.modules.linear.Linear"
    assert obj._modules["criterion"].__class_name__ == "torch.nn.modules.loss.CrossEntropyLoss"
    assert obj._modules["layer"]._modules["drop"].p == 0.1
    sd = state_dict(obj)
    assert list(sd) == ["tau_m_h", "i2h.weight", "i2h.bias", "layer.sub.weight"]
    for name, want in arrs.items():
        assert sd[name].dtype == want.dtype
        np.testing.assert_array_equal(sd[name], want)
    attrs = attributes(obj)
    assert attrs["DC_f"] == "adp-spike" and attrs["b_j0"] == 0.01
    assert attrs["hidden"] == [4, 2]
    assert "b_h" not in attrs and not any(k.startswith("_") for k in attrs)
    np.testing.assert_array_equal(obj.b_h, np.ones((2, 4), np.float32))


def test_attrbag_classes_do_not_leak_between_loads(tmp_path):
    m, model, _ = make_whole_model()
    path = tmp_path / "model.pth"
    write_zip(path, model, m)
    a, b = load_pth(path), load_pth(path)
    assert type(a) is not type(b)
    assert isinstance(a, AttrBag) and isinstance(b, AttrBag)


# ---------------------------------------------------------------------------
# Safety
# ---------------------------------------------------------------------------
DANGEROUS = [("os", "system"), ("posix", "system"), ("builtins", "eval"),
             ("__builtin__", "eval"), ("subprocess", "Popen"), ("builtins", "exec"),
             ("torch", "load"), ("numpy", "load"), ("__main__.os", "system")]


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("module,name", DANGEROUS)
def test_malicious_global_is_refused_and_not_run(tmp_path, fmt, module, name):
    marker = tmp_path / "pwned"
    if name == "system":
        arg = f"touch {marker}"
    elif name == "Popen":
        arg = ["touch", str(marker)]
    else:
        arg = f"open({str(marker)!r}, 'w').close()"
    m, obj, _ = make_state_dict()
    obj["evil"] = Call(G(module, name), (arg,))
    path = tmp_path / "evil.pth"
    WRITERS[fmt](path, obj, m)
    with pytest.raises(CheckpointError) as info:
        load_pth(path)
    assert f"{module}.{name}" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("proto", [0, 2, 4])
def test_hand_written_os_system_pickle_refused(tmp_path, proto):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(Evil(), protocol=proto))
    with pytest.raises(CheckpointError, match="system"):
        load_pth(path)
    assert not marker.exists()


def test_main_class_is_never_executed(tmp_path):
    # A __main__ class becomes an AttrBag: its real __setstate__ never runs.
    marker = tmp_path / "pwned"
    m = Model()
    obj = NewObj(m.g("__main__", "Exploit"), {"cmd": f"touch {marker}"})
    path = tmp_path / "main.pth"
    write_zip(path, obj, m)
    loaded = load_pth(path)
    assert isinstance(loaded, AttrBag) and loaded.cmd == f"touch {marker}"
    assert not marker.exists()


# ---------------------------------------------------------------------------
# Broken files
# ---------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such"):
        load_pth(tmp_path / "nope.pth")


@pytest.mark.parametrize("content", [b"", b"hello world, not a checkpoint",
                                     b"\x89PNG\r\n\x1a\n" + b"0" * 40])
def test_garbage_file(tmp_path, content):
    path = tmp_path / "garbage.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_pth(path)


def test_plain_pickle_is_not_a_pth(tmp_path):
    path = tmp_path / "plain.pth"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(CheckpointError, match="magic"):
        load_pth(path)


def test_zip_without_data_pkl(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(CheckpointError, match="data.pkl"):
        load_pth(path)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.99])
def test_truncated_file(tmp_path, fmt, fraction):
    m, obj, _ = make_state_dict()
    path = tmp_path / f"full_{fmt}.pth"
    WRITERS[fmt](path, obj, m)
    blob = path.read_bytes()
    cut = tmp_path / f"cut_{fmt}.pth"
    cut.write_bytes(blob[: int(len(blob) * fraction)])
    with pytest.raises(CheckpointError):
        load_pth(cut)


def test_legacy_short_storage_data(tmp_path):
    m, obj, _ = make_state_dict()
    path = tmp_path / "sd.pth"
    write_legacy(path, obj, m)
    blob = path.read_bytes()
    path.write_bytes(blob[:-3])
    with pytest.raises(CheckpointError, match="truncated"):
        load_pth(path)


def test_tensor_outside_its_storage(tmp_path):
    m = Model()
    st = m.storage(np.zeros(4, np.float32))
    path = tmp_path / "oob.pth"
    write_zip(path, collections.OrderedDict(x=m.tensor(st, 2, (3,), (1,))), m)
    with pytest.raises(CheckpointError, match="beyond"):
        load_pth(path)


def test_state_dict_of_unsupported_object():
    with pytest.raises(CheckpointError):
        state_dict([1, 2, 3])


# ---------------------------------------------------------------------------
# The real reference checkpoints
# ---------------------------------------------------------------------------
def _reference_dir() -> Path:
    env = os.environ.get("SPIKESIM_REFERENCE")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "reference"


def _linear(prefix, out_f, in_f):
    return {f"{prefix}.weight": (out_f, in_f), f"{prefix}.bias": (out_f,)}


_ECG = {**_linear("i2h", 36, 4), **_linear("h2h", 36, 36), **_linear("h2o", 6, 36),
        "tau_adp_h": (36,), "tau_adp_o": (6,)}
_SMNIST = {
    **_linear("h2h", 64, 64), **_linear("h2d", 256, 64), **_linear("d2d", 256, 256),
    **_linear("dense1", 256, 256), **_linear("d2o", 10, 256),
    **{f"tau_{k}_{l}": (n,) for k in ("adp", "m")
       for l, n in (("r1", 64), ("r2", 256), ("d1", 256), ("o", 10))},
}
REFERENCE = {
    "ecg_nmi_0.8589.pth": {**_ECG, "tau_m_h": (36,), "tau_m_o": (6,)},
    "ecg_icons_0.8533.pth": _ECG,
    "smnist_nmi_98.21.pth": {**_SMNIST, **_linear("i2h", 64, 8)},
    "psmnist_nmi_94.73.pth": {**_SMNIST, **_linear("i2h", 64, 4)},
    "shd_nmi_90.7.pth": {
        **_linear("i_2_h1", 128, 700), **_linear("h1_2_h1", 128, 128),
        **_linear("h1_2_h2", 128, 128), **_linear("h2_2_h2", 128, 128),
        **_linear("h2o", 20, 128),
        **{f"tau_{k}_{l}": (n,) for k in ("adp", "m")
           for l, n in (("h1", 128), ("h2", 128), ("o", 20))},
    },
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_file(name):
    path = _reference_dir() / name
    if not path.is_file():
        pytest.skip(f"reference checkpoint {path} not available")
    obj = load_pth(path)
    sd = state_dict(obj)
    assert {k: v.shape for k, v in sd.items()} == REFERENCE[name]
    for key, arr in sd.items():
        assert arr.dtype == np.float32, key
        assert np.all(np.isfinite(arr)), key
    if name.startswith("ecg"):
        assert isinstance(obj, collections.OrderedDict)
        # time constants are positive
        assert np.all(sd["tau_adp_h"] > 0) and np.all(sd["tau_adp_o"] > 0)
    else:
        assert isinstance(obj, AttrBag) and obj.__class_name__ == "__main__.RNN_custom"
        first = "i_2_h1" if name.startswith("shd") else "i2h"
        assert obj._modules[first].__class_name__ == "torch.nn.modules.linear.Linear"
    if name == "ecg_nmi_0.8589.pth":
        assert sd["tau_m_h"].shape == (36,) and np.all(sd["tau_m_h"] > 0)
    if name == "psmnist_nmi_94.73.pth":
        attrs = attributes(obj)
        assert attrs["DC_f"] == "adp-spike" and attrs["b_j0"] == pytest.approx(0.01)
        assert attrs["input_size"] == 4
        assert obj._modules["criterion"].__class_name__ == "torch.nn.modules.loss.CrossEntropyLoss"
    if name == "smnist_nmi_98.21.pth":
        assert attributes(obj)["DC_f"] == "adp-spike"
    if name == "shd_nmi_90.7.pth":
        assert obj._modules["dp"].__class_name__ == "torch.nn.modules.dropout.Dropout"
        assert attributes(obj)["hidden_size"] == [128, 128]
