"""Every built-in objective, each with options other than its defaults: the grid that the
objective tests of the VAE and of the conditional VAE both run."""

ALL = [
    "elbo:num_particles=2",
    "analytic-kl:num_particles=2",
    "graph:num_particles=2",
    "stl:num_particles=2",
    "beta:b=2,of=stl",
    "beta:b=0.5,of=analytic-kl",
    "iwae:k=3,num_particles=2",
    "dreg:k=4",
    "renyi:alpha=0.3,k=4",
    "tail-adaptive:k=4",
]
