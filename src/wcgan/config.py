"""Run settings that the workflow needs when it builds the DAG: loss recipes, the training
options and budget, and one-line wording for config errors. No torch here, so a dry run of
thousands of labels stays fast."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wcgan.atomic import atomic_open, read_checked
from wcgan.errors import WcganError

SUPPORTED_RESOLUTIONS = (8, 16, 32, 64, 128, 256)  # what the generator and critic can be built for
OPTIMIZERS = ("adam", "rmsprop")
ADAM_DEFAULT_BETAS = (0.9, 0.999)  # for Adam chosen on a loss whose recipe has no betas
INCEPTION_DOWNLOAD = "download"  # metrics.inception_weights value: torch-fidelity's published file
SCORE_SEED = 2020  # of KID's subsets, IS's shuffle and precision/recall's subset: torch-fidelity's default
# Every config key, its default and its meaning: the one place the defaults are written. The
# workflow validates its config against it and fills in what a config file leaves out.
SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


@functools.cache
def config_schema() -> dict[str, Any]:
    import yaml

    # libyaml's loader where PyYAML has it: every wcgan process reads the schema at import
    # (76 ms with the pure-Python loader, 13 ms with libyaml, measured here).
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(SCHEMA_PATH.read_text(encoding="utf-8"), Loader=loader)


def _schema_property(key: Sequence[str]) -> dict[str, Any]:
    node = config_schema()
    for name in key:
        node = node["properties"][name]
    return node


def schema_default(*key: str) -> Any:
    """The schema's default of a config key: ``schema_default("sampling", "per_label")``."""
    return _schema_property(key)["default"]


def options_from_schema(*section: str, unset: Sequence[str] = ()) -> Callable[[type], type]:
    """Class decorator, under ``@dataclass``: each field of a config section's class takes the
    schema's default and description of ``<section>.<field>`` as its default and as the help of
    its command-line option (``wcgan.options``). ``unset`` fields default to None instead."""

    def from_schema(cls: type) -> type:
        for name, annotation in cls.__annotations__.items():
            spec = _schema_property((*section, name))
            default = None if name in unset else spec["default"]
            if annotation.startswith("float") and type(default) is int:
                default = float(default)  # the type the field promises (and a settings digest sees)
            help = " ".join(spec["description"].split())
            setattr(cls, name, field(default=default, metadata={"help": help}))
        return cls

    return from_schema


# Of each label's generated and real features, the overall IS, KID and precision/recall read a
# seeded subset of at most this many (FID reads the moments of all); precision/recall is
# quadratic in the images, so all labels' use a seeded subset above PRC_MAX_IMAGES.
OVERALL_PER_LABEL = schema_default("metrics", "overall_per_label")
PRC_MAX_IMAGES = schema_default("metrics", "prc_max_images")


@dataclass(frozen=True)
class Recipe:
    """The published training settings a loss comes with; config values override them."""

    optimizer: str  # a name in OPTIMIZERS
    lr: float
    betas: tuple[float, float] | None  # Adam only
    critic_steps: int  # critic updates per generator update
    options: dict[str, float] = field(default_factory=dict)  # loss-specific settings and defaults


RECIPES: dict[str, Recipe] = {
    # Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", Algorithm 1.
    "wgan-gp": Recipe("adam", 1e-4, (0.0, 0.9), 5, {"gp_weight": 10.0}),
    # Arjovsky et al. 2017, "Wasserstein GAN", Algorithm 1.
    "wgan-clip": Recipe("rmsprop", 5e-5, None, 5, {"clip_value": 0.01}),
    # Radford et al. 2016, "Unsupervised Representation Learning with Deep Convolutional GANs".
    "dcgan": Recipe("adam", 2e-4, (0.5, 0.999), 1),
    # Miyato et al. 2018, "Spectral Normalization for GANs": the setting of its ResNet runs,
    # the one later hinge-loss GANs reuse (its CNN runs also tried betas (0.5, 0.999), 1 step).
    "hinge": Recipe("adam", 2e-4, (0.0, 0.9), 5),
}
TRAINING_SCHEMES = ("two_stage", "one_stage")  # how a generator iteration gets its gradients
# One GAN per label (the W-CGAN design); one class-conditional GAN for all labels (the cGAN
# baseline: conditional batch norm, projection critic with spectral normalisation); or that
# conditional GAN trained by a server with local critics on devices (wcgan.distributed).
GENERATORS = ("per_label", "conditional", "distributed")
SCHEDULES = ("serial", "parallel")  # distributed: the server's generator step after or beside the devices'
PARTITIONS = ("iid", "by_label")  # distributed: random shares of the images, or shares of the labels
BACKENDS = ("auto", "gloo", "nccl")
# Which of a generator file's weights to draw from: the moving average, where the file has one
# (wcgan.ema), or the last weights of training.
WEIGHTS = ("ema", "raw")


