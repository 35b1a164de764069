"""A matrix product on flat arrays and offsets, for the kernels' small per-step products.

``matmul(a, oa, b, c, oc, m, k, n)``: c[oc:oc + m*n] = a[oa:oa + m*k] @ b, all row-major
(a: m x k, b: k x n flat, c: m x n). It calls the same BLAS sgemm/dgemm as ``np.dot`` (through
Numba's ``numba_xxgemm`` helper), but takes no array views: in a time loop, ``np.dot`` on
slices such as ``g[t, lo:hi]`` made views and checked its arguments on every call, each view
costing atomic reference-count updates (a fifth of a narrow layer's backward time).
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.linalg import ensure_blas, get_blas_kind, make_constant_slot

from .simd import _flat_array

_char = ir.IntType(8)


@intrinsic
def matmul(typingctx, a, oa, b, c, oc, m, k, n):
    if not (_flat_array(a) and _flat_array(b) and _flat_array(c) and a.dtype == b.dtype == c.dtype
            and a.dtype in (types.float32, types.float64)):
        return None
    ensure_blas()
    dtype = a.dtype

    def codegen(context, builder, sig, args):
        a_, oa_, b_, c_, oc_, m_, k_, n_ = args
        intp = context.get_value_type(types.intp)
        vp = ir.IntType(8).as_pointer()

        def ptr(aty, arr, off):
            data = context.make_array(aty)(context, builder, arr).data
            return builder.bitcast(builder.gep(data, [off]), vp)
        fnty = ir.FunctionType(ir.IntType(32), [_char, _char, _char, intp, intp, intp, vp, vp,
                                                intp, vp, intp, vp, vp, intp])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
        one = builder.bitcast(make_constant_slot(context, builder, dtype, 1.0), vp)
        zero = builder.bitcast(make_constant_slot(context, builder, dtype, 0.0), vp)
        notrans = ir.Constant(_char, ord("n"))
        # column-major BLAS: c^T (n x m) = b^T (n x k) @ a^T (k x m)
        builder.call(fn, (ir.Constant(_char, ord(get_blas_kind(dtype))), notrans, notrans,
                          n_, m_, k_, one, ptr(sig.args[2], b_, ir.Constant(intp, 0)), n_,
                          ptr(sig.args[0], a_, oa_), k_, zero, ptr(sig.args[3], c_, oc_), n_))
        return context.get_dummy_value()
    return types.none(a, types.intp, b, c, types.intp, types.intp, types.intp, types.intp), codegen
