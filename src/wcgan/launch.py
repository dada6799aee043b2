"""Launching the processes of distributed training (``wcgan.distributed``) and keeping the group
alive.

- **Where a process stands.** ``member_from_environment`` reads a process's rank, the group's
  size and the rendezvous from its launcher's environment: torchrun's (``RANK``, ``WORLD_SIZE``,
  ``MASTER_ADDR``), Slurm's srun (``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS``; the store on the
  first node of ``SLURM_STEP_NODELIST``) or LSF's jsrun (``JSM_NAMESPACE_RANK``; a file store in
  the checkpoint folder, which every node sees). ``init_process_group`` does the rendezvous.
- **How each rank ended.** Every rank keeps a small record in ``<checkpoint folder>/group/``:
  its host and pid while it runs, then how it ended (done, refused its input, lost a peer,
  stopped by a signal, failed). A rank killed outright leaves its record saying "running",
  which is how the launcher names a lost process and its host.
- **The launcher** (``launch_group``) starts the group with torchrun (``--standalone``, on this
  machine), srun (``devices + 1`` tasks in the job's allocation, over ``distributed.nodes``
  nodes, a GPU per task on cuda) or jsrun, and when a process is lost restarts the whole group,
  up to ``distributed.max_restarts`` times: every rank resumes from the server's last
  checkpoint, so a loss costs at most one checkpoint interval. Refused input, a signal, a bug
  and a launch in which no rank got as far as its record are not retried. Out of restarts, it
  ends with one line naming the lost rank, its host and the checkpoint to resume from. One
  launcher per checkpoint folder: it holds the group folder's lock.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wcgan.atomic import LOCK_NAME, exclusive_lock, read_json, write_json
from wcgan.errors import QuietExit, TrainingInterrupted, WcganError

LAUNCHERS = ("torchrun", "srun", "jsrun")
GROUP_FOLDER = "group"  # in the checkpoint folder: the ranks' records
# A rank's record: how the process ended. "running" after the group is gone: it was killed.
RUNNING, DONE, REFUSED, LOST_PEER, STOPPED, FAILED = (
    "running",
    "done",
    "refused",
    "lost_peer",
    "stopped",
    "failed",
)
NOT_RETRIED = (REFUSED, STOPPED, FAILED)  # a rerun would end the same way, or was told to stop


class GroupBroken(WcganError):
    """A collective failed: another process of the group is gone (or unreachable)."""


@contextlib.contextmanager
def refused_alike(rank: int) -> Iterator[None]:
    """Refusals that every rank of a group reaches alike (its command line, its size, the data's
    shapes): rank 0 says them, the others end quietly."""
    try:
        yield
    except QuietExit:
        raise
    except WcganError as exc:
        if rank != 0:
            raise QuietExit(str(exc)) from None
        raise


@contextlib.contextmanager
def collective(what: str) -> Iterator[None]:
    """A collective (or the rendezvous); its failure means another process of the group is gone."""
    try:
        yield
    except RuntimeError as exc:
        # gloo's "[file:line] Read error [host]:port: Connection reset by peer. This is ..."
        reason = re.sub(r"^\[[^\]]*\] ", "", str(exc).strip()).split(". ")[0]
        raise GroupBroken(
            f"lost the group during {what}: {reason.splitlines()[0] if reason else type(exc).__name__}"
        ) from exc


@dataclass(frozen=True)
class Member:
    """This process's place in a launched group."""

    rank: int
    world_size: int
    local_rank: int
    host: str
    init_method: str  # the rendezvous, as init_process_group takes it
    launcher: str

    def describe(self) -> str:
        return describe_rank(self.rank, self.host)


def describe_rank(rank: int, host: str | None) -> str:
    role = "server" if rank == 0 else f"device {rank}"
    return f"rank {rank} ({role}) on {host}" if host else f"rank {rank} ({role})"


def slurm_hostnames(nodelist: str) -> list[str]:
    """The hosts of a Slurm node list (``node[01-04],gpu7``), as ``scontrol`` expands them."""
    if not any(c in nodelist for c in "[,"):
        return [nodelist]
    out = subprocess.run(
        ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=30
    )
    if out.returncode != 0 or not out.stdout.split():
        raise WcganError(f"scontrol cannot expand the Slurm node list '{nodelist}': {out.stderr.strip()}")
    return out.stdout.split()


