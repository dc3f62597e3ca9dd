"""Inference objectives: one estimator per module, each a :class:`pyro.infer.ELBO`.

The command line and config files name them ``NAME[:key=value,...]``
(:mod:`pyro_vae.app.objective_specs`); from Python, build the class.

Each built-in is a :class:`pyro.infer.ELBO` with a ``differentiable_loss``, so it works
both ways: ``SVI(vae.model, vae.guide, optim, loss=objective)`` and, torch style,
``objective(vae, vae.guide_module())`` trained with ``torch.optim``. One estimator per
module, each documenting its paper and its limits:

========================  ===========================================================
``elbo``                  :mod:`.elbo` (Trace_ELBO with a VAE fast path)
``analytic-kl``           :mod:`.analytic_kl` (TraceMeanField_ELBO, fallback logged)
``graph``                 :mod:`.graph` (TraceGraph_ELBO as a differentiable loss)
``stl``                   :mod:`.stl` (sticking the landing)
``beta``                  :mod:`.beta` (beta-VAE; KL warm-up is ``--kl-warmup``)
``iwae``                  :mod:`.iwae` (importance-weighted bound per datapoint)
``dreg``                  :mod:`.dreg` (doubly reparameterized IWAE gradients)
``renyi``                 :mod:`.renyi` (variational Renyi bound)
``tail-adaptive``         :mod:`.tail_adaptive` (tail-adaptive f-divergence)
========================  ===========================================================

Example:
    >>> IWAE_ELBO(k=10).k
    10
"""

from __future__ import annotations

from .analytic_kl import AnalyticKL_ELBO
from .base import ParticleObjective
from .beta import kl_warmup_scale, scale_latents
from .dreg import DReG_ELBO
from .elbo import FastTrace_ELBO
from .graph import Graph_ELBO
from .iwae import IWAE_ELBO
from .renyi import Renyi_ELBO
from .stl import STL_ELBO
from .tail_adaptive import TailAdaptive_ELBO

__all__ = [
    "kl_warmup_scale",
    "scale_latents",
    "ParticleObjective",
    "FastTrace_ELBO",
    "AnalyticKL_ELBO",
    "Graph_ELBO",
    "STL_ELBO",
    "IWAE_ELBO",
    "DReG_ELBO",
    "Renyi_ELBO",
    "TailAdaptive_ELBO",
]
