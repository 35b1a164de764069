"""The CUDA backend without a GPU: every kernel compiles to PTX in float32 and float64 (what the
simulator accepts but the CUDA compiler rejects fails here), the backend says what is missing
where it cannot run, and the simulator suite (tests/test_cuda_sim.py: every kernel against the
CPU backend) runs in a subprocess with NUMBA_ENABLE_CUDASIM=1, which must be set before numba is
imported. Skips where the optional numba-cuda is absent."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba.cuda")
from numba import cuda  # noqa: E402

from spikesim.backends import get_backend  # noqa: E402
from spikesim.backends.cuda import _target_device  # noqa: E402
from spikesim.backends.cuda.ptx import compile_kernel, kernel_names  # noqa: E402
from spikesim.model.config import LayerConfig, NetworkConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"

try:    # compile_ptx needs NVVM and NVRTC (the "cu13" wheels of numba-cuda[cu13])
    compile_kernel("column_sums", np.float64)
    PTX_ERROR = None
except Exception as e:  # pragma: no cover - depends on the installation
    PTX_ERROR = f"numba-cuda cannot compile PTX here: {e}"
needs_ptx = pytest.mark.skipif(PTX_ERROR is not None or SIM, reason=PTX_ERROR or "simulator")


@needs_ptx
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", kernel_names())
def test_kernel_compiles_to_ptx(name, dtype):
    """Every kernel compiles; in float32 the layer kernels and the optimiser's and parameter
    kernels hold no float64 instruction (a float literal would promote); the loss kernels and
    the device reductions ``sum_squares``, ``count_bad`` accumulate in float64 on purpose, as
    on the CPU."""
    from spikesim.backends.cuda import layers, optim
    ptx = compile_kernel(name, dtype)
    assert ".visible .entry" in ptx
    single = set(layers.KERNELS) | set(optim.KERNELS) - {"sum_squares", "count_bad"}
    if dtype == np.float32 and name in single:
        assert ".f64" not in ptx, [line for line in ptx.splitlines() if ".f64" in line][:5]
    else:
        assert ".f64" in ptx


@needs_ptx
def test_the_ptx_checks_can_fail():
    """A float literal in a float32 kernel shows as float64 in its PTX, and a kernel that the
    simulator would run (it runs Python) but the CUDA compiler rejects does not compile."""
    from numba import types
    from numba.core.errors import TypingError

    def literal(a):
        a[0] = a[0] * 0.1

    def host_object(a):
        a[0] = len({"a": a[0]})

    a32 = types.Array(types.float32, 1, "C")
    with _target_device((8, 0)):
        ptx, _ = cuda.compile_ptx(literal, (a32,), cc=(8, 0))
        assert ".f64" in ptx
        with pytest.raises(TypingError):
            cuda.compile_ptx(host_object, (a32,), cc=(8, 0))


def test_cuda_is_a_registered_backend():
    assert get_backend("cuda").__name__ == "CudaBackend"
    assert get_backend("cuda").name == "cuda"


@pytest.mark.skipif(SIM or cuda.is_available(), reason="a GPU (or the simulator) is present")
def test_without_a_gpu_the_backend_says_so():
    from spikesim.network import Network
    cfg = NetworkConfig(n_in=2, layers=[LayerConfig(3, "rec", name="h")])
    with pytest.raises(RuntimeError, match="GPU"):
        Network(cfg, backend="cuda")


def test_without_numba_cuda_the_backend_names_the_package():
    """In a process where numba.cuda cannot be imported, the backend's error names numba-cuda."""
    code = ("import sys; sys.modules['numba.cuda'] = None\n"
            "from spikesim.model.config import LayerConfig, NetworkConfig\n"
            "from spikesim.network import Network\n"
            "cfg = NetworkConfig(n_in=2, layers=[LayerConfig(3, 'rec', name='h')])\n"
            "try:\n    Network(cfg, backend='cuda')\n"
            "except ImportError as e:\n    print('ERROR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ERROR" in out.stdout and "numba-cuda" in out.stdout, out.stdout


@pytest.mark.skipif(SIM, reason="already in the simulator: tests/test_cuda_sim.py runs directly")
def test_kernels_match_the_cpu_backend_in_the_simulator():
    """tests/test_cuda_sim.py, and the device check tests/test_cuda_gpu.py at tiny sizes, in a
    process with the simulator on (under a minute)."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/test_cuda_sim.py", "tests/test_cuda_gpu.py"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)
    tail = (out.stdout + out.stderr)[-6000:]
    assert out.returncode == 0, tail
    m = re.search(r"(\d+) passed", out.stdout)
    assert m and int(m.group(1)) >= 24 and "skipped" not in out.stdout, tail
