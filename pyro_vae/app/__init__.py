"""The application around the core: the only layer that knows ``Config``, names and files.

- :mod:`.config` and :mod:`.registry` (every built-in name, as plain tables);
- :mod:`.imports`: user parts named by import path (``package.module:Name``);
- a training run: :mod:`.train`, :mod:`.trainer`, :mod:`.checkpoint`, :mod:`.faults`,
  :mod:`.run_folder`, :mod:`.distributed`, :mod:`.plots`;
- the commands: :mod:`.cli`, :mod:`.evaluate`, :mod:`.compare`, :mod:`.listing`, and
  :mod:`.bench` (benchmarks, outside the core).

Nothing in :mod:`pyro_vae`'s core imports this package.
"""
