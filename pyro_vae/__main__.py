"""``python -m pyro_vae`` (and ``torchrun -m pyro_vae``) runs the command line."""

import sys

from .app.cli import main

sys.exit(main())
