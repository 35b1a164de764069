"""Operation and energy accounting: what a spiking network does on real data, what dense
recurrent networks of the same sizes would do, and what each costs under a per-operation
energy table (docs/energy.md).

- ``counts``: spikes, synaptic accumulates and multiply-accumulates, and neuron updates of a
  network, measured over a data set from the backend's own sparse lists;
- ``dense``: the operations of an Elman RNN, a GRU and an LSTM with the same layer sizes;
- ``costs``: the energy per operation (45 nm, Horowitz 2014, by default), overridable;
- ``report``: energies, ratios, the conventions of sinabs and NeuroBench, tables, JSON, plot.
"""
