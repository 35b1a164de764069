"""Explicit 16-lane vectors for the CPU kernels, as Numba intrinsics written in LLVM IR.

Why: Numba has no vector types, and LLVM's auto-vectoriser keeps the accumulator of a gather
(``out[j] += v * W[i, j]`` over the entries i that fired) in memory, so every entry loads and
stores the whole row again, and short rows (the 36 and 6 neurons of the ECG network) also pay
the vectorised loop's set-up per entry. With a vector value that lives in a register, a gather
sums all its entries into up to four registers (64 lanes) and stores them once.

- ``Vec16``: the Numba type of 16 lanes of float32 or float64 (an LLVM <16 x float|double>).
- ``vload(a, i, n)``: lanes k < n hold a[i + k], the others 0 (a masked load, or where the
  target has none a plain load of 16 lanes inside the array and a select: nothing past the
  array's end is touched, so rows of any length work; ``MASKED_LOAD_INSTRUCTION``).
- ``vstore(a, i, n, v)``: a[i + k] = v[k] for k < n (a masked store with AVX-512; elsewhere
  a plain store of a full vector or a copy of the first n lanes; ``vload`` loads a full
  vector plainly: ``CHEAP_MASKED``).
- ``vload16(a, i)``, ``vstore16(a, i, v)``: the same for all 16 lanes, unmasked (a masked store
  cannot forward its data to a later load of the same address, which then waits).
- ``vstore16_stream(a, i, v)``: a non-temporal store of 16 lanes to a 64-byte aligned a[i]
  (``is_aligned64``): it goes to memory without first reading the line into the cache, for
  large arrays written once and read back much later. ``store_fence()`` makes such stores
  visible to other threads. ``prefetch(a, i)`` asks for the line of a[i] ahead of its use.
- ``empty64(n, dtype)``, ``zeros64(n, dtype)``: 1D work arrays that start on a 64-byte boundary.
- ``vfma(acc, s, v)``: acc + s * v for a scalar s (fast-math flags: contracted to one FMA, as
  the scalar loops are).
- ``vadd_ordered(x, y)``: x + y that LLVM may not reassociate (a running sum over a loop).
- ``lanes16(test)`` builds f(a, i): a 16-bit mask of the lanes of a[i:i + 16] where ``test``
  holds (``nonzero16``): one vector compare instead of a loop of shifts;
  ``vbits_nonzero(v)``, ``vbits_nonfinite(v)`` the same for a vector value.
- ``compress16(dst, p, src, s, w, m)``: the lanes k < w of src[s:s + 16] whose bit k of m is
  set, stored one after the other at dst[p:]. On Intel AVX-512 one ``vcompress`` store
  (``compress16_vcompress``); elsewhere a loop over the set bits (``compress16_bits``), faster
  than LLVM's expansion of the compress store without AVX-512 (a branch per lane) and than
  AMD Zen 4's microcoded one (``target.list_builder``). ``popcount(m)`` counts them.

The arithmetic per lane is the scalar code's, in the same order; fast-math may still contract
a multiply-add differently from the scalar loop (a last-bit difference).
Vectors are values for registers, locals and tuples; never put them in a list or an array
(Numba's containers do not give them the 64-byte alignment their loads assume).
"""
from __future__ import annotations

import operator

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, models, overload, register_model

from ...model.primitives import exp32, fexp, select_gt, where_gt
from .target import CODE, LIST_BUILDER

LANES = 16
_i32 = ir.IntType(32)


class Vec16(types.Type):
    def __init__(self, dtype):
        self.dtype = dtype
        super().__init__(name=f"Vec16({dtype})")


@register_model(Vec16)
class _Vec16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        elt = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(elt, LANES))


def _flat_array(a):
    return (isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
            and isinstance(a.dtype, types.Float))


def _flat_any(a):
    return isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"


def _vptr(context, builder, aty, arr, i, vty):
    data = context.make_array(aty)(context, builder, arr).data
    return builder.bitcast(builder.gep(data, [i]), vty.as_pointer())


