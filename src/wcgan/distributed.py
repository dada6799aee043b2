"""Distributed training with local discriminators and a server-side global GAN (Ren et al.,
arXiv:2107.08681): one server process and one process per device, talking through
``torch.distributed`` collectives (gloo on CPUs, nccl on GPUs), started by torchrun, srun or
jsrun (``wcgan.launch``, which also restarts the group when a process is lost)::

    wcgan train-distributed --launch torchrun --shard a.pt b.pt ... --devices 2

Rank 0 is the server: it holds the global generator G, the global critic D, G's optimizer and
the generator step's random stream. Ranks 1..K are the devices: each holds its share of the
images (``distributed.partition``: ``iid`` or ``by_label``), its local critic's optimizer and
its own critic stream. One round is one generator update:

1. the server broadcasts G and D (parameters and buffers: batch norm statistics, spectral
   norm's u and v travel with the weights);
2. each device sets its local critic to D and takes ``local_steps`` critic steps on its own
   images and on fakes it draws from G itself;
3. the devices' critics are summed into the server's D with weights proportional to their image
   counts (one reduce: the data-size-weighted average, buffers included);
4. the server takes one generator step against D.

The ``serial`` schedule runs these in order. The ``parallel`` one moves step 4 between 1 and 3:
the server updates G against the D it has just broadcast while the devices compute, and only
then joins the reduce. A device's critic optimizer keeps its state from round to round; it is
the device's own and is not averaged. Two-stage training only: the critic and generator steps
run on different processes.

The random numbers follow ``wcgan.training.train``: device 1 draws its batches, latents and
penalty interpolates from the critic stream ``train`` uses, the server its latents and classes
from ``train``'s generator stream, and every process starts from ``train``'s initial networks,
so one device on the serial schedule reproduces ``train`` (two-stage) step for step: the same
loss history and the same generator weights (the generator's batch norm running statistics
differ, since the devices' fakes no longer update the server's copy). Other devices get
critic streams of their own, seeded from the run's seed and their rank.

The data stays with the devices: under ``by_label`` a device reads only its own labels' shards,
under ``iid`` every shard (it keeps a random share of the images); the server reads none. One
exchange at the start tells every rank the labels, their image counts and the images' shape,
so the server knows the class counts (the generator step draws classes as often as the data
has them) and the devices the labels' numbering. A collective that fails (a process gone)
ends the rank with ``GroupBroken``, which the launcher tells from a refusal. Per round the
server records its wall-clock seconds, each side's compute seconds (the devices' critic steps,
its own generator step), the seconds inside collectives (waiting for the other side included)
and the bytes the collectives carry, counted from the tensors' sizes: the command, G and D
broadcast to each device, and each device's weighted D, loss means and timings reduced.

The budget is counted in rounds (``train.iterations``) or in the server's seconds
(``train.seconds``); the server decides when it is spent and tells the devices, as it tells
them to hand over their optimizer state and stream for a checkpoint. Checkpoints (every
``checkpoint_seconds``, on SIGTERM/Ctrl-C, and at the end) are written by the server alone,
atomically, and hold everything needed to continue exactly; one written by a different layout
(world size, devices, partition, schedule, local steps) is refused. The server holds the
checkpoint folder's lock (``wcgan.atomic.exclusive_lock``) while it runs.
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

from wcgan.atomic import exclusive_lock, remove_stale_temporaries, save_torch
from wcgan.cluster import scheduler_job
from wcgan.config import DistributedConfig, TrainConfig, label_seed
from wcgan.data import CONDITIONAL, Shard, TrainingSet, load_shard
from wcgan.errors import QuietExit, WcganError
from wcgan.labels import Label
from wcgan.launch import collective, describe_rank, refused_alike
from wcgan.losses import LOSSES, GANLoss, make_optimizer
from wcgan.networks import Critic, Generator, NetworkStack
from wcgan.training import (
    Housekeeping,
    LossHistory,
    TrainResult,
    critic_steps_on,
    generator_step,
    initial_networks,
    load_checkpoint,
    progress_line,
    random_streams,
    resolve_device,
    run_key,
    snapshot,
    stop_requests,
)

CHECKPOINT_FORMAT = "wcgan-distributed-checkpoint-1"
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
    settings: dict[str, Any]
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
        return self.dist_config.local_steps or self.settings["critic_steps"]

    def optimizer(self, module: torch.nn.Module) -> torch.optim.Optimizer:
        s = self.settings
        return make_optimizer(s["optimizer"], module.parameters(), s["lr"], s["betas"])

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
    if threads:
        torch.set_num_threads(threads)
    device = rank_device(config.device)
    seed = label_seed(config.seed, CONDITIONAL)
    data, sizes, device_labels, data_key = _share_data(shards, dist_config, seed)
    generator, critic = initial_networks(config, data)
    generator, critic = generator.to(device), critic.to(device)
    loss = LOSSES[config.loss](**config.loss_options())
    link = _Link(devices, device, ints=sum(t.numel() for t in _state(generator)[1]))
    run = _Run(
        data,
        config,
        dist_config,
        config.effective(),
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
        key = hashlib.sha256(f"{run_key(config, [], device)}:{data_key}".encode()).hexdigest()[:16]
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
            shapes = {tuple(shard.images.shape[1:]) for shard in own}
            if len(shapes) > 1:
                raise WcganError(f"the shards hold images of different shapes {sorted(shapes)}")
            report = {
                "labels": [s.label for s in own],
                "counts": [len(s.images) for s in own],
                "digests": [hashlib.sha256(s.images.numpy().tobytes()).hexdigest() for s in own],
                "shape": shapes.pop(),
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
    shapes = {rep["shape"] for rep in held}
    with refused_alike(rank):
        if len(shapes) > 1:
            raise WcganError(f"the devices' shards hold images of different shapes {sorted(shapes)}")
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
        images = torch.empty((len(classes), *shapes.pop()), dtype=torch.uint8, device="meta")
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


def _serve(
    run: _Run,
    checkpoint_path: Path,
    log: Callable[[str], None],
    checkpointed: Callable[[Path, int], None] | None,
) -> TrainResult:
    """The server: G, the global D, G's optimizer and stream, the budget, the history and the
    checkpoints."""
    data, config, dist_config, link = run.data, run.config, run.dist_config, run.link
    generator, critic, device, devices = run.generator, run.critic, run.device, dist_config.devices
    name, sizes = data.name, run.sizes
    optimizer = run.optimizer(generator)
    _, generator_rng = random_streams(run.seed, device)
    class_table = data.classes.to(device)  # how often each class occurs, not the images
    generators, critics = NetworkStack([generator]), NetworkStack([critic])  # the loop's chunk of one
    layout = run.layout()
    parallel = dist_config.schedule == "parallel"
    critic_size = sum(t.numel() for t in _state(critic)[0])

    round_, trained_seconds, history = 0, 0.0, LossHistory(f"'{name}'", "round")
    timings = torch.zeros(0, len(TIMING_COLUMNS) + 2 * devices, dtype=torch.float64)
    snapshots: list[dict[str, Any]] = []
    device_states: list[Any] = [None] * devices
    link.listening = True
    lock = contextlib.ExitStack()
    try:
        # Inside the try: a refused lock ends the waiting devices too, as a bad checkpoint does.
        lock.enter_context(exclusive_lock(checkpoint_path.parent))
        remove_stale_temporaries(checkpoint_path)
        if checkpoint_path.exists():
            # The round counts generator updates, as train.iterations does.
            state = load_checkpoint(
                checkpoint_path, CHECKPOINT_FORMAT, "round", config.iterations, f"'{name}'"
            )
            if state["layout"] != layout:
                raise WcganError(
                    f"checkpoint '{checkpoint_path}' was written by a launch of {_describe(state['layout'])}, "
                    f"not {_describe(layout)}; launch it as it was, or move it away to retrain"
                )
            generator.load_state_dict(state["generator"])
            critic.load_state_dict(state["critic"])
            optimizer.load_state_dict(state["optimizer"])
            generator_rng.set_state(state["generator_rng"])
            round_, trained_seconds = state["round"], state["seconds"]
            history.rows = state["history"]
            timings, snapshots, device_states = state["timings"], state["snapshots"], state["devices"]
            if checkpointed:  # a group restarted again before its next checkpoint resumes here too
                checkpointed(checkpoint_path, round_)
            log(
                f"[{name}] resumed from {checkpoint_path} at round {round_} ({trained_seconds:.1f} s trained)"
            )
        else:
            log(f"[{name}] new distributed run {checkpoint_path.stem}: seed {run.seed}")
        where = scheduler_job()
        log(f"[{name}] server on {device}, {_describe(layout)}, images per device {sizes}")
        log(f"[{name}] host {where['host']}, scheduler job {where['scheduler_job'] or 'none'}")
        link.send(START, generator)
        link.scatter([None, *device_states])
        link.listening = True

        def save_checkpoint() -> None:
            nonlocal device_states
            link.send(GATHER, generator)
            device_states = link.gather(None)[1:]
            link.listening = True
            save_torch(
                {
                    "format": CHECKPOINT_FORMAT,
                    "layout": layout,
                    "round": round_,
                    "seconds": trained_seconds,
                    "history": history.rows,
                    "timings": timings,
                    "generator": generator.state_dict(),
                    "critic": critic.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "generator_rng": generator_rng.get_state(),
                    "devices": device_states,
                    "snapshots": snapshots,
                    "config": run.settings,
                    "distributed": dataclasses.asdict(dist_config),
                },
                checkpoint_path,
            )
            if checkpointed:
                checkpointed(checkpoint_path, round_)

        def step_generator() -> tuple[torch.Tensor, float]:
            start = time.perf_counter()
            (generator_loss,) = generator_step(
                generators, critics, optimizer, run.loss, class_table, [generator_rng], config.batch_size
            )
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            return generator_loss, time.perf_counter() - start

        house = Housekeeping(config, "round", round_, trained_seconds)
        with stop_requests() as stop_requested:
            while house.budget_left():
                link.take()  # the round's own traffic and time, not the exchanges between rounds
                round_start = time.perf_counter()
                link.send(ROUND, generator)
                link.broadcast(_flat(_state(generator, critic)[0]))
                if parallel:  # against the D just broadcast, while the devices compute
                    generator_loss, compute = step_generator()
                reduced = torch.zeros(critic_size + 3 + 2 * devices, device=device)
                link.reduce(reduced)
                link.listening = True
                _unflatten_into(reduced[:critic_size], _state(critic)[0])
                if not parallel:  # against the new D
                    generator_loss, compute = step_generator()
                communication, sent, received = link.take()
                house.advance()
                round_, trained_seconds = house.count, house.seconds
                means, device_timing = reduced[critic_size:].split([3, 2 * devices])
                history.add(round_, trained_seconds, torch.cat([means, generator_loss[None]]))
                row = [time.perf_counter() - round_start, sent, received, compute, communication]
                row = torch.cat([torch.tensor(row, dtype=torch.float64), device_timing.double().cpu()])
                timings = torch.cat([timings, row[None]])
                if house.snapshot_due(len(snapshots)):
                    snapshots.append(snapshot(generator, round_, trained_seconds, dist_config.processes))
                if house.log_due():
                    history.flush()
                    images_per_round = config.batch_size * run.local_steps * devices
                    rate = house.logged()
                    log(
                        progress_line(
                            name, config, round_, trained_seconds, rate, images_per_round, history.rows[-1]
                        )
                    )
                if house.checkpoint_due(stop_requested):
                    history.flush()
                    save_checkpoint()
                    house.checkpointed()
                house.stop_if_requested(stop_requested, f"'{name}'", checkpoint_path)
            history.flush()
            save_checkpoint()
    finally:
        try:
            if link.listening:
                link.send(END, generator)
        finally:
            lock.close()

    session_seconds, done = house.session_seconds, house.done
    summary = {
        **data.identity(),
        "loss": config.loss,
        "iterations": round_,
        "rounds": round_,
        "seconds": trained_seconds,
        "device_seconds": trained_seconds * dist_config.processes,
        **house.summary(),
        "rounds_per_second": done / session_seconds if done else None,
        **layout,
        "backend": dist.get_backend(),
        "device_images": sizes,
        "device_labels": run.device_labels,
        **_traffic_and_timing(timings, devices),
        "device": str(device),
        **where,
        "threads": torch.get_num_threads(),
        "images": len(data.images),
        "resolution": data.resolution,
        "channels": data.channels,
        "checkpoint": str(checkpoint_path),
        "config": run.settings,
        "distributed": dataclasses.asdict(dist_config),
        "snapshots": [[point["iteration"], point["seconds"]] for point in snapshots]
        + [[round_, trained_seconds]],
    }
    log(
        f"[{name}] done: {round_} rounds, {trained_seconds:.1f} s trained, "
        f"{summary['seconds_per_round']:.4f} s and {summary['bytes_per_round']} bytes per round"
    )
    points = (
        [*snapshots, snapshot(generator, round_, trained_seconds, dist_config.processes)]
        if config.snapshots
        else []
    )
    return TrainResult(generator.eval(), history.rows, summary, points)


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