def _slurm_port(environ: Mapping[str, str]) -> int:
    """The store's port when no launcher chose one: from the job and step ids, so a restarted
    group (a new step) does not wait for the old port, and two jobs on a node rarely meet."""
    job, step = int(environ.get("SLURM_JOB_ID", "0")), int(environ.get("SLURM_STEP_ID", "0"))
    return 20000 + (job * 31 + step) % 20000


# Each launcher's variables: rank, group size, rank on the node. torchrun's come first: it may
# run inside a Slurm step.
LAUNCH_VARIABLES = {
    "torchrun": ("RANK", "WORLD_SIZE", "LOCAL_RANK"),
    "srun": ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID"),
    "jsrun": ("JSM_NAMESPACE_RANK", "JSM_NAMESPACE_SIZE", "JSM_NAMESPACE_LOCAL_RANK"),
}
LAUNCH_HINTS = {
    "torchrun": "torchrun --nproc-per-node {}",
    "srun": "srun --ntasks {}",
    "jsrun": "jsrun --nrs {} --tasks_per_rs 1",
}


def launcher_of(environ: Mapping[str, str]) -> str | None:
    """The launcher that started this process, from its variables (None: none did)."""
    for launcher, (rank, size, _) in LAUNCH_VARIABLES.items():
        if rank in environ and size in environ:
            return launcher
    return None


def environment_rank(environ: Mapping[str, str]) -> int:
    """This process's rank under its launcher (0 without one)."""
    launcher = launcher_of(environ)
    return int(environ[LAUNCH_VARIABLES[launcher][0]]) if launcher else 0


def member_from_environment(
    environ: Mapping[str, str],
    processes: int,
    hostnames: Callable[[str], list[str]] = slurm_hostnames,
) -> Member:
    """This process's rank and rendezvous from its launcher's environment. A launch of another
    size than ``processes`` (the server and one per device) is refused in one line, printed by
    rank 0 only (the others exit quietly)."""
    launcher = launcher_of(environ)
    if launcher is None:
        raise WcganError(
            f"no launch found (no torchrun, srun or jsrun environment): run wcgan train-distributed "
            f"--launch {'|'.join(LAUNCHERS)} ..., or under torchrun --nproc-per-node {processes}"
        )
    rank_name, size_name, local_name = LAUNCH_VARIABLES[launcher]
    rank, size = int(environ[rank_name]), int(environ[size_name])
    if size != processes:
        with refused_alike(rank):
            raise WcganError(
                f"the {launcher} launch has {size} processes, but distributed.devices {processes - 1} "
                f"needs {processes} (the server and one per device): {LAUNCH_HINTS[launcher].format(processes)}"
            )
    if launcher == "torchrun":
        init_method = "env://"
    elif "WCGAN_RENDEZVOUS" in environ:  # the launcher's choice
        init_method = environ["WCGAN_RENDEZVOUS"]
    elif launcher == "srun":  # the store on the step's first node, where task 0 runs
        first = hostnames(environ.get("SLURM_STEP_NODELIST") or environ["SLURM_JOB_NODELIST"])[0]
        init_method = f"tcp://{first}:{environ.get('MASTER_PORT') or _slurm_port(environ)}"
    else:
        raise WcganError(
            "a jsrun launch needs WCGAN_RENDEZVOUS: start it with wcgan train-distributed --launch jsrun"
        )
    local_rank = int(environ.get(local_name, "0"))
    return Member(rank, size, local_rank, socket.gethostname(), init_method, launcher)


# --- the ranks' records ---------------------------------------------------------------------


def group_folder(checkpoint_dir: str | Path) -> Path:
    return Path(checkpoint_dir) / GROUP_FOLDER


def _record_path(checkpoint_dir: str | Path, rank: int) -> Path:
    return group_folder(checkpoint_dir) / f"rank-{rank}.json"


class RankRecord:
    """One rank's record: its host and pid, how it ended, and for the server its last checkpoint."""

    def __init__(self, checkpoint_dir: str | Path, member: Member):
        self.path = _record_path(checkpoint_dir, member.rank)
        self.fields: dict[str, Any] = {"rank": member.rank, "host": member.host, "pid": os.getpid()}

    def write(self, state: str, **fields: Any) -> None:
        self.fields.update(fields, state=state)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.fields, self.path, indent=None)

    def checkpointed(self, checkpoint: Path, round_: int) -> None:
        """The server's checkpoint, where a restarted group resumes."""
        self.write(RUNNING, checkpoint=str(Path(checkpoint).resolve()), round=round_)


