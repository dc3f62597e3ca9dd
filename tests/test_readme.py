"""The README's Python example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has a Python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert namespace["images"].shape == (16, 1, 28, 28)
    assert namespace["loc"].shape == (8, 10)


def test_readme_swapping_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (block,) = [b for b in blocks if "LaplaceWithLearnedScale" in b]
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    vae, vamp_vae = namespace["vae"], namespace["vae_with_vamp"]
    assert vae.prior().event_shape == (8,) and len(list(vae.prior.parameters())) == 1
    assert vamp_vae.prior.pseudo_inputs.shape == (50, 1, 28, 28)
    assert vamp_vae.prior.encoder is vamp_vae.encoder and len(vamp_vae.encoder.steps) == 4
