"""Environment variables the command line reads (kept apart so both sides import them cheaply)."""

# set by compare for its cells: a cell whose reader (compare) went away stops, as a process
# writing to a closed pipe does, instead of training on unseen
DIE_WITH_READER = "PYRO_VAE_DIE_WITH_READER"