def _splat(builder, x, vty):
    v = builder.insert_element(ir.Constant(vty, None), x, ir.Constant(_i32, 0))
    return builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_i32, LANES), [0] * LANES))


def _first(builder, n):
    """<16 x i1>: lane k < n."""
    i64 = ir.IntType(64)
    lanes = ir.Constant(ir.VectorType(i64, LANES), list(range(LANES)))
    return builder.icmp_signed("<", lanes, _splat(builder, n, ir.VectorType(i64, LANES)))


def _masked(builder, op, vty, ptr):
    suffix = f"v{LANES}f{32 if vty.element == ir.FloatType() else 64}.p0"
    mask = ir.VectorType(ir.IntType(1), LANES)
    if op == "load":
        fnty = ir.FunctionType(vty, [ptr.type, _i32, mask, vty])
    else:
        fnty = ir.FunctionType(ir.VoidType(), [vty, ptr.type, _i32, mask])
    return cgutils.get_or_insert_function(builder.module, fnty, f"llvm.masked.{op}.{suffix}")


#: whether masked loads and stores are single cheap instructions on this target (AVX-512's
#: k-masks). Without AVX-512, LLVM emits vmaskmovps/pd for them, which costs several times a
#: plain load or store (AMD microcodes the store: tens of cycles). There ``vload`` and
#: ``vstore`` move a full vector with a plain load or store, a partial load stays masked and a
#: partial store goes through a copy on the stack: a 36-wide row loop (16 + 16 + 4 lanes)
#: took 0.68 ms instead of 3.8 ms with AVX2 code on the Zen 4 (AVX-512 masked: 0.56 ms).
CHEAP_MASKED = CODE["cheap_masked"]
#: whether the target has a masked load instruction at all (AVX2: vmaskmovps/pd). NEON and
#: x86-64 without AVX have none: LLVM expands a masked load into a test, a branch and a
#: single-lane load per lane (validation/arm_codegen.py counts them). There a partial
#: ``vload`` whose 16 lanes lie inside the array loads them plainly and zeroes the lanes
#: k >= n with a select; only a load that would run past the array's end stays masked.
MASKED_LOAD_INSTRUCTION = CODE["masked_load"]


@intrinsic
def vload(typingctx, a, i, n):
    if not _flat_array(a):
        return None
    vt = Vec16(a.dtype)

    def codegen(context, builder, sig, args):
        vty = context.get_value_type(vt)
        ptr = _vptr(context, builder, sig.args[0], args[0], args[1], vty)
        size = a.dtype.bitwidth // 8
        if CHEAP_MASKED:
            return builder.call(_masked(builder, "load", vty, ptr),
                                [ptr, ir.Constant(_i32, size), _first(builder, args[2]),
                                 ir.Constant(vty, None)])
        n = args[2]
        tmp = cgutils.alloca_once(builder, vty)
        with builder.if_else(builder.icmp_signed(">=", n, ir.Constant(n.type, LANES))) \
                as (full, part):
            with full:
                builder.store(builder.load(ptr, align=size), tmp)
            with part:          # lanes k < n from a, the others 0
                _partial_load(context, builder, sig.args[0], args[0], args[1], n, ptr, vty,
                              size, tmp)
        return builder.load(tmp)
    return vt(a, types.intp, types.intp), codegen


def _partial_load(context, builder, aty, arr, i, n, ptr, vty, size, tmp):
    """tmp = lanes k < n of a[i:], the others 0 (0 < n < 16 is not required)."""
    def masked():
        return builder.call(_masked(builder, "load", vty, ptr),
                            [ptr, ir.Constant(_i32, size), _first(builder, n),
                             ir.Constant(vty, None)])
    if MASKED_LOAD_INSTRUCTION:
        builder.store(masked(), tmp)
        return
    nitems = context.make_array(aty)(context, builder, arr).nitems
    room = builder.icmp_signed("<=", builder.add(i, ir.Constant(i.type, LANES)), nitems)
    with builder.if_else(room) as (inside, at_end):
        # all 16 lanes are a's: load them, keep the first n. Lanes k >= n may belong to
        # another thread's rows and be written meanwhile; their values are never used.
        with inside:
            full = builder.load(ptr, align=size)
            builder.store(builder.select(_first(builder, n), full, ir.Constant(vty, None)),
                          tmp)
        with at_end:
            builder.store(masked(), tmp)


