"""Stage-1 latent regularisers: KL (Gaussian posterior) and VQ (codebook)."""

from ldmlab.autoencoder.regularizers.base import Regularizer, RegularizerOutput
from ldmlab.autoencoder.regularizers.kl import KLRegularizer
from ldmlab.autoencoder.regularizers.vq import VectorQuantizer

__all__ = ["KLRegularizer", "Regularizer", "RegularizerOutput", "VectorQuantizer"]