@contextlib.contextmanager
def recorded(checkpoint_dir: str | Path, member: Member) -> Iterator[RankRecord]:
    """The rank's record while the block runs, then how it ended."""
    record = RankRecord(checkpoint_dir, member)
    record.write(RUNNING)
    try:
        yield record
    except (GroupBroken, QuietExit) as exc:
        record.write(LOST_PEER if isinstance(exc, GroupBroken) else REFUSED, message=str(exc))
        raise
    except TrainingInterrupted as exc:
        record.write(STOPPED, message=str(exc))
        raise
    except WcganError as exc:
        record.write(REFUSED, message=str(exc))
        raise
    except BaseException as exc:
        record.write(FAILED, message=f"{type(exc).__name__}: {exc}")
        raise
    record.write(DONE)


def read_records(checkpoint_dir: str | Path, processes: int) -> dict[int, dict[str, Any]]:
    """The ranks' records that exist (a rank that never started has none); a damaged one is
    refused in one line, never taken for a rank that did not start."""
    records = {}
    for rank in range(processes):
        path = _record_path(checkpoint_dir, rank)
        if path.is_file():
            records[rank] = read_json(path, f"rank {rank}'s record")
    return records


def _clear_records(checkpoint_dir: str | Path) -> None:
    """The last launch's records and rendezvous files (not the launcher's lock)."""
    for path in group_folder(checkpoint_dir).iterdir():
        if path.name != LOCK_NAME:
            path.unlink()


