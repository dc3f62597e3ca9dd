"""Model families beyond the plain VAE, each following :mod:`pyro_vae.convention`:
the conditional VAE (:mod:`.cvae`).
"""

from .cvae import CVAE, ConditionalNormalPrior, LabelledDecoder, LabelledEncoder, mlp_cvae

__all__ = [
    "CVAE",
    "ConditionalNormalPrior",
    "LabelledEncoder",
    "LabelledDecoder",
    "mlp_cvae",
]
