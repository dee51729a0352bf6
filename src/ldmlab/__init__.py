"""ldmlab: an experiment framework for latent diffusion research."""

from ldmlab.config.resolvers import register as _register_resolvers
from ldmlab.runs.stamp import register as _register_run_stamp

__version__ = "0.1.0"
_register_run_stamp()
_register_resolvers()
