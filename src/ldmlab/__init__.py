"""ldmlab: an experiment framework for latent diffusion research."""

__version__ = "0.1.0"
