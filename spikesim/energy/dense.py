"""Operations of dense recurrent networks with the layer sizes of a spiking one.

Each recurrent spiking layer becomes a recurrent cell of the same width, each feed-forward
spiking layer (and the integrator readout) a linear layer of the same width; the activations
of a dense network are never zero, so every synapse costs a multiply-accumulate at every step.
Per step, for a layer with n inputs and H units (PyTorch's cell equations, biases as there):

| cell | MAC | multiplications | additions | activations (tanh, sigmoid) |
|---|---|---|---|---|
| Elman RNN | H (n + H) | 0 | 2H | H |
| GRU | 3H (n + H) | 3H | 8H | 3H |
| LSTM | 4H (n + H) | 3H | 9H | 5H |
| linear | H n | 0 | H | H (none for the output layer) |

GRU: r, z, n gates with two biases each (6H adds), n = tanh(W x + r * (U h + b)) (H mul),
h = (1 - z) n + z h (2H mul, 2H add). LSTM: four gates with two biases each (8H adds),
c = f c + i g (2H mul, H add), h = o tanh(c) (H mul).
"""
from __future__ import annotations

CELLS = ("rnn", "gru", "lstm")
_GATES = {"rnn": 1, "gru": 3, "lstm": 4}
_ELEMENTWISE = {"rnn": (0, 2, 1), "gru": (3, 8, 3), "lstm": (3, 9, 5)}   # per unit: mul, add, act


def layer_ops(cell: str, n_in: int, H: int, recurrent: bool, last: bool) -> dict:
    """Operations per step of one dense layer: ``mac``, ``mul``, ``add``, ``act``."""
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
    if not recurrent:
        return {"mac": H * n_in, "mul": 0, "add": H, "act": 0 if last else H}
    g = _GATES[cell]
    mul, add, act = _ELEMENTWISE[cell]
    return {"mac": g * H * (n_in + H), "mul": mul * H, "add": add * H, "act": act * H}


def network_ops(cfg, cell: str, widths=None) -> dict:
    """layer name -> operations per step of the dense equivalent of ``cfg``. ``widths``:
    other widths for the hidden layers (every layer but the last), in order."""
    sizes = [l.size for l in cfg.layers]
    if widths:
        widths = list(widths)
        if len(widths) != len(sizes) - 1:
            raise ValueError(f"--dense-hidden needs {len(sizes) - 1} widths (the hidden "
                             f"layers), got {len(widths)}")
        sizes = widths + sizes[-1:]
    out, n_in = {}, cfg.n_in
    for i, (layer, H) in enumerate(zip(cfg.layers, sizes)):
        out[layer.name] = layer_ops(cell, n_in, H, layer.recurrent, i == len(sizes) - 1)
        n_in = H
    return out


def parameter_count(cfg, cell: str, widths=None) -> int:
    """Weights and biases of the dense equivalent (two bias vectors per gate, as PyTorch)."""
    sizes = [l.size for l in cfg.layers]
    if widths:
        sizes = list(widths) + sizes[-1:]
    total, n_in = 0, cfg.n_in
    for layer, H in zip(cfg.layers, sizes):
        if layer.recurrent:
            g = _GATES[cell]
            total += g * H * (n_in + H) + 2 * g * H
        else:
            total += H * n_in + H
        n_in = H
    return total
