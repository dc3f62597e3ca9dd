"""Run configuration: one flat dataclass that round-trips through TOML and CLI flags.

Every field carries its help text, its valid choices or range, and the section it
is written under, so the TOML file, the ``pyro-vae train`` flags and the
validation all come from one place.

Example:
    >>> cfg = Config(epochs=3, latent_dim=2)
    >>> Config.from_toml_text(cfg.to_toml()) == cfg
    True
    >>> cfg.replace(prior="no-such-prior")
    Traceback (most recent call last):
    ...
    pyro_vae.errors.ConfigError: prior: unknown name 'no-such-prior'; valid choices: ...
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["Config", "SECTIONS", "check_config_argument", "check_count"]

SECTIONS = ("data", "model", "training", "evaluation", "output")
RUN_HEADER = "# pyro-vae run configuration"  # the first line of every config.toml a run writes
# What a key added since means in a run saved without it: the behaviour of the versions that
# wrote it (their checkpoints hold no standardization), so old runs load, evaluate and
# resume as they trained; a new config gets the field's default.
OLD_RUN_DEFAULTS: dict[str, Any] = {"standardize": False}


def _choices(table: str) -> Callable[[], list[str]]:
    """Names of a registry table, imported lazily so that config.py imports nothing heavy."""

    def names() -> list[str]:
        from . import registry

        return sorted(getattr(registry, table))

    return names


def _check_objective(spec: str) -> None:
    from .objective_specs import parse_objective

    parse_objective(spec)


def _check_labels(value: str) -> None:
    from ..semisupervised import parse_labels

    parse_labels(value)


def _option(
    default: Any,
    help: str,
    section: str,
    *,
    choices: Callable[[], Iterable[str]] | Iterable[str] | None = None,
    import_path: bool = False,
    minimum: float | None = None,
    exclusive_minimum: bool = False,
    maximum: float | None = None,
    check: Callable[[Any], None] | None = None,
) -> Any:
    meta = {
        "help": help,
        "section": section,
        "choices": choices,
        "import_path": import_path,
        "minimum": minimum,
        "exclusive_minimum": exclusive_minimum,
        "maximum": maximum,
        "check": check,
    }
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Config:
    """Everything that defines a run. Unknown keys, wrong types and bad names raise ConfigError."""

    # data
    dataset: str = _option(
        "mnist",
        "dataset name (see `pyro-vae list`) or a path to your own .npz file",
        "data",
        check=lambda v: _check_dataset(v),
    )
    data_dir: str = _option(
        "", "folder holding (or receiving) downloaded datasets; default ~/.cache/pyro-vae", "data"
    )
    binarize: str = _option(
        "auto",
        "dynamic: fresh Bernoulli draw each epoch; static: one seeded draw; none; "
        "auto: dynamic for binary likelihoods, none otherwise",
        "data",
        choices=("auto", "dynamic", "static", "none"),
    )
    labels: str = _option(
        "auto",
        "m2: training labels kept, of those given (y = -1 marks an unlabelled datapoint): a "
        "count (spread evenly over the classes, drawn by seed), all, or auto (all when some "
        "training datapoints are unlabelled, else 100); the rest are unlabelled",
        "data",
        check=lambda v: _check_labels(v),
    )
    # model
    network: str = _option("mlp", "encoder/decoder networks", "model", choices=_choices("NETWORKS"))
    hidden: list[int] = _option(
        [400], "hidden layer sizes of the MLP networks", "model", minimum=1, maximum=16_384
    )
    activation: str = _option(
        "relu",
        "relu, softplus or tanh: units of the encoder and decoder networks' hidden layers "
        "(next to x; the classifier's too for m2); softplus is Pyro's VAE example's, tanh "
        "Burda et al.'s",
        "model",
        choices=_choices("ACTIVATIONS"),
    )
    latent_dim: int | list[int] = _option(
        10,
        "dimension of the latent code z; with --model vae, several numbers stack stochastic "
        "layers, bottom (next to x) first: 100 50 is the model z2 -> z1 -> x with the guide "
        "x -> z1 -> z2",
        "model",
        minimum=1,
        maximum=4096,
    )
    latent_hidden: list[int] = _option(
        [100, 100],
        "stacked layers (several --latent-dim): hidden sizes of the MLPs of p(z_l|z_l+1) and "
        "q(z_l+1|z_l)",
        "model",
        minimum=1,
        maximum=16_384,
    )
    latent_activation: str = _option(
        "relu",
        "relu, softplus or tanh: stacked layers' units in the MLPs of p(z_l|z_l+1) and "
        "q(z_l+1|z_l) (tanh is Burda et al.'s; it keeps the top layer in use, see "
        "experiments/RESULTS.md)",
        "model",
        choices=_choices("ACTIVATIONS"),
    )
    model: str = _option(
        "vae",
        "the model: vae (built from the parts below) or your own, package.module:Name, a "
        "class or function returning an nn.Module with model()/guide() (see README)",
        "model",
        choices=_choices("MODELS"),
        import_path=True,
    )
    model_args: dict = _option({}, "keyword arguments of a model given by import path", "model")
    num_classes: int = _option(
        0,
        "classes of the labels y for a model that takes them (cvae; a factory's num_classes); "
        "0: from the data's labels",
        "model",
        minimum=0,
        maximum=100_000,
    )
    conditional_prior: bool = _option(
        False,
        "cvae: a learned prior p(z|y) (a small network of the label) instead of --prior",
        "model",
    )
    prior: str = _option(
        "standard-normal",
        "prior p(z): a built-in name or package.module:Name",
        "model",
        choices=_choices("PRIORS"),
        import_path=True,
    )
    prior_args: dict = _option({}, "keyword arguments of a prior given by import path", "model")
    likelihood: str = _option(
        "bernoulli",
        "likelihood p(x|z): a built-in name or package.module:Name",
        "model",
        choices=_choices("LIKELIHOODS"),
        import_path=True,
    )
    likelihood_args: dict = _option(
        {}, "keyword arguments of a likelihood given by import path", "model"
    )
    guide: str = _option(
        "normal",
        "guide q(z|x): a built-in name or package.module:Name",
        "model",
        choices=_choices("GUIDES"),
        import_path=True,
    )
    guide_args: dict = _option({}, "keyword arguments of a guide given by import path", "model")
    encoder_mask: bool = _option(
        False,
        "data with missing entries: the encoder also sees the mask of observed entries, as "
        "extra input channels (missing entries enter it as 0 either way); vae and cvae",
        "model",
    )
    prior_components: int = _option(
        10,
        "K: components of the mog prior, pseudo-inputs of the vamp prior",
        "model",
        minimum=1,
        maximum=10_000,
    )
    prior_flow: str = _option(
        "affine-autoregressive",
        "transform of the flow prior",
        "model",
        choices=("affine-autoregressive", "spline-coupling"),
    )
    prior_flow_depth: int = _option(
        2, "transform steps of the flow prior", "model", minimum=1, maximum=64
    )
    prior_df: float = _option(
        3.0, "degrees of freedom of the student-t prior", "model", minimum=0, exclusive_minimum=True
    )
    likelihood_scale: str = _option(
        "learned",
        "gaussian/laplace scale: fixed, learned (one scalar) or per-pixel (learned)",
        "model",
        choices=("fixed", "learned", "per-pixel"),
    )
    likelihood_scale_value: float = _option(
        0.0,
        "gaussian/laplace scale if fixed, else where the learned scale starts; 0: the "
        "standard deviation of the training data (per pixel with per-pixel; a run's "
        "config.toml records a fixed one's value)",
        "model",
        minimum=0.0,
        check=lambda v: _check_scale_value(v),
    )
    standardize: bool = _option(
        True,
        "gaussian/laplace on a table ([N, D] data; images keep their pixels' shared unit): "
        "the built-in encoder sees each feature standardized by its training mean and "
        "standard deviation, and the likelihood decodes in those units (still a density of x "
        "in the data's own units), so the columns' units do not matter; likelihood_scale_value "
        "is then in standard deviations of each feature. A run saved before this key existed "
        "loads with false",
        "model",
    )
    guide_flow_depth: int = _option(
        2, "inverse autoregressive flow steps of the iaf guide", "model", minimum=1, maximum=64
    )
    # training
    objective: str = _option(
        "elbo",
        "inference objective, NAME[:key=value,...] (see `pyro-vae list`)",
        "training",
        check=_check_objective,
    )
    kl_warmup: int = _option(
        0,
        "KL warm-up: the KL weight rises linearly from 0 in the first epoch to 1 after this "
        "many epochs (0: off; ELBO-type objectives only)",
        "training",
        minimum=0,
    )
    aux_loss: float = _option(
        100.0,
        "m2: weight a of the classification loss -log q(y|x) on labelled data: a times the "
        "labelled data's mean -log q(y|x) against the mean ELBO of a datapoint, i.e. each "
        "labelled datapoint adds a N / N_labelled times it. a = 0.1 is the paper's alpha = 0.1 N "
        "and Pyro's ss_vae_M2 -alm 46 is a = 46 N_labelled / N; 100 was measured best on "
        "mnist5k with 100 labels (experiments/RESULTS.md); 0: off",
        "training",
        minimum=0,
    )
    eval_k: int = _option(
        1000,
        "importance samples per datapoint for the log p(x) estimate (pyro-vae evaluate, "
        "compare); 5000 for numbers to set beside the literature's",
        "evaluation",
        minimum=1,
    )
    epochs: int = _option(30, "passes over the training set", "training", minimum=1)
    batch_size: int = _option(
        0,
        "minibatch size; 0: 128, or a tenth of the training datapoints when they are fewer "
        "than 1,280 (about ten steps an epoch), recorded in config.toml",
        "training",
        minimum=0,
    )
    lr: float = _option(1e-3, "Adam learning rate", "training", minimum=0, exclusive_minimum=True)
    weight_decay: float = _option(
        0.0,
        "decoupled weight decay of every parameter (AdamW: each step multiplies a weight by "
        "1 - lr * weight_decay); 0: plain Adam",
        "training",
        minimum=0,
    )
    seed: int = _option(
        0,
        "random seed: same seed, same device, same numbers",
        "training",
        minimum=0,
        maximum=2**63 - 1,
    )
    device: str = _option(
        "auto", "auto picks cuda when available", "training", choices=("auto", "cpu", "cuda")
    )
    threads: int = _option(
        1,
        "CPU threads of torch's operators (0: torch's own default, one per core, or "
        "OMP_NUM_THREADS); 1 suits a small or shared machine, where threads that wait for busy "
        "cores slowed an epoch 3-30x (RESULTS.md)",
        "training",
        minimum=0,
    )
    validation: str = _option(
        "first-step",
        "Pyro/torch argument validation: first-step (then off; the data were checked against "
        "the likelihood's support before training) or every-step (slower)",
        "training",
        choices=("first-step", "every-step"),
    )
    on_nan: str = _option(
        "recover",
        "on a non-finite loss, gradient, parameter or optimizer state: recover (restore the "
        "last good state, halve the learning rate, at most 3 times), stop, or off (no check, "
        "no per-step host sync)",
        "training",
        choices=("recover", "stop", "off"),
    )
    clip_grad: float = _option(
        0.0, "clip the gradient norm to this value (0: no clipping)", "training", minimum=0
    )
    checkpoint_every: int = _option(
        0, "also checkpoint every N steps (0: at the end of each epoch only)", "training", minimum=0
    )
    dist_timeout: float = _option(
        300.0,
        "seconds a distributed rank waits for its peers before stopping with an error",
        "training",
        minimum=0,
        exclusive_minimum=True,
    )
    # output
    out: str = _option("", "run folder; default runs/<timestamp>", "output")

    def __post_init__(self) -> None:
        for name in PATH_KEYS:  # `~/runs/x` in a file or from Python, as a shell expands it
            value = getattr(self, name)
            if isinstance(value, str) and value.startswith("~"):
                object.__setattr__(self, name, str(Path(value).expanduser()))
        for f in fields(self):
            _validate(f, getattr(self, f.name))
            if f.type == "float":  # `lr = 1` in TOML is an int; store it as the float it means
                object.__setattr__(self, f.name, float(getattr(self, f.name)))
        _check_kl_warmup(self.objective, self.kl_warmup)
        _check_layers(self)
        _check_conditional(self.model, self.prior, self.conditional_prior)
        _check_part_args(self)
        if self.encoder_mask and self.model not in ("vae", "cvae"):
            raise ConfigError(
                f"encoder_mask: only the built-in vae and cvae encoders can take the mask of "
                f"observed entries, not model {self.model!r}; set encoder_mask = false"
            )

    @property
    def latent_dims(self) -> tuple[int, ...]:
        """The widths of the stochastic layers, bottom first (one for a plain VAE)."""
        dims = self.latent_dim
        return tuple(dims) if isinstance(dims, list) else (dims,)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_dict(
        cls, values: Mapping[str, Any], *, saved: bool = False, from_run: bool = False
    ) -> Config:
        """Build a config from a flat or sectioned mapping, rejecting unknown keys.

        ``saved``: the config of an existing run, whose ``*_args`` for a built-in part
        (ignored by the versions that wrote it, refused since) are dropped, so the run
        still loads as it trained. ``saved`` or ``from_run`` (a run's config.toml given
        to ``--config``): a key the run's version did not write yet takes the value of
        :data:`OLD_RUN_DEFAULTS` (the behaviour it trained with), not the field's default.

        Example:
            >>> Config.from_dict({"likelihood": "gaussian"}, from_run=True).standardize
            False
        """
        flat: dict[str, Any] = {}
        for key, value in values.items():
            if key in SECTIONS and isinstance(value, Mapping):
                flat.update(value)
            else:
                flat[key] = value
        if saved:
            flat = _without_ignored_part_args(flat)
        if saved or from_run:
            flat = {**OLD_RUN_DEFAULTS, **flat}
        return cls(**flat)  # an unknown key: ConfigError from __init__ (_refusing_unknown_keys)

    @classmethod
    def from_toml_text(cls, text: str, source: str = "<string>", *, saved: bool = False) -> Config:
        """The config in TOML ``text``; ``saved`` as in :meth:`from_dict`, whose ``from_run``
        is the header a run's ``config.toml`` starts with (so that ``pyro-vae train --config
        runs/X/config.toml`` reruns an older run as it trained)."""
        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{source}: not valid TOML ({err}); fix the syntax") from None
        return cls.from_dict(values, saved=saved, from_run=text.startswith(RUN_HEADER))

    @classmethod
    def from_file(cls, path: str | Path, *, saved: bool = False) -> Config:
        """The config in TOML file ``path``; ``saved`` as in :meth:`from_dict`."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")  # a BOM (Windows editors) is not TOML
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist; check the path") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"config file {path} cannot be read ({err})") from None
        return cls.from_toml_text(text, source=str(path), saved=saved)

    def replace(self, **changes: Any) -> Config:
        """A copy with some fields changed (validated like any other config; an unknown key
        is refused by ``__init__``, which ``dataclasses.replace`` calls)."""
        return dataclasses.replace(self, **changes)

    # -- output -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _copy(getattr(self, f.name)) for f in fields(self)}

    def to_toml(self, model_from_python: str = "") -> str:
        """The config as TOML, one section per concern, every key written out; the header
        says when the run's model (class ``model_from_python``) was passed from Python."""
        lines = [RUN_HEADER + ": `pyro-vae train --config THIS_FILE` reruns it"]
        if model_from_python:
            lines = [
                "# pyro-vae run configuration of a model passed from Python "
                f"({model_from_python}):",
                "# its data and training settings; the [model] keys were not read (they name a",
                "# built-in model, not that one), so `pyro-vae train --config` refuses this file",
                "# (rerun from your script)",
            ]
        for section in SECTIONS:
            lines += ["", f"[{section}]"]
            for f in fields(self):
                if f.metadata["section"] == section:
                    lines.append(f"{f.name} = {_toml_value(getattr(self, f.name))}")
        return "\n".join(lines) + "\n"

    # -- introspection for the CLI -------------------------------------------------------------

    @staticmethod
    def describe() -> list[tuple[str, Any, str]]:
        """(name, default, help) for every field, in declaration order."""
        out = []
        for f in fields(Config):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            out.append((f.name, default, f.metadata["help"]))
        return out


