"""spikesim: adaptive spiking recurrent networks with hand-written BPTT in Numba."""
__version__ = "0.1.0"
