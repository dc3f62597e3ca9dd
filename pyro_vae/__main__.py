"""``python -m pyro_vae`` (and ``torchrun -m pyro_vae``) runs the command line."""

from .app.cli import run

run()