def _count(builder, n):
    """max(n, 0)."""
    zero = ir.Constant(n.type, 0)
    return builder.select(builder.icmp_signed(">", n, zero), n, zero)


@intrinsic
def vstore(typingctx, a, i, n, v):
    if not (_flat_array(a) and isinstance(v, Vec16) and v.dtype == a.dtype):
        return None

    def codegen(context, builder, sig, args):
        vty = context.get_value_type(v)
        ptr = _vptr(context, builder, sig.args[0], args[0], args[1], vty)
        size = a.dtype.bitwidth // 8
        if CHEAP_MASKED:
            builder.call(_masked(builder, "store", vty, ptr),
                         [args[3], ptr, ir.Constant(_i32, size), _first(builder, args[2])])
            return context.get_dummy_value()
        n = args[2]
        with builder.if_else(builder.icmp_signed(">=", n, ir.Constant(n.type, LANES))) \
                as (full, part):
            with full:
                builder.store(args[3], ptr, align=size)
            with part:          # lanes k < n, none for n <= 0
                tmp = cgutils.alloca_once(builder, vty)
                builder.store(args[3], tmp)
                cgutils.raw_memcpy(builder, ptr, tmp, _count(builder, n), size)
        return context.get_dummy_value()
    return types.none(a, types.intp, types.intp, v), codegen


@intrinsic
def store_fence(typingctx):
    """A full memory fence (mfence on x86): the non-temporal stores before it are visible to
    every thread after it."""
    def codegen(context, builder, sig, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()
    return types.none(), codegen


@intrinsic
def prefetch(typingctx, a, i):
    """A hint: start bringing the cache line of a[i] into the cache (for reading). No effect on
    results; a[i] need not be valid memory."""
    if not _flat_any(a):
        return None

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        ptr = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(8).as_pointer())
        f = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [ptr.type, _i32, _i32, _i32]),
            "llvm.prefetch.p0")
        builder.call(f, [ptr, ir.Constant(_i32, 0), ir.Constant(_i32, 3), ir.Constant(_i32, 1)])
        return context.get_dummy_value()
    return types.none(a, types.intp), codegen


@intrinsic
def is_aligned64(typingctx, a, i):
    """Whether &a[i] is a multiple of 64 bytes (a 1D contiguous array)."""
    if not _flat_any(a):
        return None

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        addr = builder.ptrtoint(builder.gep(data, [args[1]]), ir.IntType(64))
        low = builder.and_(addr, ir.Constant(ir.IntType(64), 63))
        return builder.icmp_unsigned("==", low, ir.Constant(ir.IntType(64), 0))
    return types.boolean(a, types.intp), codegen


@intrinsic
def vload16(typingctx, a, i):
    """All 16 lanes a[i:i + 16] (a plain load: no mask, for full vectors)."""
    if not _flat_array(a):
        return None
    vt = Vec16(a.dtype)

    def codegen(context, builder, sig, args):
        ptr = _vptr(context, builder, sig.args[0], args[0], args[1], context.get_value_type(vt))
        return builder.load(ptr, align=a.dtype.bitwidth // 8)
    return vt(a, types.intp), codegen


def _store16(stream):
    """An intrinsic f(a, i, v): a[i:i + 16] = v, a plain store, or with ``stream`` a
    non-temporal one, which needs a[i] 64-byte aligned (a fault if not)."""
    def typer(typingctx, a, i, v):
        if not (_flat_array(a) and isinstance(v, Vec16) and v.dtype == a.dtype):
            return None

        def codegen(context, builder, sig, args):
            ptr = _vptr(context, builder, sig.args[0], args[0], args[1], context.get_value_type(v))
            st = builder.store(args[2], ptr, align=64 if stream else a.dtype.bitwidth // 8)
            if stream:
                st.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(_i32, 1)]))
            return context.get_dummy_value()
        return types.none(a, types.intp, v), codegen
    return intrinsic(typer)


