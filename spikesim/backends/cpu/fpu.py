"""Flush-to-zero for the kernel threads.

Membrane potentials, adaptation traces and back-propagated gradients of silent neurons decay
geometrically and reach float32 denormals within a few hundred steps; arithmetic on denormals
is ~100x slower on x86 and made whole kernels several times slower. The kernels therefore run
with the MXCSR flags FTZ (flush results) and DAZ (treat inputs as zero) set. The values
affected are below 1.2e-38 (float32) / 2.2e-308 (float64): far below anything that matters.
On processors other than x86-64 these functions do nothing.
"""
from __future__ import annotations

import platform

from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

FTZ_DAZ = 0x8040          # MXCSR bit 15 (flush to zero) and bit 6 (denormals are zero)
X86 = platform.machine().lower() in ("x86_64", "amd64")

if X86:
    from llvmlite import ir

    @intrinsic
    def _swap_mxcsr(typingctx, value):
        """Set MXCSR to ``value``; return its previous value."""
        sig = types.uint32(types.uint32)

        def codegen(context, builder, signature, args):
            i32 = ir.IntType(32)
            slot = cgutils.alloca_once(builder, i32)
            fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()])
            st = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse.stmxcsr")
            ld = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse.ldmxcsr")
            p8 = builder.bitcast(slot, ir.IntType(8).as_pointer())
            builder.call(st, [p8])
            old = builder.load(slot)
            builder.store(args[0], slot)
            builder.call(ld, [p8])
            return old
        return sig, codegen

    @njit(cache=True)
    def get_mxcsr():
        old = _swap_mxcsr(types.uint32(0x1F80))
        _swap_mxcsr(old)
        return old

    @njit(cache=True)
    def set_mxcsr(value):
        return _swap_mxcsr(value)

    def flush_denormals() -> int:
        """Turn FTZ/DAZ on in the calling thread; returns the previous MXCSR for restore."""
        old = int(get_mxcsr())
        set_mxcsr(old | FTZ_DAZ)
        return old

    def restore(old: int):
        set_mxcsr(old)
else:                      # pragma: no cover
    def flush_denormals() -> int:
        return 0

    def restore(old: int):
        pass
