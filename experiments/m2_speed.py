"""M2's speed: a pyro-vae epoch against Pyro's ss_vae_M2-style pipeline, and a pyro-vae step
against the same loss written by hand in PyTorch.

Same data (mnist5k, statically binarized, 100 labels: 4,400 unlabelled and 100 labelled
digits) and the same network sizes (784-500 bodies, 50 latent dimensions, 10 classes) for
all three, one CPU thread:

- **pyro-vae**: ``Trainer.train_step`` of ``--model m2`` (the NaN guard included), each
  step an unlabelled batch of 128 and the 100 labelled digits, indexed from tensors.
- **Pyro's pipeline**, as ``examples/vae/ss_vae_M2.py`` and ``utils/mnist_cached.py`` run
  it: its SSVAE (Softplus MLPs, one-hot labels, the guide ``config_enumerate``-d with
  ``expand=True``), a ``DataLoader`` serving cached tensors one item at a time, and per
  step ``SVI(TraceEnum_ELBO)`` on the unlabelled batch, on the labelled batch, and the
  auxiliary ``SVI(Trace_ELBO)`` on ``model_classify``, each with its own optimizer step.
  Here it walks the same schedule as pyro-vae (an unlabelled batch and the cycled
  labelled batch per step), so both epochs process the same datapoints.
- **by hand**: the same loss as pyro-vae's (the sum over the 10 labels written out as a
  tensor dimension, the labelled ELBO, the auxiliary cross-entropy) in plain PyTorch on
  copies of the pyro-vae networks, with the same fused Adam.

Epochs alternate between the contenders (median of ``--rounds``); steps alternate step
by step (median of ``--steps``), so all see the same machine load.

    OMP_NUM_THREADS=1 python experiments/m2_speed.py --rounds 3 --steps 60
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, config_enumerate
from torch import nn
from torch.utils.data import DataLoader, Dataset

from pyro_vae.app.bench import _interleaved_medians
from pyro_vae.app.config import Config
from pyro_vae.app.m2 import build_m2
from pyro_vae.app.registry import load_dataset
from pyro_vae.app.runtime import apply_threads, make_adam
from pyro_vae.app.trainer import Trainer
from pyro_vae.data import prepare_data
from pyro_vae.guides import MAX_SCALE, MIN_SCALE
from pyro_vae.semisupervised import semi_supervised

LOG_2PI = math.log(2 * math.pi)


class CachedItems(Dataset):
    """MNISTCached's way: tensors prepared once, served one item at a time."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, classes: int):
        self.x, self.y = x.flatten(1), F.one_hot(y, classes).float()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int):
        return self.x[index], self.y[index]


def _mlp(sizes: list[int], out: nn.Module | None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.Softplus())
    return nn.Sequential(*layers, *([out] if out is not None else []))


class PyroSSVAE(nn.Module):
    """Pyro's examples/vae/ss_vae_M2.py SSVAE at the same sizes (its MLP helper inlined)."""

    def __init__(self, classes=10, pixels=784, z_dim=50, hidden=500, aux=46.0):
        super().__init__()
        self.classes, self.z_dim, self.aux = classes, z_dim, aux
        self.encoder_y = _mlp([pixels, hidden, classes], nn.Softmax(-1))
        self.encoder_z = _mlp([pixels + classes, hidden, 2 * z_dim], None)
        self.decoder = _mlp([z_dim + classes, hidden, pixels], nn.Sigmoid())

    def model(self, xs, ys=None):
        pyro.module("ss_vae", self)
        batch = xs.size(0)
        with pyro.plate("data"):
            zs = pyro.sample("z", dist.Normal(xs.new_zeros(batch, self.z_dim), 1).to_event(1))
            prior = xs.new_ones(batch, self.classes) / self.classes
            ys = pyro.sample("y", dist.OneHotCategorical(prior), obs=ys)
            shape = torch.broadcast_shapes(zs.shape[:-1], ys.shape[:-1])
            loc = self.decoder(torch.cat([zs.expand(*shape, -1), ys.expand(*shape, -1)], -1))
            pyro.sample("x", dist.Bernoulli(loc, validate_args=False).to_event(1), obs=xs)

    def guide(self, xs, ys=None):
        with pyro.plate("data"):
            if ys is None:
                ys = pyro.sample("y", dist.OneHotCategorical(self.encoder_y(xs)))
            inputs = torch.cat([xs.expand(*ys.shape[:-1], -1), ys], -1)
            loc, raw = self.encoder_z(inputs).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, raw.exp()).to_event(1))

    def model_classify(self, xs, ys=None):
        pyro.module("ss_vae", self)
        with pyro.plate("data"), pyro.poutine.scale(scale=self.aux):
            pyro.sample("y_aux", dist.OneHotCategorical(self.encoder_y(xs)), obs=ys)

    def guide_classify(self, xs, ys=None):
        pass


def cycled(loader: DataLoader):
    while True:
        yield from loader


