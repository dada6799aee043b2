"""Distributed training with local discriminators and a server-side global GAN (Ren et al.,
arXiv:2107.08681), in one process per rank started by ``wcgan.launch`` and talking through
``torch.distributed`` collectives ([Distributed training](../../docs/distributed.md)).

Rank 0 is the server (``_Server``, a trainer of ``wcgan.runner``): G, the global D, G's optimizer
and stream, the budget and the checkpoints. Ranks 1..K are the devices (``_work``): their share of
the images, a local critic's optimizer and stream. One round is one generator update: G and D
broadcast, ``local_steps`` critic steps on each device, one reduce averaging the critics into D
by image counts, and the server's generator step (after the reduce on the ``serial`` schedule,
beside the devices' steps on the ``parallel`` one). A collective that fails (a process gone)
ends the rank with ``GroupBroken``, which the launcher tells from a refusal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from wcgan.config import DistributedConfig, Settings, TrainConfig, label_seed
from wcgan.data import CONDITIONAL, Shard, TrainingSet, one_image_shape
from wcgan.ema import GeneratorAverage
from wcgan.errors import QuietExit, WcganError
from wcgan.files import TrainResult, load_shard
from wcgan.labels import Label
from wcgan.launch import Member, collective, describe_rank, refused_alike
from wcgan.losses import LOSSES, GANLoss, make_optimizer
from wcgan.networks import Critic, Generator, NetworkStack
from wcgan.runner import (
    LossHistory,
    PhaseClock,
    Session,
    prepare_process,
    progress_line,
    run_to_budget,
    snapshot,
    stop_requests,
)
from wcgan.training import (
    critic_steps_on,
    generator_step,
    initial_networks,
    random_streams,
    resolve_device,
    run_key,
)

SERVER = 0  # the server's rank; devices are ranks 1..K
# The server's commands to the devices, the first number of every header it broadcasts.
START, ROUND, GATHER, END = 0, 1, 2, 3
# Per round, then each device's compute and communication seconds.
TIMING_COLUMNS = ("seconds", "broadcast_bytes", "reduce_bytes", "server_compute", "server_communication")


def label_shares(labels: int, devices: int) -> list[range]:
    """Each device's labels under partition ``by_label`` (non-iid): near-equal contiguous runs of
    the ``labels`` shards in the order given, the first ones a label longer."""
    if devices > labels:
        raise WcganError(
            f"distributed.devices {devices} exceeds the number of labels ({labels}) that partition "
            f"by_label shares out: a device would get none"
        )
    size, extra = divmod(labels, devices)
    starts = [d * size + min(d, extra) for d in range(devices + 1)]
    return [range(starts[d], starts[d + 1]) for d in range(devices)]


def iid_rows(images: int, devices: int, seed: int) -> list[torch.Tensor]:
    """Each device's rows under partition ``iid``: a seeded random permutation of the images dealt
    out in near-equal shares, each in data order."""
    if devices > images:
        raise WcganError(
            f"distributed.devices {devices} exceeds the number of images ({images}) that partition "
            f"iid shares out: a device would get none"
        )
    order = torch.randperm(images, generator=torch.Generator().manual_seed(seed))
    return [share.sort().values for share in order.tensor_split(devices)]


def weighted_average(
    states: Sequence[Mapping[str, torch.Tensor]], sizes: Sequence[int]
) -> dict[str, torch.Tensor]:
    """The critics' states (parameters and floating buffers) averaged with weights proportional
    to their devices' image counts ``sizes``: what the server's reduce computes in one collective,
    each device adding its state times ``size / sum(sizes)``."""
    total = sum(sizes)
    return {
        key: sum(state[key] * (size / total) for state, size in zip(states, sizes, strict=True))
        for key in states[0]
    }


def critic_seed(seed: int, device: int) -> int:
    """Device ``device``'s critic stream seed: device 1 draws from the stream ``train``'s critic
    steps use (so one device reproduces ``train``), the others from seeds derived from it."""
    return seed if device == 1 else label_seed(seed, f"device-{device}")


def rank_device(name: str) -> torch.device:
    """This process's device for ``train.device``: a GPU without an index is the one of the
    process's local rank on its node (``LOCAL_RANK``, which the CLI sets for every launcher)."""
    device = resolve_device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return device