vstore16 = _store16(False)
vstore16_stream = _store16(True)


@intrinsic
def vfma(typingctx, acc, s, v):
    if not (isinstance(acc, Vec16) and acc == v and s == acc.dtype):
        return None

    def codegen(context, builder, sig, args):
        vty = context.get_value_type(acc)
        prod = builder.fmul(_splat(builder, args[1], vty), args[2], flags=("fast",))
        return builder.fadd(args[0], prod, flags=("fast",))
    return acc(acc, s, v), codegen


def lanes16(test):
    """An intrinsic f(a, i): bit k set where ``test`` holds for a[i + k], k < 16 (a a
    contiguous 1D float array, i + 16 <= len(a))."""
    def typer(typingctx, a, i):
        if not _flat_array(a):
            return None

        def codegen(context, builder, sig, args):
            vty = ir.VectorType(context.get_data_type(a.dtype), LANES)
            ptr = _vptr(context, builder, a, args[0], args[1], vty)
            x = builder.load(ptr, align=a.dtype.bitwidth // 8)
            bits = builder.bitcast(test(builder, x, vty), ir.IntType(LANES))
            return builder.zext(bits, ir.IntType(64))
        return types.uint64(a, types.intp), codegen
    return intrinsic(typer)


def _is_nonzero(bld, x, vty):
    """x != 0, NaN included (unordered or not equal)."""
    return bld.fcmp_unordered("!=", x, ir.Constant(vty, None))


def _is_nonfinite(bld, x, vty):
    """NaN or inf: x - x is NaN exactly then."""
    return bld.fcmp_unordered("uno", bld.fsub(x, x), bld.fsub(x, x))


nonzero16 = lanes16(_is_nonzero)


def _vbits(test):
    """An intrinsic f(v): the 16-bit mask of the lanes of the vector v where ``test`` holds."""
    def typer(typingctx, v):
        if not isinstance(v, Vec16):
            return None

        def codegen(context, builder, sig, args):
            bits = builder.bitcast(test(builder, args[0], args[0].type), ir.IntType(LANES))
            return builder.zext(bits, ir.IntType(64))
        return types.uint64(v), codegen
    return intrinsic(typer)


vbits_nonzero = _vbits(_is_nonzero)
vbits_nonfinite = _vbits(_is_nonfinite)


def _lane_suffix(elt):
    return {ir.FloatType(): "f32", ir.DoubleType(): "f64"}.get(elt, f"i{getattr(elt, 'width', 0)}")


@intrinsic
def compress16_vcompress(typingctx, dst, p, src, s, w, m):
    """dst[p:p + popcount(m)] = the lanes k < w of src[s:s + 16] whose bit k of m is set, in lane
    order (m must have no bit k >= w set); nothing else of dst is written. Any dtype, the same
    for dst and src (1D contiguous arrays). One masked load and one ``vcompress`` store on
    AVX-512; elsewhere LLVM expands the compress store into 16 tests and branches."""
    if not (_flat_any(dst) and _flat_any(src) and src.dtype == dst.dtype
            and isinstance(m, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        vty = ir.VectorType(context.get_data_type(src.dtype), LANES)
        mty = ir.VectorType(ir.IntType(1), LANES)
        sfx = f"v{LANES}{_lane_suffix(vty.element)}"
        sptr = _vptr(context, builder, sig.args[2], args[2], args[3], vty)
        load = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vty, [sptr.type, _i32, mty, vty]),
            f"llvm.masked.load.{sfx}.p0")
        v = builder.call(load, [sptr, ir.Constant(_i32, src.dtype.bitwidth // 8),
                                _first(builder, args[4]), ir.Constant(vty, None)])
        dptr = builder.gep(context.make_array(sig.args[0])(context, builder, args[0]).data,
                           [args[1]])
        bits = builder.bitcast(builder.trunc(args[5], ir.IntType(LANES)), mty)
        store = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [vty, dptr.type, mty]),
            f"llvm.masked.compressstore.{sfx}")
        builder.call(store, [v, dptr, bits])
        return context.get_dummy_value()
    return types.none(dst, types.intp, src, types.intp, types.intp, m), codegen