class ConfigSection:
    """A config section as a frozen dataclass: unknown keys are rejected by name, lists become
    tuples, and ``check`` validates the values, every message naming ``<section>.<key>``."""

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], key: str):
        names = {f.name for f in dataclasses.fields(cls)}
        for name in values:
            if name not in names:
                raise WcganError(f"{key}.{name} is not an option of {key}")
        section = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        section.check(key)
        return section

    def check(self, key: str) -> None:
        raise NotImplementedError

    def _require_positive(self, key: str, names: tuple[str, ...]) -> None:
        for name in names:
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise WcganError(f"{key}.{name} must be positive, got {value}")


# No budget by default (unlike the schema's, the digits run's): an unset budget is refused, so a
# caller of the package or of `wcgan train` states the one it means.
@dataclass(frozen=True)
@options_from_schema("train", unset=("iterations", "seconds"))
class TrainConfig(ConfigSection):
    """One label's training options (the config's ``train`` section).

    ``None`` for an optimizer or loss setting means "the loss's published recipe"
    (``RECIPES``): WGAN-GP trains with Adam 1e-4, betas (0, 0.9), 5 critic steps and
    penalty weight 10; weight clipping with RMSprop 5e-5, 5 critic steps and clip 0.01;
    DCGAN with Adam 2e-4, betas (0.5, 0.999), 1 critic step; hinge with Adam 2e-4, betas
    (0, 0.9), 5 critic steps.

    ``training`` picks two-stage updates (critic, then generator through a second pass) or
    one-stage ones (both gradients from the last critic pass, see ``wcgan.losses``). Every
    loss supports both, with any option: the generator's loss is a per-sample function of the
    critic's scores, the critic has no batch statistics, the penalty's interpolates are
    detached and weight clipping acts after the gradients are taken.
    """

    generator: str
    loss: str
    training: str
    iterations: int | None
    seconds: float | None
    batch_size: int
    z_dim: int
    width: int
    critic_steps: int | None
    optimizer: str | None
    lr: float | None
    betas: tuple[float, float] | None
    gp_weight: float | None
    clip_value: float | None
    ema_half_life_images: float
    ema_rampup: float
    snapshots: int
    checkpoint_seconds: float
    log_seconds: float
    seed: int
    device: str

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], key: str = "train") -> TrainConfig:
        return super().from_mapping(values, key)

    @property
    def recipe(self) -> Recipe:
        return RECIPES[self.loss]

    def check(self, key: str = "train") -> None:
        if self.generator not in GENERATORS:
            raise WcganError(
                f"{key}.generator '{self.generator}' is unknown (known: {', '.join(GENERATORS)})"
            )
        if self.loss not in RECIPES:
            raise WcganError(f"{key}.loss '{self.loss}' is unknown (known: {', '.join(RECIPES)})")
        if self.training not in TRAINING_SCHEMES:
            raise WcganError(
                f"{key}.training '{self.training}' is unknown (known: {', '.join(TRAINING_SCHEMES)})"
            )
        for name in ("gp_weight", "clip_value"):
            if getattr(self, name) is not None and name not in self.recipe.options:
                raise WcganError(f"{key}.{name} does not apply to loss '{self.loss}'")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise WcganError(f"{key}.optimizer '{self.optimizer}' is unknown ({', '.join(OPTIMIZERS)})")
        if self.betas is not None and self.effective_optimizer != "adam":
            raise WcganError(f"{key}.betas applies only to optimizer adam")
        if self.betas is not None and not all(0 <= beta < 1 for beta in self.betas):
            raise WcganError(f"{key}.betas must each be at least 0 and below 1 (Adam's), got {self.betas}")
        if self.iterations is None and self.seconds is None:
            raise WcganError(f"{key}.iterations and {key}.seconds are both unset: a label needs a budget")
        self._require_positive(
            key,
            (
                "iterations",
                "seconds",
                "batch_size",
                "z_dim",
                "width",
                "critic_steps",
                "lr",
                "gp_weight",
                "clip_value",
                "log_seconds",
            ),
        )
        if self.generator == "distributed" and self.training != "two_stage":
            raise WcganError(
                f"{key}.training {self.training} does not apply to {key}.generator distributed: the "
                f"devices' critic steps and the server's generator step run in different processes"
            )
        for name in ("ema_half_life_images", "ema_rampup", "snapshots"):
            if getattr(self, name) < 0:
                raise WcganError(f"{key}.{name} must be 0 or more, got {getattr(self, name)}")
        if self.checkpoint_seconds < 0:
            raise WcganError(f"{key}.checkpoint_seconds must be 0 or more")
        if self.seed < 0:
            raise WcganError(f"{key}.seed must be 0 or more, got {self.seed}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise WcganError(f"{key}.device '{self.device}' is not auto, cpu, cuda or cuda:N")

    @property
    def effective_optimizer(self) -> str:
        return self.optimizer or self.recipe.optimizer

    def effective(self) -> dict[str, Any]:
        """Every setting with the recipe's values filled in: what the run really uses."""
        values = dataclasses.asdict(self)
        values.update(
            optimizer=self.effective_optimizer,
            lr=self.lr or self.recipe.lr,
            critic_steps=self.critic_steps or self.recipe.critic_steps,
        )
        if values["optimizer"] == "adam":
            values["betas"] = tuple(self.betas or self.recipe.betas or ADAM_DEFAULT_BETAS)
        for name, default in self.recipe.options.items():
            values[name] = default if values[name] is None else values[name]
        return values

    def for_labels(self, count: int, processes: int = 1) -> TrainConfig:
        """The budget of one GAN for ``count`` labels, trained by ``processes`` processes each
        on a device of its own: ``iterations`` and ``seconds`` are per label, so it gets
        ``count`` times the generator updates, and the wall-clock seconds that give its
        processes together the device-seconds of ``count`` per-label jobs."""
        return dataclasses.replace(
            self,
            iterations=None if self.iterations is None else self.iterations * count,
            seconds=None if self.seconds is None else self.seconds * count / processes,
        )

    def resolved(self) -> Settings:
        """The section resolved once (``Settings``), for a run to pass down."""
        effective = self.effective()
        loss_options = {name: effective[name] for name in self.recipe.options}
        return Settings(
            self, effective["optimizer"], effective["lr"], effective["betas"], effective["critic_steps"],
            loss_options, effective,
        )  # fmt: skip


@dataclass(frozen=True)
class EmaSchedule:
    """``half_life_images``: after this many generated images an old weight counts half;
    ``rampup``: while ``rampup`` x images seen is shorter, that is the half-life (None: never)."""

    half_life_images: float
    rampup: float | None

    def beta(self, images_seen: int, batch: int) -> float:
        """The decay of the update after ``images_seen`` images, ``batch`` of them in this update."""
        half_life = self.half_life_images
        if self.rampup is not None:
            half_life = min(half_life, images_seen * self.rampup)
        return 0.5 ** (batch / max(half_life, 1e-8))


@dataclass(frozen=True)
class Settings:
    """A ``train`` section with its loss's recipe filled in: what a run really uses, resolved
    once (``TrainConfig.resolved``) and passed down to the trainers."""

    config: TrainConfig
    optimizer: str
    lr: float
    betas: tuple[float, float] | None  # Adam only
    critic_steps: int
    loss_options: Mapping[str, float]  # the loss's own settings (gp_weight, clip_value)
    effective: Mapping[str, Any]  # every setting, as checkpoints and summaries record them

    @property
    def ema(self) -> EmaSchedule | None:
        """The generators' moving average (``wcgan.ema``), None when it is off."""
        config = self.config
        if not config.ema_half_life_images:
            return None
        return EmaSchedule(config.ema_half_life_images, config.ema_rampup or None)

    def seed(self, name: str) -> int:
        """The seed of the GAN called ``name``: a label's slug, or the conditional GAN's."""
        return label_seed(self.config.seed, name)


@dataclass(frozen=True)
@options_from_schema("distributed")
class DistributedConfig(ConfigSection):
    """How ``train.generator: distributed`` spreads training over processes (the config's
    ``distributed`` section): a server and ``devices`` device processes (``wcgan.distributed``).
    Loss, batch size, budget (rounds: one generator update each), snapshots and seed come from
    the ``train`` section."""

    devices: int
    schedule: str
    partition: str
    local_steps: int | None
    backend: str
    nodes: int
    max_restarts: int

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], key: str = "distributed") -> DistributedConfig:
        return super().from_mapping(values, key)

    def check(self, key: str = "distributed") -> None:
        for name, known in (("schedule", SCHEDULES), ("partition", PARTITIONS), ("backend", BACKENDS)):
            if getattr(self, name) not in known:
                raise WcganError(
                    f"{key}.{name} '{getattr(self, name)}' is unknown (known: {', '.join(known)})"
                )
        self._require_positive(key, ("devices", "local_steps", "nodes"))
        if self.max_restarts < 0:
            raise WcganError(f"{key}.max_restarts must be 0 or more, got {self.max_restarts}")
        if self.nodes > self.processes:
            raise WcganError(
                f"{key}.nodes {self.nodes} exceeds the launch's {self.processes} processes "
                f"(devices + 1): a node would have none"
            )

    @property
    def processes(self) -> int:
        """The launch's world size: the server and one process per device."""
        return self.devices + 1


