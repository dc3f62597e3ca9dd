"""Model families beyond the plain VAE, each following :mod:`pyro_vae.convention`:
the conditional VAE (:mod:`.cvae`), the semi-supervised M2 (:mod:`.m2`) and the VAE
with stacked stochastic layers (:mod:`.stacked`).

Example:
    >>> from pyro_vae.families import mlp_m2
    >>> mlp_m2((1, 28, 28), num_classes=10, latent_dim=2, hidden=[16]).num_classes
    10
"""

from .cvae import CVAE, ConditionalNormalPrior, LabelledDecoder, LabelledEncoder, mlp_cvae
from .m2 import M2, mlp_m2
from .stacked import StackedVAE, mlp_stacked_vae

__all__ = [
    "CVAE",
    "ConditionalNormalPrior",
    "LabelledEncoder",
    "LabelledDecoder",
    "mlp_cvae",
    "M2",
    "mlp_m2",
    "StackedVAE",
    "mlp_stacked_vae",
]
