"""Per-timestep weights of the diffusion training loss."""