@dataclass(frozen=True)
@options_from_schema("metrics", "classifier")
class ClassifierConfig(ConfigSection):
    """The config's ``metrics.classifier`` section."""

    epochs: int
    batch_size: int
    lr: float
    width: int
    holdout: float
    max_images_per_label: int | None
    seed: int

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], key: str = "metrics.classifier") -> ClassifierConfig:
        return super().from_mapping(values, key)

    def check(self, key: str = "metrics.classifier") -> None:
        if not 0 < self.holdout < 1:
            raise WcganError(f"{key}.holdout must be between 0 and 1, got {self.holdout}")
        self._require_positive(key, ("epochs", "lr", "width"))
        if self.batch_size < 2:
            raise WcganError(f"{key}.batch_size must be 2 or more (batch norm), got {self.batch_size}")
        if self.max_images_per_label is not None and self.max_images_per_label < 2:
            raise WcganError(
                f"{key}.max_images_per_label must be 2 or more (one to train on, one to hold out), "
                f"got {self.max_images_per_label}"
            )
        if self.seed < 0:
            raise WcganError(f"{key}.seed must be 0 or more, got {self.seed}")


def scheduler_minutes(
    config: TrainConfig, margin_minutes: float, fallback_minutes: float, labels: int = 1
) -> int:
    """A training job's time limit: its seconds budget plus a margin for start-up, checkpoint
    and export; when only an iteration budget is set, ``fallback_minutes`` per label of the job
    (``labels``: a chunk's K labels do K labels' iterations)."""
    if config.seconds is None:
        return math.ceil(fallback_minutes * labels)
    return math.ceil(config.seconds / 60 + margin_minutes)