def resolve_backend(name: str, device: torch.device) -> str:
    """The collectives' backend: nccl for GPUs, gloo for CPUs (its reduce takes CPU tensors only)."""
    if name == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if (name == "nccl") != (device.type == "cuda"):
        need = "GPUs" if name == "nccl" else "train.device cpu"
        raise WcganError(f"distributed.backend {name} needs {need}, but this process runs on {device}")
    return name


# --- collectives --------------------------------------------------------------------------


def _state(*modules: torch.nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The modules' parameters and buffers, floating and integer apart, in state-dict order. They
    share storage with the modules: copying into them loads the modules."""
    tensors = [t for module in modules for t in module.state_dict().values()]
    return [t for t in tensors if t.is_floating_point()], [t for t in tensors if not t.is_floating_point()]


def _flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _unflatten_into(flat: torch.Tensor, tensors: Sequence[torch.Tensor]) -> None:
    for tensor, part in zip(tensors, flat.split([t.numel() for t in tensors]), strict=True):
        tensor.copy_(part.view_as(tensor))


def _on_cpu(value: Any) -> Any:
    """An optimizer's state dict with its tensors on the CPU, to send to the server."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _on_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_on_cpu(v) for v in value]
    return value


class _Link:
    """The collectives between server and devices, timed, with the round payload's bytes counted
    as the server sends (broadcast to each device) and receives them (reduced from each)."""

    def __init__(self, devices: int, device: torch.device, ints: int):
        self.devices, self.device, self.ints = devices, device, ints
        self.seconds = 0.0  # inside collectives since the last ``take``
        self.bytes = {"broadcast": 0, "reduce": 0}
        self.listening = False  # the server's view: the devices wait for a command

    @contextlib.contextmanager
    def _timed(self, what: str) -> Iterator[None]:
        start = time.perf_counter()
        with collective(what):
            yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds += time.perf_counter() - start

    def take(self) -> tuple[float, int, int]:
        """Seconds in collectives and bytes broadcast and reduced since the last call."""
        taken = (self.seconds, self.bytes["broadcast"], self.bytes["reduce"])
        self.seconds, self.bytes = 0.0, {"broadcast": 0, "reduce": 0}
        return taken

    def broadcast(self, tensor: torch.Tensor) -> None:
        with self._timed("a broadcast"):
            dist.broadcast(tensor, SERVER)
        self.bytes["broadcast"] += tensor.nbytes * self.devices

    def reduce(self, tensor: torch.Tensor) -> None:
        with self._timed("a reduce"):
            dist.reduce(tensor, SERVER)
        self.bytes["reduce"] += tensor.nbytes * self.devices

    def send(self, command: int, generator: Generator) -> None:
        """The server's header: the command and G's integer buffers (batch norm's counters)."""
        _, ints = _state(generator)
        header = torch.cat([torch.tensor([command], device=self.device), *(t.reshape(-1) for t in ints)])
        self.listening = False  # until the command's exchange is over (or the group is lost)
        self.broadcast(header)

    def receive(self, generator: Generator) -> int:
        """A device's next command; G's integer buffers are loaded for a round."""
        header = torch.empty(1 + self.ints, dtype=torch.int64, device=self.device)
        self.broadcast(header)
        command = int(header[0])
        if command == ROUND:
            _unflatten_into(header[1:], _state(generator)[1])
        return command

    def gather(self, state: Any) -> list[Any] | None:
        """Every rank's ``state`` on the server (None elsewhere)."""
        gathered = [None] * (self.devices + 1) if dist.get_rank() == SERVER else None
        with collective("the checkpoint's gather"):
            dist.gather_object(state, gathered, dst=SERVER)
        return gathered

    def scatter(self, states: list[Any] | None) -> Any:
        """``states[rank]`` to each rank, from the server's list."""
        out = [None]
        with collective("the start's scatter"):
            dist.scatter_object_list(out, states, src=SERVER)
        return out[0]


# --- training -----------------------------------------------------------------------------


@dataclass
class _Run:
    """What every rank sets up alike."""

    data: TrainingSet  # a device's: its own images; the server's: their shape and classes only
    config: TrainConfig
    dist_config: DistributedConfig
    settings: Settings
    device: torch.device
    seed: int
    sizes: list[int]  # each device's image count
    device_labels: list[list[str]]  # each device's labels' slugs
    generator: Generator
    critic: Critic
    loss: GANLoss
    link: _Link

    @property
    def local_steps(self) -> int:
        return self.dist_config.local_steps or self.settings.critic_steps

    def optimizer(self, module: torch.nn.Module) -> torch.optim.Optimizer:
        s = self.settings
        return make_optimizer(s.optimizer, module.parameters(), s.lr, s.betas)

    def layout(self) -> dict[str, Any]:
        """What a checkpoint must have been written with to be continued."""
        d = self.dist_config
        return {
            "world_size": d.devices + 1,
            "devices": d.devices,
            "partition": d.partition,
            "schedule": d.schedule,
            "local_steps": self.local_steps,
        }


def _describe(layout: Mapping[str, Any]) -> str:
    return (
        f"world size {layout['world_size']} (devices {layout['devices']}, partition {layout['partition']}, "
        f"schedule {layout['schedule']}, local steps {layout['local_steps']})"
    )


def train_rank(
    member: Member,
    shards: Sequence[str],
    config: TrainConfig,
    dist_config: DistributedConfig,
    checkpoint_dir: str | Path,
    *,
    threads: int | None,
    log: Callable[[str], None],
    checkpointed: Callable[[Path, int], None],
) -> tuple[TrainResult, TrainingSet] | None:
    """One rank of a launched group: join the process group, run ``train_distributed``, leave."""
    device = rank_device(config.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    log(f"{member.describe()}: {member.launcher} rank {member.rank} of {member.world_size}, on {device}")
    with collective("the rendezvous"):  # a process missing: the group is lost, not refused
        dist.init_process_group(
            resolve_backend(dist_config.backend, device),
            init_method=member.init_method,
            rank=member.rank,
            world_size=member.world_size,
        )
    try:
        return train_distributed(
            shards, config, dist_config, checkpoint_dir, threads=threads, log=log, checkpointed=checkpointed
        )
    finally:
        dist.destroy_process_group()


def train_distributed(
    shards: Sequence[str],
    config: TrainConfig,
    dist_config: DistributedConfig,
    checkpoint_dir: str | Path,
    *,
    threads: int | None = None,
    log: Callable[[str], None] = print,
    checkpointed: Callable[[Path, int], None] | None = None,
) -> tuple[TrainResult, TrainingSet] | None:
    """Run this process's part of distributed training (or resume it) until the server's budget
    is spent: the server's on rank 0, which returns the result and the data's description, a
    device's on the others, which return None. ``shards`` are every label's shard files, in
    the order ``by_label`` shares them out; a device reads only its own (``by_label``) or all of
    them (``iid``), the server none. Needs an initialised process group of
    ``dist_config.devices + 1`` processes. ``checkpointed`` hears of each checkpoint the server
    writes or resumes from (where a restarted group resumes)."""
    config.check()
    dist_config.check()
    world, devices, rank = dist.get_world_size(), dist_config.devices, dist.get_rank()
    if world != devices + 1:
        with refused_alike(rank):
            raise WcganError(
                f"the launch has world size {world}, but distributed.devices {devices} needs {devices + 1} "
                f"(the server and one per device)"
            )
    device = rank_device(config.device)
    prepare_process(device, threads)
    settings = config.resolved()
    seed = settings.seed(CONDITIONAL)
    data, sizes, device_labels, data_key = _share_data(shards, dist_config, seed)
    generator, critic = initial_networks(config, data)
    generator, critic = generator.to(device), critic.to(device)
    loss = LOSSES[config.loss](**settings.loss_options)
    link = _Link(devices, device, ints=sum(t.numel() for t in _state(generator)[1]))
    run = _Run(
        data,
        config,
        dist_config,
        settings,
        device,
        seed,
        sizes,
        device_labels,
        generator,
        critic,
        loss,
        link,
    )
    if rank == SERVER:
        # Named by the config and the images' digests, as run_key names a chunk's checkpoint.
        key = hashlib.sha256(f"{run_key(settings, [], device)}:{data_key}".encode()).hexdigest()[:16]
        checkpoint_path = Path(checkpoint_dir) / f"distributed-{key}.pt"
        return _serve(run, checkpoint_path, log, checkpointed), data
    _work(run)
    return None


def _read_shards(shards: Sequence[str], shares: list[range] | None) -> list[Shard]:
    """This rank's shards, in label order: a device's share of the labels under ``by_label``,
    every label's under ``iid`` (no ``shares``: it draws its share of the images from all of
    them), none on the server."""
    rank = dist.get_rank()
    if rank == SERVER:
        return []
    if shares is not None:
        shards = [shards[i] for i in shares[rank - 1]]
    return sorted((load_shard(path) for path in shards), key=lambda shard: shard.label.index)


def _refuse_repeated_labels(labels: Sequence[Label]) -> None:
    seen: set[int] = set()
    for label in labels:
        if label.index in seen:
            raise WcganError(
                f"label '{label.name}' (index {label.index}) has more than one shard: give each label's once"
            )
        seen.add(label.index)


def _share_data(
    shards: Sequence[str], dist_config: DistributedConfig, seed: int
) -> tuple[TrainingSet, list[int], list[list[str]], str]:
    """Each device reads its shards and tells every rank its labels, their image counts and the
    images' shape (or why it could not read them): one exchange, after which every rank knows
    the labels' numbering and each device's share, and the server what it needs without the
    images. The rank's set (a device's own images; the server's shapes and classes), each
    device's image count and labels, and a digest of every label's images (what the
    checkpoint's name follows). A device that cannot read a shard names it in its own line;
    the other ranks end quietly."""
    devices, rank = dist_config.devices, dist.get_rank()
    by_label = dist_config.partition == "by_label"
    with refused_alike(rank):
        shares = label_shares(len(shards), devices) if by_label else None
    own: list[Shard] = []
    report: dict[str, Any] = {}
    try:
        own = _read_shards(shards, shares)
        _refuse_repeated_labels([s.label for s in own])
        if own:
            shape = one_image_shape((tuple(shard.images.shape[1:]), shard.label.name) for shard in own)
            report = {
                "labels": [s.label for s in own],
                "counts": [len(s.images) for s in own],
                "digests": [hashlib.sha256(s.images.numpy().tobytes()).hexdigest() for s in own],
                "shape": shape,
            }
    except WcganError as exc:
        report = {"error": str(exc)}
    reports: list[Any] = [None] * (devices + 1)
    with collective("the start's exchange"):
        dist.all_gather_object(reports, report)
    refused = {r: rep["error"] for r, rep in enumerate(reports) if "error" in rep}
    if refused:
        # Under iid every device reads every shard: the lowest rank with a message says it.
        if "error" in report and min(r for r, m in refused.items() if m == report["error"]) == rank:
            raise WcganError(report["error"])
        raise QuietExit(f"{', '.join(describe_rank(r, None) for r in refused)} could not read its shards")
    held = reports[1:]
    with refused_alike(rank):
        shape = one_image_shape((rep["shape"], rep["labels"][0].name) for rep in held)
        if by_label:
            _refuse_repeated_labels([label for rep in held for label in rep["labels"]])
    counts = {label.index: n for rep in held for label, n in zip(rep["labels"], rep["counts"], strict=True)}
    digests = {label.index: d for rep in held for label, d in zip(rep["labels"], rep["digests"], strict=True)}
    labels = sorted(
        {label.index: label for rep in held for label in rep["labels"]}.values(), key=lambda lb: lb.index
    )
    position = {label.index: c for c, label in enumerate(labels)}
    classes = torch.repeat_interleave(
        torch.arange(len(labels)), torch.tensor([counts[lb.index] for lb in labels])
    )
    if not by_label:
        with refused_alike(rank):
            partition = iid_rows(len(classes), devices, seed)
    else:
        partition = [
            torch.isin(classes, torch.tensor([position[lb.index] for lb in rep["labels"]]))
            .nonzero()
            .squeeze(1)
            for rep in held
        ]
    sizes = [len(rows) for rows in partition]
    device_labels = [[labels[c].slug for c in classes[rows].unique().tolist()] for rows in partition]
    data_key = hashlib.sha256(
        "".join(f"{lb.slug}:{counts[lb.index]}:{digests[lb.index]};" for lb in labels).encode()
    ).hexdigest()
    if rank == SERVER:  # the images' shape and classes, not the images
        images = torch.empty((len(classes), *shape), dtype=torch.uint8, device="meta")
        return TrainingSet(images, labels, classes, CONDITIONAL), sizes, device_labels, data_key
    images = torch.cat([shard.images for shard in own])
    own_classes = torch.cat([torch.full((len(s.images),), position[s.label.index]) for s in own])
    if not by_label:  # it read every label's images: keep its share
        rows = partition[rank - 1]
        images, own_classes = images[rows], own_classes[rows]
    return TrainingSet(images, labels, own_classes, CONDITIONAL), sizes, device_labels, data_key


def _work(run: _Run) -> None:
    """A device: its share of the images, its local critic's optimizer and critic stream; it
    does what the server's commands say until told to end."""
    rank, link, generator, critic = dist.get_rank(), run.link, run.generator, run.critic
    images = run.data.images.to(run.device)  # uint8: critic_steps_on converts each batch
    classes = run.data.classes.to(run.device)
    weight = len(images) / sum(run.sizes)
    optimizer = run.optimizer(critic)
    rng = torch.Generator(device=run.device).manual_seed(critic_seed(run.seed, rank))
    floats, _ = _state(generator, critic)
    received = torch.empty(sum(t.numel() for t in floats), dtype=floats[0].dtype, device=run.device)
    timing = torch.zeros(run.dist_config.devices, 2, device=run.device)
    generators, critics = NetworkStack([generator]), NetworkStack([critic])  # the loop's chunk of one
    # Signals are the server's to act on: it checkpoints with the devices' help, then ends them.
    with stop_requests():
        if link.receive(generator) == END:
            return
        state = link.scatter(None)
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            rng.set_state(state["critic_rng"])
        while (command := link.receive(generator)) != END:
            if command == GATHER:
                link.gather({"optimizer": _on_cpu(optimizer.state_dict()), "critic_rng": rng.get_state()})
                continue
            link.broadcast(received)
            _unflatten_into(received, floats)
            start = time.perf_counter()
            means, _ = critic_steps_on(
                generators,
                critics,
                optimizer,
                run.loss,
                [images],
                classes,
                [rng],
                run.local_steps,
                run.config.batch_size,
            )
            if run.device.type == "cuda":
                torch.cuda.synchronize(run.device)
            timing[rank - 1] = torch.tensor([time.perf_counter() - start, link.take()[0]])
            critic_floats, _ = _state(critic)
            link.reduce(torch.cat([_flat(critic_floats) * weight, means[0] * weight, timing.flatten()]))


class _Server:
    """The runner's trainer on the server: G, the global D, G's optimizer and stream, the
    history and each round's timing; a step is one round with the devices."""

    kind, unit, share = "distributed", "round", 1

    def __init__(self, run: _Run, checkpointed: Callable[[Path, int], None] | None):
        self.run, self.checkpointed = run, checkpointed
        self.name = run.data.name
        self.subject = f"'{self.name}'"
        self.optimizer = run.optimizer(run.generator)
        ema, batch = run.settings.ema, run.config.batch_size
        self.average = GeneratorAverage([run.generator], ema, batch) if ema else None
        _, self.generator_rng = random_streams(run.seed, run.device)
        self.class_table = run.data.classes.to(run.device)  # how often each class occurs, not the images
        self.generators, self.critics = (
            NetworkStack([run.generator]),
            NetworkStack([run.critic]),
        )  # a chunk of one
        self.layout = run.layout()
        self.critic_size = sum(t.numel() for t in _state(run.critic)[0])
        self.history = LossHistory(self.subject, "round")
        devices = run.dist_config.devices
        self.timings = torch.zeros(0, len(TIMING_COLUMNS) + 2 * devices, dtype=torch.float64)
        self.snapshots: list[dict[str, Any]] = []
        self.device_states: list[Any] = [None] * devices

    @property
    def snapshots_taken(self) -> int:
        return len(self.snapshots)

    def load(self, state: dict[str, Any], path: Path) -> None:
        if state["layout"] != self.layout:
            raise WcganError(
                f"checkpoint '{path}' was written by a launch of {_describe(state['layout'])}, "
                f"not {_describe(self.layout)}; launch it as it was, or move it away to retrain"
            )
        self.run.generator.load_state_dict(state["generator"])
        self.run.critic.load_state_dict(state["critic"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator_rng.set_state(state["generator_rng"])
        if self.average is not None:
            self.average.load([state["generator_ema"]])
        self.history.rows = state["history"]
        self.timings, self.snapshots, self.device_states = (
            state["timings"],
            state["snapshots"],
            state["devices"],
        )

    def state(self, count: int) -> dict[str, Any]:
        """The devices hand over their optimizers' state and streams first."""
        run, link = self.run, self.run.link
        self.history.flush()
        link.send(GATHER, run.generator)
        self.device_states = link.gather(None)[1:]
        link.listening = True
        return {
            "layout": self.layout,
            "history": self.history.rows,
            "timings": self.timings,
            "generator": run.generator.state_dict(),
            **({"generator_ema": self.average.state()[0]} if self.average is not None else {}),
            "critic": run.critic.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator_rng": self.generator_rng.get_state(),
            "devices": self.device_states,
            "snapshots": self.snapshots,
            "distributed": dataclasses.asdict(run.dist_config),
        }

    def new_run_line(self, path: Path) -> str:
        return f"[{self.name}] new distributed run {path.stem}: seed {self.run.seed}"

    def setup_lines(self) -> list[str]:
        return [
            f"[{self.name}] server on {self.run.device}, {_describe(self.layout)}, images per device {self.run.sizes}"
        ]

    def start(self) -> None:
        link = self.run.link
        link.send(START, self.run.generator)
        link.scatter([None, *self.device_states])
        link.listening = True

    def _generator_step(self) -> tuple[torch.Tensor, float]:
        run, start = self.run, time.perf_counter()
        (generator_loss,) = generator_step(
            self.generators, self.critics, self.optimizer, run.loss, self.class_table, [self.generator_rng],
            run.config.batch_size,
        )  # fmt: skip
        if run.device.type == "cuda":
            torch.cuda.synchronize(run.device)
        return generator_loss, time.perf_counter() - start

    def step(self, count: int, clock: PhaseClock) -> tuple[torch.Tensor, torch.Tensor]:
        """Round ``count``; its losses and its timing row (``TIMING_COLUMNS``, then each
        device's)."""
        run, link, devices = self.run, self.run.link, self.run.dist_config.devices
        parallel = run.dist_config.schedule == "parallel"
        link.take()  # the round's own traffic and time, not the exchanges between rounds
        round_start = time.perf_counter()
        link.send(ROUND, run.generator)
        link.broadcast(_flat(_state(run.generator, run.critic)[0]))
        if parallel:  # against the D just broadcast, while the devices compute
            generator_loss, compute = self._generator_step()
        reduced = torch.zeros(self.critic_size + 3 + 2 * devices, device=run.device)
        link.reduce(reduced)
        link.listening = True
        _unflatten_into(reduced[: self.critic_size], _state(run.critic)[0])
        if not parallel:  # against the new D
            generator_loss, compute = self._generator_step()
        communication, sent, received = link.take()
        if self.average is not None:  # on the server alone, between rounds: not the devices' time
            self.average.update(count)
        means, device_timing = reduced[self.critic_size :].split([3, 2 * devices])
        row = [time.perf_counter() - round_start, sent, received, compute, communication]
        row = torch.cat([torch.tensor(row, dtype=torch.float64), device_timing.double().cpu()])
        return torch.cat([means, generator_loss[None]]), row

    def record(self, count: int, seconds: float, outcome: tuple[torch.Tensor, torch.Tensor]) -> None:
        losses, row = outcome
        self.history.add(count, seconds, losses)
        self.timings = torch.cat([self.timings, row[None]])

    @property
    def averaged(self) -> Generator | None:
        return self.average.averages[0] if self.average is not None else None

    def snapshot(self, count: int, seconds: float) -> None:
        processes = self.run.dist_config.processes
        self.snapshots.append(snapshot(self.run.generator, self.averaged, count, seconds, processes))

    def progress_lines(self, count: int, seconds: float, rate: float) -> list[str]:
        run = self.run
        self.history.flush()
        images_per_round = run.config.batch_size * run.local_steps * run.dist_config.devices
        return [
            progress_line(
                self.name, run.config, count, seconds, rate, images_per_round, self.history.rows[-1]
            )
        ]

    def checkpoint_written(self, path: Path, count: int) -> None:
        if self.checkpointed:
            self.checkpointed(path, count)

    def result(self, session: Session, checkpoint_path: Path) -> TrainResult:
        run, house = self.run, session.house
        data, dist_config = run.data, run.dist_config
        round_, trained_seconds, done = house.count, house.seconds, house.done
        summary = {
            **data.identity(),
            "loss": run.config.loss,
            "iterations": round_,
            "rounds": round_,
            "seconds": trained_seconds,
            "device_seconds": trained_seconds * dist_config.processes,
            **house.summary(),
            "rounds_per_second": done / house.session_seconds if done else None,
            **self.layout,
            "backend": dist.get_backend(),
            "device_images": run.sizes,
            "device_labels": run.device_labels,
            **_traffic_and_timing(self.timings, dist_config.devices),
            "device": str(run.device),
            **session.where,
            "threads": torch.get_num_threads(),
            "images": len(data.images),
            "resolution": data.resolution,
            "channels": data.channels,
            "checkpoint": str(checkpoint_path),
            "config": run.settings.effective,
            "distributed": dataclasses.asdict(dist_config),
            "snapshots": [[point["iteration"], point["seconds"]] for point in self.snapshots]
            + [[round_, trained_seconds]],
        }
        final = snapshot(run.generator, self.averaged, round_, trained_seconds, dist_config.processes)
        points = [*self.snapshots, final] if run.config.snapshots else []
        return TrainResult(run.generator.eval(), self.averaged, self.history.rows, summary, points)


def _serve(
    run: _Run,
    checkpoint_path: Path,
    log: Callable[[str], None],
    checkpointed: Callable[[Path, int], None] | None,
) -> TrainResult:
    """The server's part: the runner drives ``_Server``; the devices are told to end however
    the run ends (a refused lock or checkpoint included), unless the group is already lost."""
    server = _Server(run, checkpointed)
    run.link.listening = True
    try:
        session = run_to_budget(
            server, run.config, run.settings.effective, checkpoint_path, PhaseClock(False), log
        )
    finally:
        if run.link.listening:
            run.link.send(END, run.generator)
    result = server.result(session, checkpoint_path)
    summary = result.summary
    log(
        f"[{server.name}] done: {summary['rounds']} rounds, {summary['seconds']:.1f} s trained, "
        f"{summary['seconds_per_round']:.4f} s and {summary['bytes_per_round']} bytes per round"
    )
    return result


def _traffic_and_timing(timings: torch.Tensor, devices: int) -> dict[str, Any]:
    """The summary's bytes per round (the same every round) and mean seconds per round, from
    the rows of ``TIMING_COLUMNS`` and each device's compute and communication seconds.
    Communication is the time inside collectives, waiting for the other side included."""
    fixed = len(TIMING_COLUMNS)
    mean = dict(zip(TIMING_COLUMNS, timings[:, :fixed].mean(0).tolist(), strict=True))
    device_compute, device_communication = timings[:, fixed:].view(len(timings), devices, 2).unbind(2)
    broadcast, reduce = int(timings[-1, 1]), int(timings[-1, 2])
    return {
        "bytes_per_round": broadcast + reduce,
        "broadcast_bytes_per_round": broadcast,
        "reduce_bytes_per_round": reduce,
        "seconds_per_round": mean["seconds"],
        "compute_seconds_per_round": {
            "server": mean["server_compute"],
            "devices": device_compute.mean().item(),
        },
        "communication_seconds_per_round": {
            "server": mean["server_communication"],
            "devices": device_communication.mean().item(),
        },
        "device_seconds_per_round": [
            {"compute": compute, "communication": communication}
            for compute, communication in zip(
                device_compute.mean(0).tolist(), device_communication.mean(0).tolist(), strict=True
            )
        ],
    }