@intrinsic
def trailing_zeros(typingctx, x):
    """The index of the lowest set bit of a 64-bit integer (64 for 0; one instruction)."""
    if not (isinstance(x, types.Integer) and x.bitwidth == 64):
        return None

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        f = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
            i64, [i64, ir.IntType(1)]), "llvm.cttz.i64")
        return builder.call(f, [args[0], ir.Constant(ir.IntType(1), 0)])
    return types.intp(x), codegen


@njit(inline="always")
def compress16_bits(dst, p, src, s, w, m):
    """``compress16_vcompress`` as a loop over the set bits of m: one load and one store per
    entry, and one loop branch (w is implied by m: no bit k >= w is set)."""
    bits = np.uint64(m) & np.uint64(0xFFFF)
    while bits:
        dst[p] = src[s + trailing_zeros(bits)]
        p += 1
        bits &= bits - np.uint64(1)


#: the list builder of this target (``target.LIST_BUILDER``)
compress16 = compress16_vcompress if LIST_BUILDER == "vcompress" else compress16_bits


@intrinsic
def popcount(typingctx, x):
    """The number of bits set in a 64-bit integer (one instruction)."""
    if not (isinstance(x, types.Integer) and x.bitwidth == 64):
        return None

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        f = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i64]),
                                           "llvm.ctpop.i64")
        return builder.call(f, [args[0]])
    return types.intp(x), codegen


# ----------------------------------------------------------------------------------------------
# Arithmetic on vectors, so that the scalar neuron and surrogate functions of spikesim.model run
# unchanged on 16 lanes at a time: +, -, *, /, unary -, max and abs with a vector and a vector or
# a scalar of its dtype, and the primitives ``where_gt``, ``select_gt`` and ``fexp``. The
# elementwise loops of the kernels are then explicit 16-lane loops (LLVM's own vectoriser
# stopped at 8 float32 lanes on the AVX-512 machines measured: it prefers 256-bit vectors), and
# the equations exist once.
# ----------------------------------------------------------------------------------------------
def _vec_of(*tys):
    """The Vec16 type of an operation whose operands are vectors and scalars of one dtype, or
    None when none is a vector or the dtypes differ."""
    vt = next((t for t in tys if isinstance(t, Vec16)), None)
    if vt is None or any(t != vt and t != vt.dtype for t in tys):
        return None
    return vt


def _as_vec(builder, ty, val, vty):
    return val if isinstance(ty, Vec16) else _splat(builder, val, vty)


def _elementwise(build, nargs):
    """An intrinsic over ``nargs`` (1 to 4) operands, vectors or scalars broadcast, that returns
    build(builder, *lane_vectors)."""
    def typer(tys):
        vt = _vec_of(*tys)
        if vt is None:
            return None

        def codegen(context, builder, sig, args):
            vty = context.get_value_type(vt)
            return build(builder, *[_as_vec(builder, t, a, vty) for t, a in zip(sig.args, args)])
        return vt(*tys), codegen
    if nargs == 1:
        return intrinsic(lambda typingctx, x: typer((x,)))
    if nargs == 2:
        return intrinsic(lambda typingctx, x, y: typer((x, y)))
    if nargs == 3:
        return intrinsic(lambda typingctx, x, y, z: typer((x, y, z)))
    return intrinsic(lambda typingctx, x, y, z, w: typer((x, y, z, w)))


_fast = ("fast",)
_vadd = _elementwise(lambda b, x, y: b.fadd(x, y, flags=_fast), 2)
_vsub = _elementwise(lambda b, x, y: b.fsub(x, y, flags=_fast), 2)
_vmul = _elementwise(lambda b, x, y: b.fmul(x, y, flags=_fast), 2)
_vdiv = _elementwise(lambda b, x, y: b.fdiv(x, y, flags=_fast), 2)
_vneg = _elementwise(lambda b, x: b.fneg(x, flags=_fast), 1)
# x + y with the fast-math flags except reassociation, for running sums that must round as the
# sequential loop does (with it LLVM may split a sum over a loop into partial sums). An add
# without flags would get them all from Numba's fastmath pass, which fills in empty flags.
_ordered = ("nnan", "ninf", "nsz", "arcp", "contract", "afn")
vadd_ordered = _elementwise(lambda b, x, y: b.fadd(x, y, flags=_ordered), 2)
_vmax = _elementwise(lambda b, x, y: b.select(b.fcmp_ordered(">", x, y), x, y), 2)
_vabs = _elementwise(lambda b, x: b.select(b.fcmp_ordered("<", x, ir.Constant(x.type, None)),
                                           b.fneg(x), x), 1)