NESTED_RUN = re.compile(r"(?P<parent>[^/]+)/(compare/[^/]+|scaling/[^/]+/n[0-9]+)")


def check_run_name(run: str, parent_run: str | None) -> None:
    """A run's folder is results/<run>; only a compare variant or a scaling point (made by
    compare-config or scaling-config, which set ``parent_run``) lives inside another run's
    folder, where the parent's targets may delete it. Any other name with '/' is refused."""
    nested = NESTED_RUN.fullmatch(run)
    if parent_run is None and "/" in run:
        raise WcganError(
            f"run '{run}': a run name has no '/' (results/{run} would sit inside another run's "
            f"folder, whose compare and scaling targets may replace it); name it without '/'"
        )
    if parent_run is not None and (nested is None or nested["parent"] != parent_run):
        raise WcganError(
            f"run '{run}' is not a compare variant or scaling point of parent_run '{parent_run}'"
        )


def read_run_config(path: str | Path) -> dict[str, Any]:
    """A nested run's config file: a scaling point's or a compare variant's, as its rule wrote it
    (``write_run_config``), once it matches its checksum."""
    import yaml

    return yaml.safe_load(read_checked(path, "nested run config"))


def write_run_config(config: Mapping[str, Any], path: str | Path) -> None:
    import yaml

    with atomic_open(path, "w", checksum=True, encoding="utf-8") as fh:
        yaml.safe_dump(config, fh, sort_keys=False)


