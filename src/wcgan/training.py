"""Training GANs under a fixed budget, with atomic checkpoints and exact resume: a chunk of K
labels' GANs trained together on one device (``train_chunk``; ``train`` is a chunk of one), or
one class-conditional GAN for all labels (``wcgan.data.TrainingSet``), which trains as a chunk
of one.

The loop is deliberately plain: critic steps, then one generator step, until the iteration or
wall-clock budget runs out. Every tensor carries a leading label axis, and the K labels'
networks are evaluated in one call (``wcgan.networks.NetworkStack``): K ordinary generators and
critics, so each label keeps its own parameters, batch norm statistics, state dict and files,
evaluated one after the other on a CPU and in one vmapped call on a GPU (which one is faster
where is measured by ``bench/labels_per_job.py``). The losses are per label, and their sum is
backpropagated, so each label's gradient is that of its own loss; one optimizer per network
kind steps every label's parameters (Adam and RMSprop are elementwise, so that is K
optimizers' update). Nothing is shared between labels, random numbers included: each label
draws its critic steps' batches, latents and penalty interpolates from a critic stream of its
own, and its generator step's latents (and classes) from a second stream, both seeded by the
label as a job of its own would seed them. A label trained in a chunk therefore gets exactly
the random numbers, and up to rounding the weights, it gets trained alone; and a scheme that
runs critic and generator steps on different machines (``wcgan.distributed``) can draw the
same numbers. In one-stage training (``train.training: one_stage``) the last critic step's
backward pass also gives the generator its gradient (``GANLoss.one_stage_backward``), so the
generator step is only its optimizer's; the phase timing reports that combined pass under
"critic" and "penalty".

The budget is per label: ``train.iterations`` generator updates each, or ``train.seconds`` of
device time each, so the chunk runs K x ``train.seconds`` of wall clock; a label's seconds (in
its loss history, snapshots and summary) are its share, the chunk's wall clock / K.

Every few seconds the loop logs a progress line per label (and checks every label's losses for
NaN/inf, failing with one line that names the label); every ``checkpoint_seconds`` it writes the
chunk's one checkpoint, which holds everything needed to continue bit for bit: per label the
networks, optimizer state, both random streams' states, loss history and the generator
snapshots taken so far (``train.snapshots``: copies of the generator at even fractions of the
budget, scored later for quality against compute), and the iteration count and seconds spent.
Its name is a key over every label's config and data, so another chunk never resumes it; a
label whose weights hold NaN/inf stops the job before it is written, so the last good one
stays. The checkpoint folder is locked while the job runs (``wcgan.atomic.exclusive_lock``).
SIGTERM (a scheduler's time limit) and Ctrl-C write a checkpoint before the process exits;
after SIGKILL the rerun resumes from the last periodic one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from wcgan.atomic import atomic_open, exclusive_lock, load_torch, remove_stale_temporaries, save_torch
from wcgan.cluster import scheduler_job
from wcgan.config import TrainConfig, label_seed
from wcgan.data import TrainingSet
from wcgan.errors import TrainingInterrupted, WcganError
from wcgan.losses import LOSSES, GANLoss, make_optimizer
from wcgan.networks import Critic, Generator, NetworkStack, images_to_float, stack_labels

CHECKPOINT_FORMAT = "wcgan-checkpoint-3"  # 2: two random streams, snapshots; 3: a chunk of labels
# "wasserstein" is E[D(real)] - E[D(fake)]: the Wasserstein estimate for the Wasserstein losses,
# a generic gap between the critic's scores of real and fake images for the others.
LOSS_COLUMNS = ("iteration", "seconds", "critic_loss", "wasserstein", "penalty", "generator_loss")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise WcganError(f"train.device '{name}' asked for a GPU, but this job has none")
    return device


def run_key(config: TrainConfig, sets: Sequence[TrainingSet], device: torch.device) -> str:
    """Names the checkpoint of a chunk of ``sets``: changes with anything that makes a run
    different (every label's data and slug, their number and order), but not with the budget,
    so raising ``iterations`` continues a finished run instead of starting over. The device type
    is part of it because CPU and GPU random generators have different states."""
    effective = config.effective()
    for name in ("iterations", "seconds", "checkpoint_seconds", "log_seconds", "device", "generator"):
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


def budget_progress(config: TrainConfig, iteration: int, seconds: float) -> float:
    """The share of the budget spent: the larger of the iteration and the seconds share."""
    shares = [iteration / config.iterations] if config.iterations is not None else []
    if config.seconds is not None:
        shares.append(seconds / config.seconds)
    return max(shares)


def load_checkpoint(path: Path, expected_format: str, unit: str, budget: int | None, subject: str) -> dict:
    """A checkpoint to resume from, refused when it is not of ``expected_format`` or when its
    ``unit`` count (iteration, round) is already past the ``budget`` of ``train.iterations``."""
    state = load_torch(path, "checkpoint")
    if not isinstance(state, dict) or state.get("format") != expected_format:
        raise WcganError(
            f"checkpoint '{path}' is not a wcgan checkpoint of this version; move it away to retrain"
        )
    if budget is not None and state[unit] > budget:
        raise WcganError(
            f"{subject}: checkpoint '{path}' is at {unit} {state[unit]}, past train.iterations "
            f"{budget}; raise the budget, or move the checkpoint away to retrain"
        )
    return state


class LossHistory:
    """The loss history, one row of ``LOSS_COLUMNS`` per generator update. New rows stay on the
    training device until ``flush`` copies them off in one transfer and fails on the first
    NaN/inf, naming ``subject`` and the ``unit`` (iteration, round) where it happened."""

    def __init__(self, subject: str, unit: str):
        self.subject, self.unit = subject, unit
        self.rows = torch.zeros(0, len(LOSS_COLUMNS), dtype=torch.float64)
        self._pending: list[tuple[int, float, torch.Tensor]] = []

    def add(self, step: int, seconds: float, losses: torch.Tensor) -> None:
        """Critic loss, Wasserstein estimate, penalty and generator loss after update ``step``."""
        self._pending.append((step, seconds, losses))

    def flush(self) -> None:
        if not self._pending:
            return
        stats = torch.stack([row[2] for row in self._pending]).double().cpu()
        rows = torch.cat([torch.tensor([row[:2] for row in self._pending], dtype=torch.float64), stats], 1)
        self._pending.clear()
        bad = ~torch.isfinite(rows)
        if bad.any():
            row, column = (int(i) for i in bad.nonzero()[0])
            raise WcganError(
                f"{self.subject}: {LOSS_COLUMNS[column]} is {rows[row, column].item()} at "
                f"{self.unit} {int(rows[row, 0])}; training stopped (lower train.lr or check the images)"
            )
        self.rows = torch.cat([self.rows, rows])


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


class PhaseClock:
    """Wall-clock seconds per phase of the loop. On a GPU the numbers mean something only with
    ``synchronize=True``, which costs a little speed: the benchmark turns it on."""

    def __init__(self, synchronize: bool):
        self.synchronize = synchronize
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        if self.synchronize:
            torch.cuda.synchronize()
        start = time.perf_counter()
        yield
        if self.synchronize:
            torch.cuda.synchronize()
        self.seconds[phase] += time.perf_counter() - start


@contextlib.contextmanager
def stop_requests() -> Iterator[list[int]]:
    """Collect SIGTERM/SIGINT instead of dying mid-step; the loop checkpoints, then stops."""
    requested: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    previous = {
        sig: signal.signal(sig, lambda s, _: requested.append(s)) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield requested
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Housekeeping:
    """What a training loop does around its updates, the same for ``train_chunk`` and the
    distributed server: the budget check, the seconds trained (each GAN's share of the wall
    clock: wall clock / ``share``), snapshot points at even shares of the budget, when to log
    (and check the losses) and checkpoint, the stop on SIGTERM/Ctrl-C, and the summary's facts
    about the session. ``count`` is the loop's count of generator updates, named by ``unit``
    (iteration, round), resumed at ``count`` with ``seconds`` already trained."""

    def __init__(self, config: TrainConfig, unit: str, count: int, seconds: float, share: int = 1):
        self.config, self.unit, self.share = config, unit, share
        self.count, self.seconds = count, seconds
        self.start_count, self.base_seconds = count, seconds
        self.session_start = self.now = self.last_log = self.last_checkpoint = time.monotonic()
        self.log_count = count

    def budget_left(self) -> bool:
        config = self.config
        return (config.iterations is None or self.count < config.iterations) and (
            config.seconds is None or self.seconds < config.seconds
        )

    def advance(self) -> None:
        """One more generator update done."""
        self.count += 1
        self.now = time.monotonic()
        self.seconds = self.base_seconds + (self.now - self.session_start) / self.share

    def snapshot_due(self, taken: int) -> bool:
        """Whether the budget has reached the next snapshot point after ``taken`` of them (the
        last point is the end of training, not a snapshot)."""
        point, points = taken + 1, self.config.snapshots
        return point < points and budget_progress(self.config, self.count, self.seconds) >= point / points

    def log_due(self) -> bool:
        return self.now - self.last_log >= self.config.log_seconds or not self.budget_left()

    def logged(self) -> float:
        """Updates per second since the last progress line, for the one about to be logged."""
        rate = (self.count - self.log_count) / max(self.now - self.last_log, 1e-9)
        self.last_log, self.log_count = self.now, self.count
        return rate

    def checkpoint_due(self, stop_requested: list[int]) -> bool:
        return bool(stop_requested) or self.now - self.last_checkpoint >= self.config.checkpoint_seconds

    def checkpointed(self) -> None:
        self.last_checkpoint = time.monotonic()

    def stop_if_requested(self, stop_requested: list[int], subject: str, checkpoint_path: Path) -> None:
        """After the checkpoint a stop request forced: end the job with one line."""
        if stop_requested:
            raise TrainingInterrupted(
                f"{subject}: stopped by {signal.Signals(stop_requested[0]).name} at {self.unit} "
                f"{self.count}; checkpoint {checkpoint_path} written, rerun to resume",
                stop_requested[0],
            )

    @property
    def session_seconds(self) -> float:
        return time.monotonic() - self.session_start

    @property
    def done(self) -> int:
        """Updates done in this session."""
        return self.count - self.start_count

    def summary(self) -> dict[str, Any]:
        """The summary's facts about the budget and the session."""
        config = self.config
        return {
            f"resumed_from_{self.unit}": self.start_count,
            "stopped_by": "iterations"
            if config.iterations is not None and self.count >= config.iterations
            else "seconds",
            "session_seconds": self.session_seconds,
        }


@dataclass
class TrainResult:
    generator: Generator
    history: torch.Tensor  # float64, one row per generator iteration, LOSS_COLUMNS
    summary: dict[str, Any]
    # (iteration, seconds, generator state) at each train.snapshots point, the last one the end
    snapshots: list[dict[str, Any]]


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
    shapes = {tuple(data.images.shape[1:]) for data in sets}
    if len(shapes) > 1:
        raise WcganError(f"the chunk's labels hold images of different shapes {sorted(shapes)}")
    names = [data.name for data in sets]
    if len(set(names)) < len(names):
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


def train_chunk(
    sets: Sequence[TrainingSet],
    config: TrainConfig,
    checkpoint_dir: str | Path,
    *,
    threads: int | None = None,
    profile: bool = False,
    vectorized: bool | None = None,
    log: Callable[[str], None] = print,
) -> list[TrainResult]:
    """Train (or resume training) the GANs of ``sets``, one per label, together as one batched
    network until each has its budget: ``iterations`` each, or K x ``seconds`` of wall clock for
    the chunk (K = len(sets)), so each label gets the device-seconds of a job of its own. Returns
    one result per set, in order. ``vectorized`` picks how the K networks are evaluated
    (``wcgan.networks.NetworkStack``; None: vectorized on a GPU only); the numbers are the same."""
    config.check()
    check_chunk(sets)
    settings = config.effective()
    device = resolve_device(config.device)
    if threads:
        torch.set_num_threads(threads)
    count = len(sets)
    chunk_name = ",".join(data.name for data in sets)
    chunk_subject = subject_of(sets[0]) if count == 1 else f"chunk {chunk_name}"
    labels = []
    for data in sets:
        seed = label_seed(config.seed, data.name)
        generator, critic = initial_networks(config, data)
        critic_rng, generator_rng = random_streams(seed, device)
        history = LossHistory(subject_of(data), "iteration")
        labels.append(
            _Label(
                data, seed, generator.to(device), critic.to(device), critic_rng, generator_rng, history, []
            )
        )
    generators = NetworkStack([member.generator for member in labels], vectorized)
    critics = NetworkStack([member.critic for member in labels], vectorized)
    loss = LOSSES[config.loss](**config.loss_options())
    # One optimizer per network kind over every label's parameters: Adam and RMSprop act
    # elementwise, so this is K optimizers' update in one step call (on a GPU, where they
    # default to foreach, in one kernel per operation for all labels).
    opt_g = make_optimizer(settings["optimizer"], generators.parameters(), settings["lr"], settings["betas"])
    opt_d = make_optimizer(settings["optimizer"], critics.parameters(), settings["lr"], settings["betas"])
    critic_rngs = [member.critic_rng for member in labels]
    generator_rngs = [member.generator_rng for member in labels]
    real_images = resident_images(sets, device)
    real_classes = None if sets[0].classes is None else sets[0].classes.to(device)
    batch, critic_steps = config.batch_size, settings["critic_steps"]
    one_stage = config.training == "one_stage"

    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_path = checkpoint_dir / f"{run_key(config, sets, device)}.pt"
    iteration, seconds = 0, 0.0  # seconds: each label's share, the chunk's wall clock / K
    with exclusive_lock(checkpoint_dir):
        remove_stale_temporaries(checkpoint_path)
        if checkpoint_path.exists():
            state = load_checkpoint(
                checkpoint_path, CHECKPOINT_FORMAT, "iteration", config.iterations, chunk_subject
            )
            for member, label_state in zip(labels, state["labels"], strict=True):
                member.generator.load_state_dict(label_state["generator"])
                member.critic.load_state_dict(label_state["critic"])
                member.critic_rng.set_state(label_state["critic_rng"])
                member.generator_rng.set_state(label_state["generator_rng"])
                member.history.rows = label_state["history"]
                member.snapshots = label_state["snapshots"]
            opt_g.load_state_dict(_merge_optimizer_states([ls["opt_g"] for ls in state["labels"]]))
            opt_d.load_state_dict(_merge_optimizer_states([ls["opt_d"] for ls in state["labels"]]))
            iteration, seconds = state["iteration"], state["seconds"]
            log(
                f"[{chunk_name}] resumed from {checkpoint_path} at iteration {iteration} ({seconds:.1f} s trained)"
            )
        else:
            sizes = ", ".join(str(len(x)) for x in real_images)
            seeds = ", ".join(str(member.seed) for member in labels)
            log(f"[{chunk_name}] new run {checkpoint_path.stem}: {sizes} images, seed {seeds}")
        where = scheduler_job()
        log(f"[{chunk_name}] {json.dumps(settings)} on {device}, {torch.get_num_threads()} threads")
        log(f"[{chunk_name}] host {where['host']}, scheduler job {where['scheduler_job'] or 'none'}")

        def save_checkpoint() -> None:
            for member in labels:
                member.history.flush()
                check_finite(member, iteration)  # the last good checkpoint stays
            label_states = [
                {
                    "slug": member.data.name,
                    "history": member.history.rows,
                    "generator": member.generator.state_dict(),
                    "critic": member.critic.state_dict(),
                    "opt_g": opt_g_state,
                    "opt_d": opt_d_state,
                    "critic_rng": member.critic_rng.get_state(),
                    "generator_rng": member.generator_rng.get_state(),
                    "snapshots": member.snapshots,
                }
                for member, opt_g_state, opt_d_state in zip(
                    labels,
                    _split_optimizer_state(opt_g.state_dict(), count),
                    _split_optimizer_state(opt_d.state_dict(), count),
                    strict=True,
                )
            ]
            save_torch(
                {
                    "format": CHECKPOINT_FORMAT,
                    "iteration": iteration,
                    "seconds": seconds,
                    "labels": label_states,
                    "config": settings,
                },
                checkpoint_path,
            )

        clock = PhaseClock(synchronize=profile and device.type == "cuda")
        house = Housekeeping(config, "iteration", iteration, seconds, share=count)
        with stop_requests() as stop_requested:
            while house.budget_left():
                means, generator_loss = critic_steps_on(
                    generators, critics, opt_d, loss, real_images, real_classes, critic_rngs, critic_steps,
                    batch, clock, one_stage_optimizer=opt_g if one_stage else None,
                )  # fmt: skip
                with clock("generator"):
                    if one_stage:  # the gradient came with the last critic step
                        opt_g.step()
                    else:
                        generator_loss = generator_step(
                            generators, critics, opt_g, loss, real_classes, generator_rngs, batch
                        )
                house.advance()
                iteration, seconds = house.count, house.seconds
                losses = torch.cat([means, generator_loss.detach()[:, None]], 1)
                for member, label_losses in zip(labels, losses, strict=True):
                    member.history.add(iteration, seconds, label_losses)
                if house.snapshot_due(len(labels[0].snapshots)):
                    with clock("checkpoint"):
                        for member in labels:
                            member.snapshots.append(snapshot(member.generator, iteration, seconds))
                if house.log_due():
                    with clock("logging"):
                        rate = house.logged()
                        for member in labels:
                            member.history.flush()
                            line = progress_line(
                                member.data.name, config, iteration, seconds, rate, batch * critic_steps,
                                member.history.rows[-1],
                            )  # fmt: skip
                            log(line)
                if house.checkpoint_due(stop_requested):
                    with clock("checkpoint"):
                        save_checkpoint()
                        house.checkpointed()
                house.stop_if_requested(stop_requested, chunk_subject, checkpoint_path)
            with clock("checkpoint"):
                save_checkpoint()

    session_seconds, done = house.session_seconds, house.done
    shared = {
        "loss": config.loss,
        "iterations": iteration,
        "seconds": seconds,
        "device_seconds": seconds,  # the label's share of its chunk's one device
        "chunk_size": count,
        "chunk_labels": [data.name for data in sets],
        "chunk_seconds": seconds * count,
        **house.summary(),
        "generator_iterations_per_second": done / session_seconds if done else None,
        "label_iterations_per_second": done * count / session_seconds if done else None,
        "critic_real_images_per_second": done * count * batch * critic_steps / session_seconds
        if done
        else None,
        "phase_seconds": dict(clock.seconds),
        "phase_timing_synchronized": clock.synchronize,
        "device": str(device),
        **where,
        "threads": torch.get_num_threads(),
        "resolution": sets[0].resolution,
        "channels": sets[0].channels,
        "checkpoint": str(checkpoint_path),
        "config": settings,
    }
    log(f"[{chunk_name}] done: {iteration} iterations, {seconds * count:.1f} s trained")
    results = []
    for member in labels:
        summary = {
            **member.data.identity(),
            **shared,
            "images": len(member.data.images),
            "snapshots": [[point["iteration"], point["seconds"]] for point in member.snapshots]
            + [[iteration, seconds]],
        }
        points = (
            [*member.snapshots, snapshot(member.generator, iteration, seconds)] if config.snapshots else []
        )
        results.append(TrainResult(member.generator.eval(), member.history.rows, summary, points))
    return results


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


def snapshot(generator: Generator, iteration: int, seconds: float, processes: int = 1) -> dict[str, Any]:
    """A copy of the generator after ``iteration`` updates and ``seconds`` of training by
    ``processes`` processes, each on a device of its own."""
    state = {key: value.detach().cpu().clone() for key, value in generator.state_dict().items()}
    return {
        "iteration": iteration,
        "seconds": seconds,
        "device_seconds": seconds * processes,
        "generator": state,
    }


def progress_line(slug, config, iteration, seconds, rate, images_per_iteration, last_row) -> str:
    budget = []
    if config.iterations is not None:
        budget.append(f"iter {iteration}/{config.iterations} ({100 * iteration / config.iterations:.0f}%)")
    else:
        budget.append(f"iter {iteration}")
    if config.seconds is not None:
        budget.append(f"{seconds:.0f}/{config.seconds:.0f} s")
    else:
        budget.append(f"{seconds:.0f} s")
    _, _, critic, wasserstein, penalty, gen = last_row.tolist()
    return (
        f"[{slug}] {' '.join(budget)} | {rate:.1f} it/s, {rate * images_per_iteration:.0f} critic img/s | "
        f"critic {critic:.4f} W {wasserstein:.4f} gp {penalty:.4f} gen {gen:.4f}"
    )


def write_losses(history: torch.Tensor, path: str | Path) -> None:
    """The loss history as CSV, one row per generator iteration."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(",".join(LOSS_COLUMNS) + "\n")
        for row in history.tolist():
            fh.write(f"{int(row[0])},{row[1]:.4f}," + ",".join(f"{v:.6g}" for v in row[2:]) + "\n")
