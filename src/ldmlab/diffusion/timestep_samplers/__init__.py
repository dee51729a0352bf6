"""Training timestep distributions p(t) of the diffusion objective."""
