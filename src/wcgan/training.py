"""Training one GAN under a fixed budget, with atomic checkpoints and exact resume: one label's
GAN, or one class-conditional GAN for all labels (``wcgan.data.TrainingSet``).

The loop is deliberately plain: critic steps, then one generator step, until the iteration or
wall-clock budget runs out. The critic steps draw their batches, latents and penalty
interpolates from one random stream, the generator step its latents (and classes) from a
second, so a scheme that runs the two on different machines (``wcgan.distributed``) can draw
the same numbers. In one-stage training (``train.training: one_stage``) the last
critic step's backward pass also gives the generator its gradient (``GANLoss.one_stage_backward``),
so the generator step is only its optimizer's; the phase timing reports that combined pass under
"critic" and "penalty". Every few seconds the loop logs a progress line (and checks the losses
for NaN/inf); every ``checkpoint_seconds`` it writes a checkpoint that holds everything needed
to continue bit for bit: networks, optimizers, the random generator's state, the iteration
count, the seconds already spent, the loss history and the generator snapshots taken so far
(``train.snapshots``: copies of the generator at even fractions of the budget, scored later for
quality against compute). SIGTERM (a scheduler's time limit) and
Ctrl-C write a checkpoint before the process exits; after SIGKILL the rerun resumes from the
last periodic one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from wcgan.atomic import atomic_open, load_torch, remove_stale_temporaries, save_torch
from wcgan.cluster import scheduler_job
from wcgan.config import TrainConfig, label_seed
from wcgan.data import TrainingSet
from wcgan.errors import TrainingInterrupted, WcganError
from wcgan.losses import LOSSES, GANLoss, make_optimizer
from wcgan.networks import Critic, Generator, images_to_float

CHECKPOINT_FORMAT = "wcgan-checkpoint-2"  # 2: two random streams, snapshots
GENERATOR_FORMAT = "wcgan-generator-1"
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


def run_key(config: TrainConfig, data: TrainingSet, device: torch.device) -> str:
    """Names the checkpoint: changes with anything that makes a run different, but not with the
    budget, so raising ``iterations`` continues a finished run instead of starting over. The
    device type is part of it because CPU and GPU random generators have different states."""
    effective = config.effective()
    for name in ("iterations", "seconds", "checkpoint_seconds", "log_seconds", "device", "generator"):
        effective.pop(name)
    effective["device_type"] = device.type
    digest = hashlib.sha256(json.dumps(effective, sort_keys=True).encode())
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
    generator: Generator,
    critic: Critic,
    optimizer: torch.optim.Optimizer,
    loss: GANLoss,
    images: torch.Tensor,
    classes: torch.Tensor | None,
    rng: torch.Generator,
    steps: int,
    batch: int,
    clock: PhaseClock | None = None,
    one_stage_optimizer: torch.optim.Optimizer | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``steps`` critic updates on batches of ``images`` (float; with their ``classes`` for a
    conditional GAN) and fakes of ``generator``, drawing rows, latents and penalty interpolates
    from ``rng`` in that order. With ``one_stage_optimizer`` (the generator's) the last step's
    backward pass also leaves the generator's gradient, and its loss is returned; the caller
    steps that optimizer. Returns the steps' mean (critic loss, gap, penalty), and the
    generator loss or None."""
    clock = clock or PhaseClock(synchronize=False)
    device = images.device
    sums = torch.zeros(3, device=device)  # critic loss, gap, penalty
    generator_loss = None
    for step in range(steps):
        with clock("data"):
            rows = torch.randint(len(images), (batch,), generator=rng, device=device)
            real = images[rows]
            # A conditional GAN's fakes take the real batch's classes: the critic and its
            # penalty compare the two class by class.
            labels = None if classes is None else classes[rows]
            z = torch.randn(batch, generator.z_dim, generator=rng, device=device)
        with clock("critic"):
            optimizer.zero_grad(set_to_none=True)
            if one_stage_optimizer is not None and step == steps - 1:  # the generator's rides on it
                one_stage_optimizer.zero_grad(set_to_none=True)
                fake = generator(z, labels)
                critic_loss, gap, generator_loss = loss.one_stage_backward(critic, real, fake, labels)
            else:
                with torch.no_grad():
                    fake = generator(z, labels)
                critic_loss, gap = loss.critic_loss(critic, real, fake, labels)
                critic_loss.backward()
        with clock("penalty"):
            penalty = loss.critic_penalty(critic, real, fake, rng, labels)
            if penalty is not None:
                (loss.penalty_weight * penalty).backward()
                penalty = penalty.detach()
                critic_loss = critic_loss.detach() + loss.penalty_weight * penalty
                sums[2] += penalty
        with clock("critic"):
            optimizer.step()
            loss.after_critic_step(critic)
        sums[0] += critic_loss.detach()
        sums[1] += gap.detach()
    return sums / steps, generator_loss