# --- the launcher -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def group_command(
    launcher: str,
    command: Sequence[str],
    processes: int,
    *,
    nodes: int = 1,
    threads: int = 1,
    gpus: bool = False,
    rendezvous: str | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The launcher's command line that starts ``command`` once per rank, and the environment
    it adds. ``command`` runs as given (torchrun's ``--no-python``)."""
    if launcher == "torchrun":
        # Restarts are launch_group's: one policy for every launcher. torchrun sets
        # OMP_NUM_THREADS=1 itself; the others get the per-process threads, as torchrun would.
        argv = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc-per-node={processes}", "--max-restarts=0", "--no-python"]  # fmt: skip
        return [*argv, *command], {}
    if launcher == "srun":
        # The job step wrapper drops the job's SLURM_* settings: state the step's own. The
        # batch script runs on the allocation's first node, where task 0 and the store run.
        argv = ["srun", f"--ntasks={processes}", f"--nodes={nodes}", f"--cpus-per-task={threads}",
                "--kill-on-bad-exit=0"]  # fmt: skip
        if gpus:
            argv.append("--gpus-per-task=1")
        return [*argv, *command], {"MASTER_PORT": str(_free_port()), "OMP_NUM_THREADS": str(threads)}
    if launcher == "jsrun":
        argv = ["jsrun", f"--nrs={processes}", "--tasks_per_rs=1", f"--cpu_per_rs={threads}",
                f"--gpu_per_rs={int(gpus)}"]  # fmt: skip
        if rendezvous is None:
            raise WcganError("a jsrun launch needs a rendezvous file")
        return [*argv, *command], {"WCGAN_RENDEZVOUS": rendezvous, "OMP_NUM_THREADS": str(threads)}
    raise WcganError(f"--launch '{launcher}' is unknown (known: {', '.join(LAUNCHERS)})")


def _lost(records: Mapping[int, Mapping[str, Any]], processes: int) -> list[str]:
    """The ranks that ended without a word: killed, or their node gone."""
    lost = []
    for rank in range(processes):
        record = records.get(rank)
        if record is None:
            lost.append(f"{describe_rank(rank, None)} (it never started)")
        elif record["state"] == RUNNING:
            lost.append(f"{describe_rank(rank, record['host'])} (pid {record['pid']})")
    return lost


def _resume_point(records: Mapping[int, Mapping[str, Any]]) -> str:
    server = records.get(0, {})
    if "checkpoint" in server:
        return f"checkpoint '{server['checkpoint']}' (round {server['round']})"
    return "the start (no checkpoint was written yet)"


def launch_group(
    launcher: str,
    command: Sequence[str],
    processes: int,
    checkpoint_dir: str | Path,
    *,
    nodes: int = 1,
    threads: int = 1,
    gpus: bool = False,
    max_restarts: int = 3,
    log: Callable[[str], None] = print,
) -> int:
    """Run the group of ``processes`` ranks of ``command`` to the end, restarting it when a rank
    is lost; the exit status of its last launch. Ranks resume from the server's checkpoint."""
    stopping = False
    child: subprocess.Popen | None = None

    def forward(signum: int, frame: Any) -> None:  # a time limit or scancel: the ranks checkpoint
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        group_folder(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        # One launcher per checkpoint folder: a second would clear the first one's records.
        with exclusive_lock(group_folder(checkpoint_dir)):
            attempt = 0
            while not stopping:
                _clear_records(checkpoint_dir)
                rendezvous = (group_folder(checkpoint_dir) / f"rendezvous-{attempt}").resolve().as_uri()
                argv, extra = group_command(
                    launcher,
                    command,
                    processes,
                    nodes=nodes,
                    threads=threads,
                    gpus=gpus,
                    rendezvous=rendezvous,
                )
                try:
                    child = subprocess.Popen(argv, env={**os.environ, **extra})
                except OSError as exc:
                    raise WcganError(f"--launch {launcher}: cannot run '{argv[0]}': {exc.strerror}") from None
                if stopping:  # the signal came while the group was starting
                    child.send_signal(signal.SIGTERM)
                returncode = child.wait()
                if returncode == 0 or stopping:
                    return returncode
                records = read_records(checkpoint_dir, processes)
                if not records or any(r["state"] in NOT_RETRIED for r in records.values()):
                    # No rank got as far as its record (the launcher or the launch refused), or one
                    # refused: their own lines say why, and a rerun would end the same way.
                    return returncode
                lost = "; ".join(_lost(records, processes))
                if not lost:
                    return returncode
                where = _resume_point(records)
                if attempt == max_restarts:
                    times = "once" if max_restarts == 1 else f"{max_restarts} times"
                    raise WcganError(
                        f"{lost} was lost, and the group was restarted {times}; rerun to resume from {where}"
                    )
                attempt += 1
                log(
                    f"wcgan: {lost} was lost ({launcher} exit {returncode}); restarting the group from {where} "
                    f"(restart {attempt} of {max_restarts})"
                )
            return 128 + signal.SIGTERM
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def wants_gpus(device: str) -> bool:
    """Whether the group's processes get a GPU each: train.device cuda, or auto where this
    machine (the job's first node) has one."""
    if device == "auto":
        import torch

        return torch.cuda.is_available()
    return device.startswith("cuda")


def _without_option(argv: Sequence[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` (or ``option=VALUE``)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(f"{option}="):
            out.append(arg)
    return out


def launch_or_join(
    launcher: str | None,
    argv: Sequence[str],
    processes: int,
    checkpoint_dir: str | Path,
    rank: Callable[[Member, RankRecord], None],
    *,
    nodes: int,
    threads: int,
    gpus: bool,
    max_restarts: int,
    log: Callable[[str], None],
) -> None:
    """The decision a group's command makes: with ``launcher``, this process starts the group of
    ``processes`` ranks, each the same wcgan command (``argv``) without ``--launch``, and
    restarts it when a rank is lost (``launch_group``; a failed group ends with its exit
    status); without, this process is one of those ranks and does its part, ``rank(member,
    record)``, under its record. A refusal inside names the rank."""
    if launcher:
        command = [sys.executable, "-m", "wcgan.cli", *_without_option(argv, "--launch")]
        code = launch_group(
            launcher, command, processes, checkpoint_dir, nodes=nodes, threads=threads, gpus=gpus,
            max_restarts=max_restarts, log=log,
        )  # fmt: skip
        if code:
            raise SystemExit(code)  # the ranks' own lines say why
        return
    with refused_alike(environment_rank(os.environ)):
        member = member_from_environment(os.environ, processes)
    os.environ["LOCAL_RANK"] = str(member.local_rank)  # rank_device's GPU under any launcher
    try:
        with recorded(checkpoint_dir, member) as record:
            rank(member, record)
    except QuietExit:
        raise
    except WcganError as exc:
        exc.args = (f"{member.describe()}: {exc}",)  # which process of which host, and why
        raise
