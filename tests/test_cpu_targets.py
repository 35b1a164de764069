"""The kernels stay correct on every kind of CPU: the whole gradient check (finite
differences and the NumPy reference, every layer kind, loss, surrogate and truncated BPTT)
runs with the kernels compiled for an AVX2-only CPU (Zen 3), for LLVM's generic x86-64 (no
vector extension named), both with the bit-loop list builder, and, where the host has
AVX-512, for an Intel AVX-512 CPU (the ``vcompress`` list builder), each in a fresh process.
Compiled kernels are cached per target in the user's kernel cache, so only the first run pays
the compilation (a few minutes per target)."""
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE = """
import sys
from spikesim.backends.cpu import simd
from spikesim.backends.cpu.target import kernel_target
from validation.gradcheck import main
t = kernel_target()
builder = "vcompress" if simd.compress16 is simd.compress16_vcompress else "bits"
assert builder == t["list_builder"]
print("kernel target", t["cpu_name"], t["vector"], "list builder", builder, flush=True)
sys.exit(main(["--quick"]))
"""


def _host_has_avx512() -> bool:
    try:
        return "avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                    reason="x86 CPU names; on ARM the host target is the only one")
@pytest.mark.parametrize("cpu,features,vector,builder", [
    ("znver3", "", "avx2", "bits"), ("generic", None, "none", "bits"),
    pytest.param("skylake-avx512", "", "avx512f", "vcompress", marks=pytest.mark.skipif(
        not _host_has_avx512(), reason="AVX-512 code runs only on an AVX-512 host"))])
def test_gradcheck_passes_with_kernels_for_other_cpus(cpu, features, vector, builder):
    env = {**os.environ, "NUMBA_CPU_NAME": cpu, "PYTHONPATH": str(ROOT)}
    env.pop("NUMBA_CPU_FEATURES", None)
    if features is not None:
        env["NUMBA_CPU_FEATURES"] = features
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True,
                         cwd=ROOT, timeout=1800)
    first = out.stdout.splitlines()[0] if out.stdout else ""
    assert first == f"kernel target {cpu} {vector} list builder {builder}", out.stderr[-2000:]
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "0 failed" in out.stdout
    # the vector primitives themselves (masked loads and stores, list builders) on that target
    simd = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "tests" / "test_simd.py")], env=env, capture_output=True,
                          text=True, cwd=ROOT, timeout=1800)
    assert simd.returncode == 0, simd.stdout[-3000:]