def generator_step(
    generator: Generator,
    critic: Critic,
    optimizer: torch.optim.Optimizer,
    loss: GANLoss,
    classes: torch.Tensor | None,
    rng: torch.Generator,
    batch: int,
) -> torch.Tensor:
    """One two-stage generator update against ``critic``: latents, then (conditional GAN) classes
    as often as the data has them, rows of ``classes`` (every image's class), from ``rng`` in
    that order. Returns the generator's loss, detached."""
    device = next(generator.parameters()).device
    z = torch.randn(batch, generator.z_dim, generator=rng, device=device)
    labels = None
    if classes is not None:
        labels = classes[torch.randint(len(classes), (batch,), generator=rng, device=device)]
    critic.requires_grad_(False)  # no critic gradients from the generator's step
    optimizer.zero_grad(set_to_none=True)
    generator_loss = loss.generator_loss(critic, generator(z, labels), labels)
    generator_loss.backward()
    critic.requires_grad_(True)
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


@dataclass
class TrainResult:
    generator: Generator
    history: torch.Tensor  # float64, one row per generator iteration, LOSS_COLUMNS
    summary: dict[str, Any]
    # (iteration, seconds, generator state) at each train.snapshots point, the last one the end
    snapshots: list[dict[str, Any]]


def train(
    data: TrainingSet,
    config: TrainConfig,
    checkpoint_dir: str | Path,
    *,
    threads: int | None = None,
    profile: bool = False,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train (or resume training) the GAN of ``data`` until its budget is spent."""
    config.check()
    settings = config.effective()
    device = resolve_device(config.device)
    if threads:
        torch.set_num_threads(threads)
    name, seed = data.name, label_seed(config.seed, data.name)
    subject = f"label '{data.labels[0].name}'" if data.classes is None else f"'{name}'"

    generator, critic = initial_networks(config, data)
    generator, critic = generator.to(device), critic.to(device)
    loss = LOSSES[config.loss](**config.loss_options())
    opt_g = make_optimizer(settings["optimizer"], generator.parameters(), settings["lr"], settings["betas"])
    opt_d = make_optimizer(settings["optimizer"], critic.parameters(), settings["lr"], settings["betas"])
    critic_rng, generator_rng = random_streams(seed, device)
    real_images = images_to_float(data.images.to(device))
    real_classes = None if data.classes is None else data.classes.to(device)
    batch, critic_steps = config.batch_size, settings["critic_steps"]
    one_stage = config.training == "one_stage"

    checkpoint_path = Path(checkpoint_dir) / f"{run_key(config, data, device)}.pt"
    remove_stale_temporaries(checkpoint_path)
    iteration, trained_seconds, history = 0, 0.0, LossHistory(subject, "iteration")
    snapshots: list[dict[str, Any]] = []
    if checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path, CHECKPOINT_FORMAT, "iteration", config.iterations, subject)
        generator.load_state_dict(state["generator"])
        critic.load_state_dict(state["critic"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        critic_rng.set_state(state["critic_rng"])
        generator_rng.set_state(state["generator_rng"])
        iteration, trained_seconds = state["iteration"], state["seconds"]
        history.rows = state["history"]
        snapshots = state["snapshots"]
        log(
            f"[{name}] resumed from {checkpoint_path} at iteration {iteration} ({trained_seconds:.1f} s trained)"
        )
    else:
        log(f"[{name}] new run {checkpoint_path.stem}: {len(real_images)} images, seed {seed}")
    where = scheduler_job()
    log(f"[{name}] {json.dumps(settings)} on {device}, {torch.get_num_threads()} threads")
    log(f"[{name}] host {where['host']}, scheduler job {where['scheduler_job'] or 'none'}")

    def save_checkpoint() -> None:
        save_torch(
            {
                "format": CHECKPOINT_FORMAT,
                "iteration": iteration,
                "seconds": trained_seconds,
                "history": history.rows,
                "generator": generator.state_dict(),
                "critic": critic.state_dict(),
                "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict(),
                "critic_rng": critic_rng.get_state(),
                "generator_rng": generator_rng.get_state(),
                "snapshots": snapshots,
                "config": settings,
            },
            checkpoint_path,
        )

    def budget_left() -> bool:
        return (config.iterations is None or iteration < config.iterations) and (
            config.seconds is None or trained_seconds < config.seconds
        )

    clock = PhaseClock(synchronize=profile and device.type == "cuda")
    start_iteration, session_start = iteration, time.monotonic()
    last_log = last_checkpoint = session_start
    log_iteration, base_seconds = iteration, trained_seconds
    with stop_requests() as stop_requested:
        while budget_left():
            means, generator_loss = critic_steps_on(
                generator, critic, opt_d, loss, real_images, real_classes, critic_rng, critic_steps, batch,
                clock, one_stage_optimizer=opt_g if one_stage else None,
            )  # fmt: skip
            with clock("generator"):
                if one_stage:  # the gradient came with the last critic step
                    opt_g.step()
                else:
                    generator_loss = generator_step(
                        generator, critic, opt_g, loss, real_classes, generator_rng, batch
                    )
            iteration += 1
            now = time.monotonic()
            trained_seconds = base_seconds + (now - session_start)
            history.add(iteration, trained_seconds, torch.cat([means, generator_loss.detach()[None]]))
            taken = len(snapshots) + 1  # the last point is the end of training, not a snapshot
            if (
                taken < config.snapshots
                and budget_progress(config, iteration, trained_seconds) >= taken / config.snapshots
            ):
                with clock("checkpoint"):
                    snapshots.append(snapshot(generator, iteration, trained_seconds))

            if now - last_log >= config.log_seconds or not budget_left():
                with clock("logging"):
                    history.flush()
                    rate = (iteration - log_iteration) / max(now - last_log, 1e-9)
                    log(
                        progress_line(
                            name,
                            config,
                            iteration,
                            trained_seconds,
                            rate,
                            batch * critic_steps,
                            history.rows[-1],
                        )
                    )
                    last_log, log_iteration = now, iteration
            if stop_requested or now - last_checkpoint >= config.checkpoint_seconds:
                with clock("checkpoint"):
                    history.flush()
                    save_checkpoint()
                    last_checkpoint = time.monotonic()
            if stop_requested:
                raise TrainingInterrupted(
                    f"{subject}: stopped by {signal.Signals(stop_requested[0]).name} at iteration {iteration}; "
                    f"checkpoint {checkpoint_path} written, rerun to resume",
                    stop_requested[0],
                )
        with clock("checkpoint"):
            history.flush()
            save_checkpoint()

    session_seconds = time.monotonic() - session_start
    done = iteration - start_iteration
    summary = {
        **identity(data),
        "loss": config.loss,
        "iterations": iteration,
        "seconds": trained_seconds,
        "resumed_from_iteration": start_iteration,
        "stopped_by": "iterations"
        if config.iterations is not None and iteration >= config.iterations
        else "seconds",
        "session_seconds": session_seconds,
        "generator_iterations_per_second": done / session_seconds if done else None,
        "critic_real_images_per_second": done * batch * critic_steps / session_seconds if done else None,
        "phase_seconds": dict(clock.seconds),
        "phase_timing_synchronized": clock.synchronize,
        "device": str(device),
        **where,
        "threads": torch.get_num_threads(),
        "images": len(real_images),
        "resolution": data.resolution,
        "channels": data.channels,
        "checkpoint": str(checkpoint_path),
        "config": settings,
        "snapshots": [[point["iteration"], point["seconds"]] for point in snapshots]
        + [[iteration, trained_seconds]],
    }
    log(f"[{name}] done: {iteration} iterations, {trained_seconds:.1f} s trained")
    points = [*snapshots, snapshot(generator, iteration, trained_seconds)] if config.snapshots else []
    return TrainResult(generator.eval(), history.rows, summary, points)


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


def identity(data: TrainingSet, name_key: str = "label") -> dict[str, Any]:
    """Whose GAN it is: one label's index, slug and name (under ``name_key``), or the labels of
    a conditional GAN (class c is ``labels[c]``, each as [index, slug, name])."""
    if data.classes is None:
        label = data.labels[0]
        return {name_key: label.name, "slug": label.slug, "index": label.index}
    return {"slug": data.name, "labels": [[lb.index, lb.slug, lb.name] for lb in data.labels]}


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


def save_generator(result: TrainResult, data: TrainingSet, path: str | Path) -> None:
    """The trained generator with what sampling needs: architecture, label(s), how it was trained."""
    save_torch(
        {
            "format": GENERATOR_FORMAT,
            "hparams": result.generator.hparams,
            "state": result.generator.state_dict(),
            **identity(data, "name"),
            "iterations": result.summary["iterations"],
            "seconds": result.summary["seconds"],
            "loss": result.summary["loss"],
        },
        path,
    )


def load_generator(path: str | Path) -> tuple[Generator, dict[str, Any]]:
    """Rebuild a saved generator in eval mode; returns it and the file's metadata."""
    data = load_torch(path, "generator")
    if not isinstance(data, dict) or data.get("format") != GENERATOR_FORMAT:
        raise WcganError(f"generator '{path}' is not a wcgan generator (made by 'wcgan train')")
    generator = Generator(**data["hparams"])
    generator.load_state_dict(data["state"])
    meta = {k: v for k, v in data.items() if k not in ("state", "format")}
    return generator.eval(), meta


def write_losses(history: torch.Tensor, path: str | Path) -> None:
    """The loss history as CSV, one row per generator iteration."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(",".join(LOSS_COLUMNS) + "\n")
        for row in history.tolist():
            fh.write(f"{int(row[0])},{row[1]:.4f}," + ",".join(f"{v:.6g}" for v in row[2:]) + "\n")
