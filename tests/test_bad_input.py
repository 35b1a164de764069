"""Bad input gets a clear ValueError/TypeError naming the problem."""
import numpy as np
import pytest

from spikesim.backends.cpu import losses
from spikesim.model.config import LayerConfig, LossConfig, NetworkConfig, SurrogateConfig
from spikesim.network import Network, initial_state


def cfg():
    return NetworkConfig(3, [LayerConfig(5, "rec"), LayerConfig(2, "integrator")],
                         LossConfig("ce_sum_softmax", 0))


@pytest.fixture
def net():
    return Network(cfg(), seed=0)


def test_wrong_ndim(net):
    with pytest.raises(ValueError, match="shape"):
        net.forward(np.zeros((4, 3), np.float32))


def test_wrong_channels(net):
    with pytest.raises(ValueError, match="channels"):
        net.forward(np.zeros((2, 5, 4), np.float32))


def test_empty(net):
    with pytest.raises(ValueError, match="empty"):
        net.forward(np.zeros((0, 5, 3), np.float32))


def test_nan_input(net):
    x = np.zeros((2, 5, 3), np.float32)
    x[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        net.forward(x)


def test_inf_input(net):
    x = np.zeros((2, 5, 3), np.float32)
    x[0, 4, 2] = -np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        net.forward(x)


def test_parameter_made_nan_after_construction_is_named(net):
    """A parameter changed in place after construction (say by a diverged update) is caught by
    name before it can make the membrane NaN."""
    net.params["layer0.W_in"][0, 0] = np.nan
    x = np.ones((2, 5, 3), np.float32)
    with pytest.raises(ValueError, match=r"parameter layer0.W_in contains NaN or inf .*\(0, 0\)"):
        net.forward(x)


def test_layer_that_produces_nan_is_named(net):
    """Finite parameters can still overflow the membrane: the forward pass names the layer
    rather than returning inf or NaN quietly."""
    net.params["layer0.W_in"][...] = 3e38
    x = np.ones((2, 5, 3), np.float32)
    with pytest.raises(ValueError, match="layer 'layer0' produced NaN or inf"):
        net.forward(x)


def test_wrong_dtype(net):
    with pytest.raises(TypeError, match="dtype"):
        net.forward(np.zeros((2, 5, 3), dtype=np.complex64))
    with pytest.raises(TypeError, match="numpy array"):
        net.forward([[[0.0] * 3] * 5] * 2)


def test_integer_and_bool_inputs_are_accepted(net):
    x = np.ones((2, 5, 3), dtype=bool)
    assert net.forward(x).output_mem.shape == (5, 2, 2)


def test_bad_state(net):
    st = initial_state(net.config, 3, np.float32)
    with pytest.raises(ValueError, match="state of layer"):
        net.forward(np.zeros((2, 5, 3), np.float32), st)
    with pytest.raises(ValueError, match="no entry"):
        net.forward(np.zeros((2, 5, 3), np.float32), {})


def test_unknown_surrogate():
    with pytest.raises(ValueError, match="unknown surrogate 'sigmoidal'"):
        SurrogateConfig("sigmoidal")
    with pytest.raises(ValueError, match="unknown surrogate"):
        LayerConfig(3, surrogate="nope")


def test_surrogate_aliases():
    assert SurrogateConfig("MG").name == "multi_gaussian"
    assert SurrogateConfig("g").name == "gaussian"


def test_unknown_loss_and_kind():
    with pytest.raises(ValueError, match="unknown loss 'mse'"):
        LossConfig("mse")
    with pytest.raises(ValueError, match="unknown layer kind 'conv'"):
        LayerConfig(3, "conv")
    with pytest.raises(ValueError, match="unknown loss"):
        losses.compute("mse", np.zeros((2, 1, 2)), np.zeros(1, int))


def test_inconsistent_config():
    with pytest.raises(ValueError, match="integrator can only be the last"):
        NetworkConfig(3, [LayerConfig(4, "integrator"), LayerConfig(2, "rec")])
    with pytest.raises(ValueError, match="reads spikes"):
        NetworkConfig(3, [LayerConfig(4, "rec"), LayerConfig(2, "integrator")],
                      LossConfig("ce_sum_spike"))
    with pytest.raises(ValueError, match="positive integer"):
        LayerConfig(0)
    with pytest.raises(ValueError, match="duplicate layer name"):
        NetworkConfig(3, [LayerConfig(4, name="a"), LayerConfig(2, name="a")])
    with pytest.raises(TypeError, match="must be a number"):
        LayerConfig(3, beta="high")
    with pytest.raises(ValueError, match="unknown network config keys"):
        NetworkConfig.from_dict({"n_in": 3, "layers": [], "lossy": {}})
    with pytest.raises(ValueError, match="unknown layer config keys"):
        NetworkConfig.from_dict({"n_in": 3, "layers": [{"size": 3, "sise": 4}]})


def test_config_round_trip():
    c = cfg()
    assert NetworkConfig.from_dict(c.to_dict()) == c


def test_params_that_do_not_match(net):
    p = dict(net.params)
    p["layer0.W_rec"] = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match="layer0.W_rec has shape"):
        Network(cfg(), params=p)
    p = dict(net.params)
    del p["layer1.tau_m"]
    with pytest.raises(ValueError, match="missing"):
        Network(cfg(), params=p)
    p = dict(net.params)
    p["layer0.tau_m"] = p["layer0.tau_m"].copy()
    p["layer0.tau_m"][0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        Network(cfg(), params=p)


def test_bad_dtype_of_network():
    with pytest.raises(TypeError, match="float32 or float64"):
        Network(cfg(), dtype=np.int32)


def test_bad_labels(net):
    tr = net.forward(np.zeros((2, 5, 3), np.float32))
    with pytest.raises(ValueError, match="labels have shape"):
        net.loss(tr, np.zeros(3, int))
    with pytest.raises(ValueError, match="labels must lie"):
        net.loss(tr, np.array([0, 2]))
    with pytest.raises(TypeError, match="integers"):
        net.loss(tr, np.array([0.0, 1.0]))


def test_loss_start_beyond_sequence():
    c = NetworkConfig(3, [LayerConfig(2, "integrator")], LossConfig("ce_sum_softmax", 10))
    n = Network(c)
    tr = n.forward(np.zeros((1, 5, 3), np.float32))
    with pytest.raises(ValueError, match="beyond the sequence length"):
        n.loss(tr, np.array([0]))


def test_bad_initial_state_mode():
    with pytest.raises(ValueError, match="unknown initial state mode"):
        initial_state(cfg(), 2, mode="ones")
    with pytest.raises(ValueError, match="needs an rng"):
        initial_state(cfg(), 2, mode="random")


def test_presets_build_with_the_official_shapes():
    from spikesim.model.config import param_shapes
    from spikesim.model.presets import PRESETS
    shapes = {name: param_shapes(f()) for name, f in PRESETS.items()}
    assert shapes["shd"]["h1.W_in"] == (128, 700) and shapes["shd"]["o.W_in"] == (20, 128)
    assert shapes["ecg"]["hidden.W_rec"] == (36, 36) and shapes["ecg"]["out.W_in"] == (6, 36)
    assert (shapes["smnist-nmi"]["r2.W_in"] == (256, 64)
            and shapes["smnist-nmi"]["o.W_in"] == (10, 256))
    for f in PRESETS.values():
        Network(f(), seed=0)        # initialises without error
