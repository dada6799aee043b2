"""A chunk of K labels' GANs trained together on one device as one batched network
(``ChunkTrainer``, run to its budget by ``wcgan.runner``), or one class-conditional GAN as a
chunk of one; and the critic and generator steps, which the distributed server shares
([Training](../../docs/training.md#the-training-loop)).

Each label keeps its own parameters, optimizer state and two random streams (critic steps,
generator step), seeded as a job of its own would seed them: a label trained in a chunk gets
the random numbers, and up to rounding the weights, it gets trained alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from wcgan.config import Settings, TrainConfig, label_seed
from wcgan.data import TrainingSet, one_image_shape
from wcgan.ema import GeneratorAverage
from wcgan.errors import WcganError
from wcgan.files import TrainResult
from wcgan.labels import first_repeat
from wcgan.losses import LOSSES, GANLoss, make_optimizer
from wcgan.networks import Critic, Generator, NetworkStack, images_to_float, stack_labels
from wcgan.runner import (
    LossHistory,
    PhaseClock,
    Session,
    prepare_process,
    progress_line,
    run_to_budget,
    snapshot,
)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise WcganError(f"train.device '{name}' asked for a GPU, but this job has none")
    return device


def run_key(settings: Settings, sets: Sequence[TrainingSet], device: torch.device) -> str:
    """Names the checkpoint of a chunk of ``sets``: changes with anything that makes a run
    different (every label's data and slug, their number and order), but not with the budget,
    so raising ``iterations`` continues a finished run instead of starting over. The device type
    is part of it because CPU and GPU random generators have different states. Without a
    moving average the key is the one runs had before there was one, so their checkpoints resume."""
    effective = dict(settings.effective)
    dropped = ["iterations", "seconds", "checkpoint_seconds", "log_seconds", "device", "generator"]
    for name in dropped + (["ema_half_life_images", "ema_rampup"] if settings.ema is None else []):
        effective.pop(name)
    effective["device_type"] = device.type
    digest = hashlib.sha256(json.dumps(effective, sort_keys=True).encode())
    for data in sets:
        digest.update(data.images.numpy().tobytes())
        if data.classes is not None:
            digest.update(data.classes.numpy().tobytes())
            digest.update(",".join(label.slug for label in data.labels).encode())
        digest.update(f"{data.name}:{tuple(data.images.shape)}".encode())
    return digest.hexdigest()[:16]


def initial_networks(config: TrainConfig, data: TrainingSet) -> tuple[Generator, Critic]:
    """The generator and critic before training, initialised from the set's seed. A conditional
    set gets the cGAN pair: conditional batch norm in the generator, a projection critic with
    spectral normalisation."""
    torch.manual_seed(label_seed(config.seed, data.name))  # later draws use the loop's streams
    classes = data.num_classes
    generator = Generator(config.z_dim, data.resolution, data.channels, config.width, classes)
    critic = Critic(data.resolution, data.channels, config.width, classes, spectral_norm=classes is not None)
    return generator, critic


def random_streams(seed: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """The critic steps' random stream and the generator step's."""
    critic_rng = torch.Generator(device=device).manual_seed(seed)
    return critic_rng, torch.Generator(device=device).manual_seed(seed + 1)


def critic_steps_on(
    generators: NetworkStack,
    critics: NetworkStack,
    optimizer: torch.optim.Optimizer,
    loss: GANLoss,
    images: Sequence[torch.Tensor],
    classes: torch.Tensor | None,
    rngs: Sequence[torch.Generator],
    steps: int,
    batch: int,
    clock: PhaseClock | None = None,
    one_stage_optimizer: torch.optim.Optimizer | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``steps`` critic updates of K labels' critics at once, label k's on batches of
    ``images[k]`` (with their ``classes`` for a conditional GAN, K = 1) and fakes of its
    generator, drawing rows, latents and penalty interpolates from ``rngs[k]`` in that order.
    uint8 images become float a batch at a time (``images_to_float``, elementwise, so the
    batch equals those rows of the converted set): the set stays at its bytes on the device.
    With ``one_stage_optimizer`` (the generators') the last step's backward pass also leaves the
    generators' gradients, and their losses are returned; the caller steps that optimizer.
    Returns each label's mean (critic loss, gap, penalty) over the steps, ``(K, 3)``, and the
    generator losses ``(K,)`` or None."""
    clock = clock or PhaseClock(synchronize=False)
    first = next(generators.networks[0].parameters())
    device, dtype, z_dim = first.device, first.dtype, generators.networks[0].z_dim
    sums = torch.zeros(len(images), 3, device=device, dtype=dtype)  # critic loss, gap, penalty
    generator_loss = None
    for step in range(steps):
        with clock("data"):
            rows = [
                torch.randint(len(x), (batch,), generator=rng, device=device)
                for x, rng in zip(images, rngs, strict=True)
            ]
            real = stack_labels([as_float(x[r]) for x, r in zip(images, rows, strict=True)])
            # A conditional GAN's fakes take the real batch's classes: the critic and its
            # penalty compare the two class by class.
            labels = None if classes is None else classes[rows[0]][None]
            z = stack_labels(
                [torch.randn(batch, z_dim, generator=rng, device=device, dtype=dtype) for rng in rngs]
            )
        with clock("critic"):
            optimizer.zero_grad(set_to_none=True)
            if one_stage_optimizer is not None and step == steps - 1:  # the generator's rides on it
                one_stage_optimizer.zero_grad(set_to_none=True)
                fake = generators(z, labels)
                critic_loss, gap, generator_loss = loss.one_stage_backward(critics, real, fake, labels)
            else:
                with torch.no_grad():
                    fake = generators(z, labels)
                critic_loss, gap = loss.critic_loss(critics, real, fake, labels)
                critic_loss.sum().backward()
        with clock("penalty"):
            penalty = loss.critic_penalty(critics, real, fake, rngs, labels)
            if penalty is not None:
                (loss.penalty_weight * penalty).sum().backward()
                penalty = penalty.detach()
                critic_loss = critic_loss.detach() + loss.penalty_weight * penalty
                sums[:, 2] += penalty
        with clock("critic"):
            optimizer.step()
            loss.after_critic_step(critics)
        sums[:, 0] += critic_loss.detach()
        sums[:, 1] += gap.detach()
    return sums / steps, generator_loss


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images as the networks' float input; float ones as they are."""
    return images_to_float(images) if images.dtype == torch.uint8 else images


def generator_step(
    generators: NetworkStack,
    critics: NetworkStack,
    optimizer: torch.optim.Optimizer,
    loss: GANLoss,
    classes: torch.Tensor | None,
    rngs: Sequence[torch.Generator],
    batch: int,
) -> torch.Tensor:
    """One two-stage update of K labels' generators against their critics, label k drawing
    latents, then (conditional GAN, K = 1) classes as often as the data has them, rows of
    ``classes`` (every image's class), from ``rngs[k]`` in that order. Returns the generators'
    losses ``(K,)``, detached."""
    first = next(generators.networks[0].parameters())
    device, dtype, z_dim = first.device, first.dtype, generators.networks[0].z_dim
    z = stack_labels([torch.randn(batch, z_dim, generator=rng, device=device, dtype=dtype) for rng in rngs])
    labels = None
    if classes is not None:
        labels = classes[torch.randint(len(classes), (batch,), generator=rngs[0], device=device)][None]
    critics.requires_grad_(False)  # no critic gradients from the generator's step
    optimizer.zero_grad(set_to_none=True)
    generator_loss = loss.generator_loss(critics, generators(z, labels), labels)
    generator_loss.sum().backward()
    critics.requires_grad_(True)
    optimizer.step()
    return generator_loss.detach()


def subject_of(data: TrainingSet) -> str:
    """How errors name a set's GAN: the label, or the conditional GAN."""
    return f"label '{data.labels[0].name}'" if data.classes is None else f"'{data.name}'"


def check_chunk(sets: Sequence[TrainingSet]) -> None:
    """Refuse a chunk that cannot train as one batched network: labels of different image
    shapes, a label twice, or a conditional set among others."""
    if not sets:
        raise WcganError("a training chunk needs at least one label")
    if len(sets) > 1 and any(data.classes is not None for data in sets):
        raise WcganError("a conditional GAN trains alone: it cannot share a chunk with other sets")
    one_image_shape((tuple(data.images.shape[1:]), data.name) for data in sets)
    names = [data.name for data in sets]
    if first_repeat((name, name) for name in names) is not None:
        raise WcganError(f"the chunk names a label twice: {', '.join(names)}")


def _split_optimizer_state(state: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """An optimizer's state dict over ``count`` networks' parameters (one group, network after
    network) as one state dict per network, each restorable alone."""
    (group,) = state["param_groups"]
    per = len(group["params"]) // count
    return [
        {
            "state": {
                i - k * per: value for i, value in state["state"].items() if k * per <= i < (k + 1) * per
            },
            "param_groups": [{**group, "params": list(range(per))}],
        }
        for k in range(count)
    ]


def _merge_optimizer_states(states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The inverse of ``_split_optimizer_state``."""
    per = len(states[0]["param_groups"][0]["params"])
    return {
        "state": {
            k * per + i: value for k, state in enumerate(states) for i, value in state["state"].items()
        },
        "param_groups": [{**states[0]["param_groups"][0], "params": list(range(per * len(states)))}],
    }


def train(data: TrainingSet, config: TrainConfig, checkpoint_dir: str | Path, **options: Any) -> TrainResult:
    """Train (or resume training) the GAN of ``data`` until its budget is spent: a chunk of one."""
    return train_chunk([data], config, checkpoint_dir, **options)[0]


@dataclass
class _Label:
    """One label of a chunk: its set, networks, random streams, history and snapshots."""

    data: TrainingSet
    seed: int
    generator: Generator
    critic: Critic
    critic_rng: torch.Generator
    generator_rng: torch.Generator
    history: LossHistory
    snapshots: list[dict[str, Any]]

    @property
    def subject(self) -> str:
        return self.history.subject


class ChunkTrainer:
    """The runner's trainer of a chunk: K labels' GANs as one batched network, a step being
    each label's critic steps and generator update (``critic_steps_on``, ``generator_step``)."""

    kind, unit = "chunk", "iteration"

    def __init__(
        self, sets: Sequence[TrainingSet], settings: Settings, device: torch.device, vectorized: bool
    ):
        config = settings.config
        self.config, self.settings, self.device = config, settings, device
        self.share = len(sets)
        self.name = ",".join(data.name for data in sets)
        self.subject = subject_of(sets[0]) if len(sets) == 1 else f"chunk {self.name}"
        self.labels = []
        for data in sets:
            seed = settings.seed(data.name)
            generator, critic = initial_networks(config, data)
            critic_rng, generator_rng = random_streams(seed, device)
            history = LossHistory(subject_of(data), "iteration")
            member = _Label(
                data, seed, generator.to(device), critic.to(device), critic_rng, generator_rng, history, []
            )
            self.labels.append(member)
        self.generators = NetworkStack([member.generator for member in self.labels], vectorized)
        self.critics = NetworkStack([member.critic for member in self.labels], vectorized)
        self.loss = LOSSES[config.loss](**settings.loss_options)
        # One optimizer per network kind over every label's parameters: Adam and RMSprop act
        # elementwise, so this is K optimizers' update in one step call (on a GPU, where they
        # default to foreach, in one kernel per operation for all labels).
        self.opt_g = make_optimizer(
            settings.optimizer, self.generators.parameters(), settings.lr, settings.betas
        )
        self.opt_d = make_optimizer(
            settings.optimizer, self.critics.parameters(), settings.lr, settings.betas
        )
        generators = [member.generator for member in self.labels]
        self.average = GeneratorAverage(generators, settings.ema, config.batch_size) if settings.ema else None
        self.images = resident_images(sets, device)
        self.classes = None if sets[0].classes is None else sets[0].classes.to(device)
        self.critic_steps = settings.critic_steps

    @property
    def snapshots_taken(self) -> int:
        return len(self.labels[0].snapshots)

    def load(self, state: dict[str, Any], path: Path) -> None:
        for member, label_state in zip(self.labels, state["labels"], strict=True):
            member.generator.load_state_dict(label_state["generator"])
            member.critic.load_state_dict(label_state["critic"])
            member.critic_rng.set_state(label_state["critic_rng"])
            member.generator_rng.set_state(label_state["generator_rng"])
            member.history.rows = label_state["history"]
            member.snapshots = label_state["snapshots"]
        if self.average is not None:
            self.average.load([label_state["generator_ema"] for label_state in state["labels"]])
        self.opt_g.load_state_dict(_merge_optimizer_states([ls["opt_g"] for ls in state["labels"]]))
        self.opt_d.load_state_dict(_merge_optimizer_states([ls["opt_d"] for ls in state["labels"]]))

    def state(self, count: int) -> dict[str, Any]:
        for member in self.labels:
            member.history.flush()
            check_finite(member, count)  # the last good checkpoint stays
        count = len(self.labels)
        averages = self.average.state() if self.average is not None else [None] * count
        return {
            "labels": [
                {
                    "slug": member.data.name,
                    "history": member.history.rows,
                    "generator": member.generator.state_dict(),
                    **({"generator_ema": average} if average is not None else {}),
                    "critic": member.critic.state_dict(),
                    "opt_g": opt_g_state,
                    "opt_d": opt_d_state,
                    "critic_rng": member.critic_rng.get_state(),
                    "generator_rng": member.generator_rng.get_state(),
                    "snapshots": member.snapshots,
                }
                for member, average, opt_g_state, opt_d_state in zip(
                    self.labels,
                    averages,
                    _split_optimizer_state(self.opt_g.state_dict(), count),
                    _split_optimizer_state(self.opt_d.state_dict(), count),
                    strict=True,
                )
            ]
        }

    def new_run_line(self, path: Path) -> str:
        sizes = ", ".join(str(len(x)) for x in self.images)
        seeds = ", ".join(str(member.seed) for member in self.labels)
        return f"[{self.name}] new run {path.stem}: {sizes} images, seed {seeds}"

    def setup_lines(self) -> list[str]:
        return [
            f"[{self.name}] {json.dumps(self.settings.effective)} on {self.device}, {torch.get_num_threads()} threads"
        ]

    def start(self) -> None:
        pass

    def step(self, count: int, clock: PhaseClock) -> torch.Tensor:
        """Each label's critic steps and generator update number ``count``; their losses
        ``(K, 4)``."""
        one_stage = self.config.training == "one_stage"
        critic_rngs = [member.critic_rng for member in self.labels]
        means, generator_loss = critic_steps_on(
            self.generators, self.critics, self.opt_d, self.loss, self.images, self.classes, critic_rngs,
            self.critic_steps, self.config.batch_size, clock, one_stage_optimizer=self.opt_g if one_stage else None,
        )  # fmt: skip
        with clock("generator"):
            if one_stage:  # the gradient came with the last critic step
                self.opt_g.step()
            else:
                generator_rngs = [member.generator_rng for member in self.labels]
                generator_loss = generator_step(
                    self.generators, self.critics, self.opt_g, self.loss, self.classes, generator_rngs,
                    self.config.batch_size,
                )  # fmt: skip
            if self.average is not None:
                self.average.update(count)
        return torch.cat([means, generator_loss.detach()[:, None]], 1)

    def record(self, count: int, seconds: float, outcome: torch.Tensor) -> None:
        for member, label_losses in zip(self.labels, outcome, strict=True):
            member.history.add(count, seconds, label_losses)

    def averaged(self) -> list[Generator | None]:
        """Each label's moving-average generator, or None each when that is off."""
        return self.average.averages if self.average is not None else [None] * len(self.labels)

    def snapshot(self, count: int, seconds: float) -> None:
        for member, average in zip(self.labels, self.averaged(), strict=True):
            member.snapshots.append(snapshot(member.generator, average, count, seconds))

    def progress_lines(self, count: int, seconds: float, rate: float) -> list[str]:
        images = self.config.batch_size * self.critic_steps
        lines = []
        for member in self.labels:
            member.history.flush()
            lines.append(
                progress_line(
                    member.data.name, self.config, count, seconds, rate, images, member.history.rows[-1]
                )
            )
        return lines

    def checkpoint_written(self, path: Path, count: int) -> None:
        pass

    def results(self, session: Session, checkpoint_path: Path) -> list[TrainResult]:
        """Each label's generator, history, summary and snapshot points."""
        house, config, count = session.house, self.config, len(self.labels)
        iteration, seconds, done, session_seconds = (
            house.count,
            house.seconds,
            house.done,
            house.session_seconds,
        )
        batch = config.batch_size
        first = self.labels[0].data
        shared = {
            "loss": config.loss,
            "iterations": iteration,
            "seconds": seconds,
            "device_seconds": seconds,  # the label's share of its chunk's one device
            "chunk_size": count,
            "chunk_labels": [member.data.name for member in self.labels],
            "chunk_seconds": seconds * count,
            **house.summary(),
            "generator_iterations_per_second": done / session_seconds if done else None,
            "label_iterations_per_second": done * count / session_seconds if done else None,
            "critic_real_images_per_second": done * count * batch * self.critic_steps / session_seconds
            if done
            else None,
            "phase_seconds": dict(session.clock.seconds),
            "phase_timing_synchronized": session.clock.synchronize,
            "device": str(self.device),
            **session.where,
            "threads": torch.get_num_threads(),
            "resolution": first.resolution,
            "channels": first.channels,
            "checkpoint": str(checkpoint_path),
            "config": self.settings.effective,
        }
        results = []
        for member, average in zip(self.labels, self.averaged(), strict=True):
            summary = {
                **member.data.identity(),
                **shared,
                "images": len(member.data.images),
                "snapshots": [[point["iteration"], point["seconds"]] for point in member.snapshots]
                + [[iteration, seconds]],
            }
            points = (
                [*member.snapshots, snapshot(member.generator, average, iteration, seconds)]
                if config.snapshots
                else []
            )
            result = TrainResult(member.generator.eval(), average, member.history.rows, summary, points)
            results.append(result)
        return results


def train_chunk(
    sets: Sequence[TrainingSet],
    config: TrainConfig,
    checkpoint_dir: str | Path,
    *,
    threads: int | None = None,
    profile: bool = False,
    vectorized: bool = False,
    log: Callable[[str], None] = print,
) -> list[TrainResult]:
    """Train (or resume training) the GANs of ``sets``, one per label, together as one batched
    network until each has its budget: ``iterations`` each, or K x ``seconds`` of wall clock for
    the chunk (K = len(sets)), so each label gets the device-seconds of a job of its own. Returns
    one result per set, in order. ``vectorized`` picks how the K networks are evaluated
    (``wcgan.networks.NetworkStack``: looped unless asked); the numbers are the same."""
    config.check()
    check_chunk(sets)
    device = resolve_device(config.device)
    prepare_process(device, threads)
    settings = config.resolved()
    trainer = ChunkTrainer(sets, settings, device, vectorized)
    checkpoint_path = Path(checkpoint_dir) / f"{run_key(settings, sets, device)}.pt"
    clock = PhaseClock(synchronize=profile and device.type == "cuda")
    session = run_to_budget(trainer, config, settings.effective, checkpoint_path, clock, log)
    log(
        f"[{trainer.name}] done: {session.house.count} iterations, {session.house.seconds * len(sets):.1f} s trained"
    )
    return trainer.results(session, checkpoint_path)


def resident_images(sets: Sequence[TrainingSet], device: torch.device) -> list[torch.Tensor]:
    """Each set's images as the loop holds them on ``device``: uint8, a quarter of float32's
    bytes (on a CPU the shard's own tensor, no copy); ``critic_steps_on`` converts each batch."""
    return [data.images.to(device) for data in sets]


def check_finite(member: _Label, iteration: int) -> None:
    """Fail, naming the label, when its networks hold NaN/inf: such a state is never saved."""
    for kind, network in (("generator", member.generator), ("critic", member.critic)):
        if not all(
            torch.isfinite(value).all()
            for value in network.state_dict().values()
            if value.is_floating_point()
        ):
            raise WcganError(
                f"{member.subject}: the {kind}'s weights hold NaN/inf at iteration {iteration}; "
                f"training stopped (lower train.lr or check the images)"
            )
