"""Reading PyTorch checkpoints without PyTorch, and spikesim's own checkpoint format."""
