"""Every scalar equation of ``spikesim.model`` compiles for the CUDA target, in float32 and
float64, with ``numba.cuda.compile_ptx`` (no GPU needed), and the compiled primitives pick the
same implementation per type as on the CPU. Skips where the optional numba-cuda is absent."""
import numpy as np
import pytest

pytest.importorskip("numba.cuda")
from numba import njit, typeof, types  # noqa: E402

from spikesim.backends.cuda import compile_equation  # noqa: E402
from spikesim.model import neurons, primitives, surrogates  # noqa: E402
from spikesim.model.config import SurrogateConfig  # noqa: E402

try:    # compile_ptx needs NVVM and NVRTC (the "cu13" wheels of numba-cuda[cu13])
    compile_equation(primitives.exp, [types.float64])
except Exception as e:  # pragma: no cover - depends on the installation
    pytest.skip(f"numba-cuda cannot compile PTX here: {e}", allow_module_level=True)

SCALAR = {   # equation -> number of float arguments
    neurons.adapt_step: 4, neurons.alif_step: 11, neurons.alif_step_backward: 18,
    neurons.integrator_step: 4, neurons.integrator_step_backward: 7, neurons.threshold: 3,
    neurons.spike_argument: 4, neurons.decay: 2, neurons.tau_gradient: 4,
    primitives.where_gt: 3, primitives.fexp: 1, primitives.exp: 1,
}
WITH_SURROGATE = [surrogates.heaviside, surrogates.smooth_spike, surrogates.sg_multi_gaussian,
                  surrogates.sg_gaussian, surrogates.sg_linear, surrogates.sg_slayer,
                  surrogates.sg_smooth]


def _name(fn):
    return getattr(fn, "__name__", None) or fn.py_func.__name__


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fn", list(SCALAR), ids=_name)
def test_scalar_equation_compiles_to_ptx(fn, dtype):
    ty = typeof(dtype(1.0))
    ptx, resty = compile_equation(fn, [ty] * SCALAR[fn])
    assert ".visible .func" in ptx
    leaves = resty.types if isinstance(resty, types.BaseTuple) else (resty,)
    assert all(t == ty for t in leaves), (resty, ty)      # no promotion to float64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fn", WITH_SURROGATE, ids=_name)
def test_spike_and_surrogate_compile_to_ptx(fn, dtype):
    ty = typeof(dtype(1.0))
    for name in surrogates.CODES:
        sp = surrogates.surrogate_consts(SurrogateConfig(name), dtype)
        ptx, resty = compile_equation(fn, [ty, typeof(sp)])
        assert resty == ty, (name, resty)


def test_float32_surrogate_exp_is_the_polynomial_on_both_targets():
    """fexp in float32 is the model's polynomial: straight-line multiply-adds, a max and a
    select (no exp, no branch); in float64 libdevice's exp (its exponent built by a shift)."""
    ptx32, _ = compile_equation(primitives.fexp, [types.float32])
    ptx64, _ = compile_equation(primitives.fexp, [types.float64])
    assert "fma.rn.f32" in ptx32 and "max.f32" in ptx32 and "selp.f32" in ptx32
    assert "ex2" not in ptx32 and "bra" not in ptx32
    assert "fma.rn.f64" in ptx64 and "shl.b32" in ptx64
    f = njit(lambda x: primitives.fexp(x))
    x = np.float32(-3.0)
    assert f(x) == primitives.exp32(x)          # the CPU compiles the same polynomial
    assert abs(f(x) - np.exp(-3.0)) < 1e-5 * np.exp(-3.0)


def test_a_non_float_argument_does_not_compile():
    """The check can fail: the primitives are typed for floats only."""
    from numba.core.errors import TypingError
    with pytest.raises(TypingError):
        compile_equation(primitives.where_gt, [types.int64] * 3)