def _refusing_unknown_keys(init: Callable[..., None]) -> Callable[..., None]:
    """The dataclass ``__init__``, with unknown keywords a ConfigError naming the closest
    keys (Python's TypeError named the key alone, not the valid ones)."""

    def __init__(self: Config, *args: Any, **kwargs: Any) -> None:
        known = {f.name for f in fields(Config)}
        if unknown := sorted(set(kwargs) - known):
            close = {k: difflib.get_close_matches(k, sorted(known), n=1) for k in unknown}
            hints = [f"{k!r} (did you mean {c[0]!r}?)" if c else repr(k) for k, c in close.items()]
            raise ConfigError(
                f"unknown config key(s) {', '.join(hints)}; valid keys: {', '.join(sorted(known))}"
            )
        init(self, *args, **kwargs)

    __init__.__doc__, __init__.__wrapped__ = init.__doc__, init
    return __init__


Config.__init__ = _refusing_unknown_keys(Config.__init__)  # type: ignore[method-assign]


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return list(value) if isinstance(value, list) else value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        # TOML basic strings may not hold control characters: write them as \uXXXX escapes
        escaped = "".join(
            f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in escaped
        )
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _toml_key(key: str) -> str:
    """A bare TOML key where TOML allows one (ASCII letters, digits, _ and -), else quoted."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)


def _type_name(tp: Any) -> str:
    return tp if isinstance(tp, str) else tp.__name__


def _validate(f: dataclasses.Field, value: Any) -> None:
    """Check one field's type, range and choices; raise ConfigError naming the key."""
    expected = f.type if isinstance(f.type, str) else _type_name(f.type)
    name = f.name

    def bad_type() -> ConfigError:
        return ConfigError(
            f"{name}: expected {expected}, got {type(value).__name__} {value!r}; "
            f"example: {name} = {_toml_value(_default_of(f))}"
        )

    if expected == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_type()
    elif expected == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad_type()
        if not math.isfinite(value):
            raise ConfigError(f"{name}: must be a finite number, got {value!r}")
    elif expected == "str":
        if not isinstance(value, str):
            raise bad_type()
    elif expected == "bool":
        if not isinstance(value, bool):
            raise bad_type()
    elif expected == "dict":
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise bad_type()
        try:
            _toml_value(value)
        except TypeError:
            raise ConfigError(
                f"{name}: values must be numbers, strings, booleans, lists or tables; got {value!r}"
            ) from None
    elif expected == "list[int]":
        if not isinstance(value, list) or not value:
            raise bad_type()
        if any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise bad_type()
    elif expected == "int | list[int]":
        items = value if isinstance(value, list) else [value]
        if not items or any(isinstance(v, bool) or not isinstance(v, int) for v in items):
            raise ConfigError(
                f"{name}: expected an integer or a list of integers (one per stochastic layer, "
                f"bottom first), got {type(value).__name__} {value!r}; example: {name} = 10 or "
                f"{name} = [100, 50]"
            )

    minimum = f.metadata["minimum"]
    if minimum is not None:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if item != item or (
                item <= minimum if f.metadata["exclusive_minimum"] else item < minimum
            ):
                relation = ">" if f.metadata["exclusive_minimum"] else ">="
                raise ConfigError(
                    f"{name}: must be {relation} {minimum}, got {value!r}; "
                    f"default is {_toml_value(_default_of(f))}"
                )

    maximum = f.metadata["maximum"]
    items = value if isinstance(value, list) else [value]
    if maximum is not None and any(item > maximum for item in items):
        raise ConfigError(f"{name}: must be <= {maximum}, got {value!r}")

    choices = f.metadata["choices"]
    if f.metadata["import_path"] and isinstance(value, str) and ":" in value:
        from .imports import check_import_path

        _refuse_options_after_a_built_in(name, value)
        check_import_path(value, name)
    elif choices is not None:
        valid = list(choices() if callable(choices) else choices)
        if value not in valid:
            also = ", or package.module:Name" if f.metadata["import_path"] else ""
            raise ConfigError(
                f"{name}: unknown name {value!r}; valid choices: {', '.join(valid)}{also}"
            )

    check = f.metadata["check"]
    if check is not None:
        check(value)