_vwhere_gt = _elementwise(lambda b, x, lim, p: b.select(b.fcmp_ordered(">", x, lim), p,
                                                        ir.Constant(p.type, None)), 3)


_vselect_gt = _elementwise(lambda b, x, lim, p, q: b.select(b.fcmp_ordered(">", x, lim), p, q), 4)


def _register(fn, vimpl, nargs):
    if nargs == 1:
        @overload(fn)
        def ov(x):
            if isinstance(x, Vec16):
                return lambda x: vimpl(x)
    else:
        @overload(fn)
        def ov(x, y):
            if _vec_of(x, y) is not None:
                return lambda x, y: vimpl(x, y)


for _fn, _impl, _n in ((operator.add, _vadd, 2), (operator.sub, _vsub, 2),
                       (operator.mul, _vmul, 2), (operator.truediv, _vdiv, 2),
                       (operator.neg, _vneg, 1), (max, _vmax, 2), (abs, _vabs, 1)):
    _register(_fn, _impl, _n)


def _exp_call(b, x):
    fnty = ir.FunctionType(x.type, [x.type])
    name = f"llvm.exp.v{LANES}f{32 if x.type.element == ir.FloatType() else 64}"
    return b.call(cgutils.get_or_insert_function(b.module, fnty, name), [x])


vexp = _elementwise(_exp_call, 1)       # exact exp per lane (float64 validation runs)


# The 16-lane versions of the model's target-dependent primitives, registered onto the same
# functions for the CPU target only: a select, and the surrogates' exp (float32: the model's own
# polynomial, run on the vector by the arithmetic above; float64: exact per lane).
@overload(where_gt, target="cpu", inline="always")
def _where_gt_vec(x, lim, p):
    if _vec_of(x, lim, p) is not None:
        return lambda x, lim, p: _vwhere_gt(x, lim, p)


@overload(select_gt, target="cpu", inline="always")
def _select_gt_vec(x, lim, a, b):
    if _vec_of(x, lim, a, b) is not None:
        return lambda x, lim, a, b: _vselect_gt(x, lim, a, b)


@overload(fexp, target="cpu", inline="always")
def _fexp_vec(x):
    if isinstance(x, Vec16):
        if x.dtype == types.float32:
            return exp32            # the model's function itself, typed for the vector
        return lambda x: vexp(x)


@intrinsic
def at(typingctx, a, i):
    """a[i] for a 1D contiguous array and an index known to be in range: a plain load, without
    the negative-index wraparound Numba adds for a signed index it cannot prove >= 0 (six
    instructions per entry in the gathers' inner loops)."""
    if not _flat_any(a):
        return None

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        return builder.load(builder.gep(data, [args[1]]))
    return a.dtype(a, types.intp), codegen


@njit(inline="always")
def empty64(n, dtype):
    """np.empty(n, dtype) starting on a 64-byte boundary (Numba's arrays start on 16 or 32).
    A 16-lane float32 vector at a multiple of 16 from it then lies in one cache line: a vector
    split over two lines costs two accesses, and a store of one does not forward to a later
    load (the scatters' read-modify-writes of the same row then wait)."""
    raw = np.empty(n + 16, dtype)           # (16 elements: at least 64 bytes)
    k = 0
    while not is_aligned64(raw, k):
        k += 1
    return raw[k:k + n]


@njit(inline="always")
def zeros64(n, dtype):
    """``empty64`` filled with zeros."""
    a = empty64(n, dtype)
    a[:] = 0
    return a
