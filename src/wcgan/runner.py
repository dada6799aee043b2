"""One checkpointed runner for every trainer: a chunk of per-label GANs (``wcgan.training``) and
the distributed server (``wcgan.distributed``) supply their state and one step; the runner does
the rest the same way for both ([Training](../../docs/training.md#budgets-checkpoints-resume)).

Around the steps it holds the checkpoint folder's lock, removes stale temporaries, resumes or
starts, keeps the budget (generator updates or seconds), takes snapshots at even shares of the
budget, logs progress, writes a checkpoint every ``checkpoint_seconds`` and on SIGTERM/Ctrl-C
(then stops with one line), and writes the last one at the end. A checkpoint holds the
trainer's state and the runner's count and seconds, under one schema.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from wcgan.atomic import exclusive_lock, remove_stale_temporaries
from wcgan.cluster import scheduler_job
from wcgan.config import TrainConfig
from wcgan.errors import TrainingInterrupted, WcganError
from wcgan.files import LOSS_COLUMNS, load_checkpoint, save_checkpoint
from wcgan.networks import Generator


class Trainer(Protocol):
    """What the runner needs of a trainer. ``kind`` names its checkpoints' state, ``unit`` its
    generator updates (iteration, round), ``name`` its log lines, ``subject`` its errors;
    ``share`` is how many GANs share the wall clock (a label's seconds are wall clock / share)."""

    kind: str
    unit: str
    name: str
    subject: str
    share: int
    snapshots_taken: int

    def load(self, state: dict[str, Any], path: Path) -> None:
        """Continue from a checkpoint's trainer state (refused in one line if it cannot)."""

    def state(self, count: int) -> dict[str, Any]:
        """The trainer's state for a checkpoint after ``count`` updates; a network holding
        NaN/inf is refused."""

    def new_run_line(self, path: Path) -> str: ...

    def setup_lines(self) -> list[str]: ...

    def start(self) -> None:
        """After the run is set up, before the first step."""

    def step(self, count: int, clock: PhaseClock) -> Any:
        """Generator update number ``count`` (with its critic steps; 1 for a run's first);
        returns what ``record`` keeps."""

    def record(self, count: int, seconds: float, outcome: Any) -> None: ...

    def snapshot(self, count: int, seconds: float) -> None: ...

    def progress_lines(self, count: int, seconds: float, rate: float) -> list[str]: ...

    def checkpoint_written(self, path: Path, count: int) -> None:
        """Heard after each checkpoint written and after one resumed from."""


def budget_progress(config: TrainConfig, iteration: int, seconds: float) -> float:
    """The share of the budget spent: the larger of the iteration and the seconds share."""
    shares = [iteration / config.iterations] if config.iterations is not None else []
    if config.seconds is not None:
        shares.append(seconds / config.seconds)
    return max(shares)


def resumable_checkpoint(path: Path, kind: str, budget: int | None, subject: str) -> dict[str, Any]:
    """A checkpoint to resume from (``files.load_checkpoint``), refused when its count is already
    past the ``budget`` of ``train.iterations``."""
    state = load_checkpoint(path, kind)
    if budget is not None and state["count"] > budget:
        raise WcganError(
            f"{subject}: checkpoint '{path}' is at {state['unit']} {state['count']}, past train.iterations "
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


def prepare_process(device: torch.device, threads: int | None) -> None:
    """Process-wide settings for a trainer on ``device``: the CPU threads, where given, and on a
    GPU cuDNN's autotuner. A trainer's shapes never change, so the autotuner's search is paid
    once; cuDNN's default choice for the gradient penalty's double backward was the slowest
    kernel on an H200, and the autotuner made a 64x64 label 1.35x faster there (docs/gpu.md)."""
    if threads:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


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
    """The cadence around a trainer's updates: the budget check, the seconds trained (each GAN's
    share of the wall clock: wall clock / ``share``), snapshot points at even shares of the
    budget, when to log and checkpoint, and the summary's facts about the session. ``count`` is
    the count of generator updates, named by ``unit``, resumed at ``count`` with ``seconds``
    already trained."""

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


@dataclass(frozen=True)
class Session:
    """How a run went: its cadence (count, seconds, the session's facts), the scheduler job
    and host it ran on, and the seconds of each phase of its loop."""

    house: Housekeeping
    where: dict[str, Any]
    clock: PhaseClock


def run_to_budget(
    trainer: Trainer,
    config: TrainConfig,
    settings: dict[str, Any],
    checkpoint_path: Path,
    clock: PhaseClock,
    log: Callable[[str], None],
) -> Session:
    """Train ``trainer`` (or resume it from ``checkpoint_path``) until ``config``'s budget is
    spent, holding the checkpoint folder's lock. ``settings`` (the effective config) go into
    every checkpoint."""
    name, unit = trainer.name, trainer.unit
    with exclusive_lock(checkpoint_path.parent):
        remove_stale_temporaries(checkpoint_path)
        count, seconds = 0, 0.0
        if checkpoint_path.exists():
            state = resumable_checkpoint(checkpoint_path, trainer.kind, config.iterations, trainer.subject)
            trainer.load(state["state"], checkpoint_path)
            count, seconds = state["count"], state["seconds"]
            trainer.checkpoint_written(checkpoint_path, count)  # a rerun before the next resumes here
            log(f"[{name}] resumed from {checkpoint_path} at {unit} {count} ({seconds:.1f} s trained)")
        else:
            log(trainer.new_run_line(checkpoint_path))
        where = scheduler_job()
        for line in trainer.setup_lines():
            log(line)
        log(f"[{name}] host {where['host']}, scheduler job {where['scheduler_job'] or 'none'}")
        trainer.start()
        house = Housekeeping(config, unit, count, seconds, share=trainer.share)

        def write_checkpoint() -> None:
            runner = {"kind": trainer.kind, "unit": unit, "count": house.count, "seconds": house.seconds}
            save_checkpoint(
                {**runner, "config": settings, "state": trainer.state(house.count)}, checkpoint_path
            )
            trainer.checkpoint_written(checkpoint_path, house.count)

        with stop_requests() as stop_requested:
            while house.budget_left():
                outcome = trainer.step(house.count + 1, clock)
                house.advance()
                trainer.record(house.count, house.seconds, outcome)
                if house.snapshot_due(trainer.snapshots_taken):
                    with clock("checkpoint"):
                        trainer.snapshot(house.count, house.seconds)
                if house.log_due():
                    with clock("logging"):
                        for line in trainer.progress_lines(house.count, house.seconds, house.logged()):
                            log(line)
                if house.checkpoint_due(stop_requested):
                    with clock("checkpoint"):
                        write_checkpoint()
                        house.checkpointed()
                if stop_requested:
                    raise TrainingInterrupted(
                        f"{trainer.subject}: stopped by {signal.Signals(stop_requested[0]).name} at {unit} "
                        f"{house.count}; checkpoint {checkpoint_path} written, rerun to resume",
                        stop_requested[0],
                    )
            with clock("checkpoint"):
                write_checkpoint()
    return Session(house, where, clock)


def snapshot(
    generator: Generator,
    generator_ema: Generator | None,
    iteration: int,
    seconds: float,
    processes: int = 1,
) -> dict[str, Any]:
    """A copy of the generator and of its moving average (when there is one) after
    ``iteration`` updates and ``seconds`` of training by ``processes`` processes, each on a
    device of its own."""
    point = {"iteration": iteration, "seconds": seconds, "device_seconds": seconds * processes}
    for key, network in (("generator", generator), ("generator_ema", generator_ema)):
        if network is not None:
            point[key] = {name: value.detach().cpu().clone() for name, value in network.state_dict().items()}
    return point


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
