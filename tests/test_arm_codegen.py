"""The CPU kernels build for 64-bit ARM (AArch64, NEON) without an ARM machine:
``validation.arm_codegen`` captures the LLVM IR Numba generates for the kernels of a training
step and compiles it for an ARM CPU with LLVM. The checker itself is shown to fail on a
kernel that calls an x86-only intrinsic."""
import subprocess
import sys
from pathlib import Path

import pytest

from validation import arm_codegen

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not arm_codegen.has_target(),
                                reason="this llvmlite has no AArch64 back end")

# a function named like a spikesim kernel that reads the x86 MXCSR register
X86_ONLY_KERNEL = """
declare void @llvm.x86.sse.stmxcsr(i8*)
define i32 @_ZN8spikesim8backends3cpu6layers4fakeE(i32 %x) {
  %slot = alloca i32
  %p = bitcast i32* %slot to i8*
  call void @llvm.x86.sse.stmxcsr(i8* %p)
  %v = load i32, i32* %slot
  %r = add i32 %v, %x
  ret i32 %r
}
"""
PORTABLE_KERNEL = """
define <16 x float> @_ZN8spikesim8backends3cpu6layers4fakeE(<16 x float> %a, float* %p) {
  %vp = bitcast float* %p to <16 x float>*
  %b = load <16 x float>, <16 x float>* %vp, align 4
  %c = fadd fast <16 x float> %a, %b
  ret <16 x float> %c
}
"""


def test_checker_fails_on_an_x86_only_kernel_and_passes_a_portable_one():
    arm, x86 = arm_codegen.ARM_TRIPLE, arm_codegen.X86_TRIPLE
    (_, why), = arm_codegen.compile_in_child([("fake", X86_ONLY_KERNEL)], arm,
                                             "neoverse-n1")["failed"]
    assert "llvm.x86.sse.stmxcsr" in why
    assert arm_codegen.compile_in_child([("fake", X86_ONLY_KERNEL)], x86, "znver3")["failed"] == []
    result = arm_codegen.compile_in_child([("fake", PORTABLE_KERNEL)], arm, "neoverse-n1")
    assert result["failed"] == []
    asm = result["asm"]
    stats = arm_codegen.function_stats(asm)
    (name, s), = stats.items()
    assert arm_codegen.readable(name) == "spikesim.backends.cpu.layers.fake"
    assert s["vector"] >= 4            # 16 lanes of float32: four 128-bit NEON registers


def test_every_kernel_of_a_training_step_compiles_for_arm():
    out = subprocess.run([sys.executable, "-m", "validation.arm_codegen", "--problems", "ecg"],
                         capture_output=True, text=True, cwd=ROOT, timeout=1800)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "ARM build: every kernel compiles" in out.stdout
    assert "layers.alif_backward" in out.stdout and "neuron_rows.alif_rows" in out.stdout