def label_seed(base_seed: int, slug: str) -> int:
    """A per-label seed that depends only on the base seed and the label, not on other labels."""
    digest = hashlib.sha256(f"{base_seed}:{slug}".encode()).digest()
    return int.from_bytes(digest[:7], "little")


def describe_schema_error(error: Any) -> str:
    """One line for a jsonschema ``ValidationError`` on the config, naming the key at fault."""
    where = ".".join(str(part) for part in error.absolute_path)
    if not where:
        return f"config: {error.message}"
    if error.validator == "additionalProperties":
        known = set(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - known)
        return f"config key '{where}': unknown key {', '.join(repr(k) for k in unknown)}"
    return f"config key '{where}': {error.message}"


def check_plain_values(value: Any, key: str = "") -> None:
    """Refuse, naming the key, what passes the schema's types but not the run: a number that is
    not finite (YAML's ``.inf`` and ``.nan``: a budget of inf overflows its time limit, a
    ``checkpoint_seconds`` of nan turns periodic checkpoints off without a word) and a string
    with a control character (the schema's patterns end in ``$``, which lets a final newline
    through, and a newline in a run name splits the jobs' shell commands)."""
    if isinstance(value, dict):
        for name, item in value.items():
            check_plain_values(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_plain_values(item, f"{key}[{index}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise WcganError(f"config key '{key}': {value} is not a finite number")
    elif isinstance(value, str) and any(unicodedata.category(char) == "Cc" for char in value):
        raise WcganError(f"config key '{key}': {value!r} holds a control character (newline, tab, ...)")


def coerce_strings(value: Any, schema: Mapping[str, Any]) -> Any:
    """Undo Snakemake's ``--config 'train={"iterations": 300}'``, which parses nested values as
    strings: where the schema wants a number, boolean or null, a string that reads as one becomes
    one. Anything else is returned unchanged for the schema to judge."""
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        others = schema.get("additionalProperties")
        others = others if isinstance(others, dict) else {}
        return {k: coerce_strings(v, properties.get(k, others)) for k, v in value.items()}
    if isinstance(value, list):
        return [coerce_strings(v, schema.get("items", {})) for v in value]
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    if isinstance(value, float) and value.is_integer() and "integer" in types and "number" not in types:
        return int(value)  # 5.0 where a count is wanted: the jobs would fail on it, not the schema
    if not isinstance(value, str):
        return value
    if "null" in types and value in ("null", "~", "None"):
        return None
    if "boolean" in types and value.lower() in ("true", "false"):
        return value.lower() == "true"
    for kind, parse in (("integer", int), ("number", float)):
        if kind in types:
            try:
                return parse(value)
            except ValueError:
                pass
    return value