def _refuse_options_after_a_built_in(key: str, value: str) -> None:
    """``vamp:components=5`` is --objective's syntax; a built-in part's options are flags."""
    from .registry import part_registry

    name = value.partition(":")[0].strip()
    registry = part_registry(key)
    if name not in registry:
        return
    options = getattr(registry[name], "options", ())
    flags = ", ".join(f"--{option.replace('_', '-')}" for option in options)
    how = f"and set its options with {flags}" if options else "(it has no options of its own)"
    raise ConfigError(
        f"{key}: {value!r}: a built-in {key} takes no options after ':' (that syntax is "
        f"--objective's); write {key} = {name!r} {how}; pyro-vae list shows every option"
    )


def _default_of(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _check_kl_warmup(objective: str, kl_warmup: int) -> None:
    from .objective_specs import objective_scales_kl

    if kl_warmup > 0 and not objective_scales_kl(objective):
        raise ConfigError(
            f"kl_warmup: objective {objective!r} puts log p(z) - log q(z|x) inside a logsumexp "
            "over particles, where a weight no longer scales a KL term; set kl_warmup = 0 or "
            "use an ELBO-type objective (elbo, analytic-kl, graph, stl, beta)"
        )


def _check_layers(cfg: Config) -> None:
    """One layer is written as an integer; several are for the built-in vae only."""
    if isinstance(cfg.latent_dim, list) and len(cfg.latent_dim) == 1:
        object.__setattr__(cfg, "latent_dim", cfg.latent_dim[0])
    if isinstance(cfg.latent_dim, list) and cfg.model in ("cvae", "m2"):
        raise ConfigError(
            f"latent_dim: {cfg.latent_dim} stacks stochastic layers, which model {cfg.model!r} "
            "does not have; give one integer (e.g. latent_dim = 50) or use model = 'vae'"
        )


PART_KEYS = ("model", "prior", "likelihood", "guide")
PATH_KEYS = ("out", "data_dir", "dataset")


def _without_ignored_part_args(flat: dict[str, Any]) -> dict[str, Any]:
    """``flat`` without the ``*_args`` of built-in parts, which had no effect."""
    defaults = {f.name: f.default for f in fields(Config)}
    return {
        key: value
        for key, value in flat.items()
        if not (isinstance(key, str) and key.endswith("_args") and key[:-5] in PART_KEYS
                and ":" not in str(flat.get(key[:-5], defaults[key[:-5]])))
    }  # fmt: skip


def _check_part_args(cfg: Config) -> None:
    """``*_args`` reach only a part given by import path; a built-in one would drop them."""
    for key in PART_KEYS:
        name, args = getattr(cfg, key), getattr(cfg, f"{key}_args")
        if args and ":" not in name:
            raise ConfigError(
                f"{key}_args: {args} would be ignored, because {key} {name!r} is built in and "
                f"takes its settings from its own options (pyro-vae list, pyro-vae train "
                f"--help); {key}_args are for a {key} given as package.module:Name. (In a "
                f"config file, a key written below [{key}_args] belongs to that table.)"
            )


def _check_conditional(model: str, prior: str, conditional_prior: bool) -> None:
    if conditional_prior and model != "cvae":
        raise ConfigError(
            f"conditional_prior: only the cvae model has a prior p(z|y), not {model!r}; set "
            "model = 'cvae' or conditional_prior = false"
        )
    if conditional_prior and prior != "standard-normal":
        raise ConfigError(
            f"conditional_prior: the learned p(z|y) replaces the prior, so prior {prior!r} "
            "would be ignored; drop --prior or set conditional_prior = false"
        )
    if model == "cvae" and prior == "vamp":
        raise ConfigError(
            "prior: vamp mixes the encoder's q(z|u) at pseudo-inputs, which a cvae's encoder "
            "cannot give without a label; use another prior or conditional_prior = true"
        )


def _check_scale_value(value: float) -> None:
    if 0 < value <= 0.001:  # a scale keeps at least 0.001 (see pyro_vae.likelihoods)
        raise ConfigError(
            f"likelihood_scale_value: must be > 0.001 (or 0: from the training data), got {value!r}"
        )


def _check_dataset(value: str) -> None:
    from .registry import check_dataset_name

    check_dataset_name(value)


def check_config_argument(cfg: object, where: str) -> None:
    """ConfigError unless ``cfg`` is a :class:`Config` (or None, the defaults).

    Example:
        >>> check_config_argument({"epochs": 1}, "train()")
        Traceback (most recent call last):
        ...
        pyro_vae.errors.ConfigError: train(): the config must be a pyro_vae.Config, not a dict; ...
    """
    if cfg is None or isinstance(cfg, Config):
        return
    raise ConfigError(
        f"{where}: the config must be a pyro_vae.Config, not a {type(cfg).__name__}; build "
        "it with Config(epochs=10, ...), Config.from_dict(mapping) or Config.from_file(path)"
    )


def check_count(value: object, name: str, where: str, allow_none: bool = True) -> None:
    """ConfigError unless ``value`` is an int >= 1 (or None where ``allow_none``): a falsy 0
    must not stand for "the default".

    Example:
        >>> check_count(0, "k", "evaluate()")
        Traceback (most recent call last):
        ...
        pyro_vae.errors.ConfigError: evaluate(): k must be an int >= 1 (or None: the run's ...
    """
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        default = " (or None: the run's eval_k)" if allow_none else ""
        raise ConfigError(f"{where}: {name} must be an int >= 1{default}, got {value!r}")