def pyro_pipeline(data, seed: int, batch_size: int, z_dim: int, hidden: int, aux: float = 46.0):
    """(one epoch's runner, the SSVAE) of Pyro's pipeline over the same data and schedule."""
    torch.manual_seed(seed)
    pyro.clear_param_store()
    ssvae = PyroSSVAE(classes=data.num_classes, z_dim=z_dim, hidden=hidden, aux=aux)
    optimizer = pyro.optim.Adam({"lr": 1e-3})
    guide = config_enumerate(ssvae.guide, "parallel", expand=True)
    enum = SVI(
        ssvae.model,
        guide,
        optimizer,
        TraceEnum_ELBO(max_plate_nesting=1, strict_enumeration_warning=False),
    )
    aux = SVI(ssvae.model_classify, ssvae.guide_classify, optimizer, Trace_ELBO())
    x, y = data.train, data.y_train.long()
    classes = data.num_classes
    unlabelled_set = CachedItems(x[data.unlabelled], y[data.unlabelled].clamp(min=0), classes)
    unlabelled = DataLoader(unlabelled_set, batch_size=batch_size, shuffle=True, drop_last=True)
    labelled_set = CachedItems(x[data.labelled], y[data.labelled], classes)
    labelled = cycled(DataLoader(labelled_set, batch_size=min(batch_size, len(labelled_set)),
                                 shuffle=True, drop_last=True))  # fmt: skip

    def epoch() -> None:
        for xs, _ in unlabelled:
            enum.step(xs)
            xl, yl = next(labelled)
            enum.step(xl, yl)
            aux.step(xl, yl)

    return epoch, ssvae


def handwritten(m2, num_unlabelled: int, num_labelled: int, aux_loss: float, split):
    """pyro-vae's M2 loss and step in plain PyTorch, on copies of its networks."""
    classifier = copy.deepcopy(m2.classifier)
    body, label, head = (copy.deepcopy(m) for m in (m2.encoder.body, m2.encoder.label,
                                                     m2.encoder.head))  # fmt: skip
    decoder = copy.deepcopy(m2.decoder.network)
    modules = [classifier, body, label, head, decoder]
    optimizer = make_adam([p for m in modules for p in m.parameters()], lr=1e-3)
    classes, total = m2.num_classes, num_unlabelled + num_labelled
    eye = torch.eye(classes)

    def terms(x, onehot, labels_embedded):
        hidden = torch.relu(body(x) + labels_embedded)
        loc, raw = head(hidden).chunk(2, -1)
        scale = F.softplus(raw).clamp(max=MAX_SCALE) + MIN_SCALE
        eps = torch.randn_like(loc)
        z = loc + scale * eps
        logits = decoder(torch.cat([z, onehot.expand(*z.shape[:-1], -1)], -1))
        target = x.flatten(1).expand_as(logits)
        log_lik = -F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)
        d = z.shape[-1]
        log_prior = -0.5 * (z * z).sum(-1) - 0.5 * d * LOG_2PI
        log_q = (-0.5 * eps * eps - scale.log()).sum(-1) - 0.5 * d * LOG_2PI
        return log_lik - math.log(classes) + log_prior - log_q

    def step(x, y):
        b_u = split[0]
        x_u, x_l, y_l = x[:b_u], x[b_u:], y[b_u:]
        per_label = terms(x_u, eye[:, None], label.weight[:, None])  # [classes, batch]
        log_qy = torch.log_softmax(classifier(x_u), -1).T
        unlabelled = (log_qy.exp() * (per_label - log_qy)).sum(0).sum()
        labelled = terms(x_l, eye[y_l], label(y_l)).sum()
        cross_entropy = F.cross_entropy(classifier(x_l), y_l, reduction="sum")
        loss = -(unlabelled * num_unlabelled / len(x_u) + labelled * num_labelled / len(x_l))
        loss = loss + aux_loss * total / len(x_l) * cross_entropy
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="epochs per contender")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per contender")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--latent-dim", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=500)
    args = parser.parse_args(argv)
    apply_threads(1)
    cfg = Config(model="m2", dataset="mnist5k", labels="100", latent_dim=args.latent_dim,
                 hidden=[args.hidden], batch_size=args.batch_size, binarize="static",
                 threads=1)  # fmt: skip
    dataset = load_dataset("mnist5k")
    data = prepare_data(dataset, "binary", "bernoulli", "static", 0)
    data = semi_supervised(data, 100, 0, 10)
    torch.manual_seed(0)
    trainer = Trainer(cfg, build_m2(cfg, data.data_shape, 10), data)
    split = data.step_sizes(args.batch_size)
    by_hand = handwritten(trainer.model, data.num_unlabelled, data.num_labelled, cfg.aux_loss,
                          split)  # fmt: skip
    x, y = data.train, data.y_train.long()
    batches = data.batch_indices(0, args.batch_size)

    def pyro_vae_epoch() -> None:
        for index in batches:
            trainer.train_step(x[index], 1.0, y[index])

    epochs = {
        "pyro-vae": pyro_vae_epoch,
        "Pyro ss_vae_M2 pipeline": pyro_pipeline(
            data, 0, args.batch_size, args.latent_dim, args.hidden
        )[0],
    }
    times: dict[str, list[float]] = {name: [] for name in epochs}
    for _ in range(args.rounds):
        for name, run in epochs.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"epoch: {len(batches)} steps of {split[0]} unlabelled + {split[1]} labelled digits, "
          f"median of {args.rounds}")  # fmt: skip
    for name, seconds in median.items():
        print(f"  {name:<28} {seconds:7.2f} s/epoch  ({times[name]})")
    ratio = median["Pyro ss_vae_M2 pipeline"] / median["pyro-vae"]
    print(f"  Pyro's pipeline / pyro-vae: {ratio:.2f}x")

    step_batches = [(x[index], y[index]) for index in batches]
    contenders = {
        "pyro-vae": lambda b: trainer.train_step(b[0], 1.0, b[1]),
        "by hand": lambda b: by_hand(*b),
    }
    medians = _interleaved_medians(contenders, step_batches, args.steps, 5, torch.device("cpu"))
    print(f"step (median of {args.steps}, alternating):")
    for name, seconds in medians.items():
        print(f"  {name:<28} {1e3 * seconds:7.1f} ms/step")
    print(f"  pyro-vae / by hand: {medians['pyro-vae'] / medians['by hand']:.3f}")
    return {"epoch_seconds": median, "step_seconds": medians}


if __name__ == "__main__":
    main()
