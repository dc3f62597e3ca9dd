"""Training speed: pyro-vae against hand-written PyTorch and Pyro's classic example pipeline.

The benchmark itself lives in :mod:`pyro_vae.app.bench` so that ``pyro-vae bench`` runs
the same code; see ``experiments/RESULTS.md`` for measured numbers.

    python experiments/bench_training.py                  # quick: both thread counts
    python experiments/bench_training.py --full --dataset fashion-mnist --threads 1
"""

from pyro_vae.app.bench import main

if __name__ == "__main__":
    main()
