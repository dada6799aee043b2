"""The ``wcgan`` command: small entry points that the workflow's rules call, one per step.

Every subcommand reads its inputs, calls the package, and writes its outputs atomically. Bad
input ends with one line, ``wcgan: error: ...``, and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from wcgan import __version__
from wcgan.config import (
    OVERALL_PER_LABEL,
    PRC_MAX_IMAGES,
    SCORE_SEED,
    WEIGHTS,
    ClassifierConfig,
    DistributedConfig,
    TrainConfig,
    read_run_config,
    write_run_config,
)
from wcgan.errors import QuietExit, WcganError
from wcgan.layout import RunLayout
from wcgan.options import add_config_options, config_from_options


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- chunk folders -----------------------------------------------------------------------


def files_in(paths: Sequence[str], suffix: str = ".pt") -> list[str]:
    """``paths`` with each folder replaced by its ``*<suffix>`` files in name order: the rules
    pass a chunk's folder (shards/<chunk>/) where a command reads each of its labels' files."""
    files: list[str] = []
    for path in paths:
        folder = Path(path)
        if folder.is_dir():
            files += sorted(str(p) for p in folder.glob(f"*{suffix}") if not p.name.startswith("."))
        else:
            files.append(path)
    return files


def add_chunks_option(parser: argparse.ArgumentParser) -> None:
    """``--chunks LABELS PER_JOB`` of a command that reads or writes every chunk: its folder
    options then name a kind's root (``results/<run>/samples``), and the command finds every
    chunk's folder in it from the two numbers (``wcgan.labels.chunk_names``), so that its
    command line is as long at 20,000 labels as at 10."""
    parser.add_argument(
        "--chunks",
        type=int,
        nargs=2,
        metavar=("LABELS", "PER_JOB"),
        help="the run's number of labels and labels_per_job: each folder option then names the "
        "root of every chunk's folder (results/<run>/shards), not the folders themselves",
    )


def chunk_paths(args: argparse.Namespace, paths: Sequence[str], suffix: str = "") -> list[str]:
    """``paths`` as given, or with ``--chunks`` each root replaced by every chunk's folder in it
    (its file ``<chunk><suffix>`` with a ``suffix``), in label order (``files_in`` then lists a
    folder's files). A chunk's folder or file that is not there is refused by name: the numbers
    are not those of the run that made them."""
    if getattr(args, "chunks", None) is None:
        return list(paths)
    from wcgan.labels import chunk_folders

    n_labels, per_job = args.chunks
    try:
        folders = [folder for root in paths for folder in chunk_folders(root, n_labels, per_job)]
    except WcganError as error:
        raise WcganError(f"--chunks {n_labels} {per_job}: {error}") from None
    chunks = [Path(f"{folder}{suffix}") for folder in folders]
    missing = next((chunk for chunk in chunks if not chunk.exists()), None)
    if missing is not None:
        raise WcganError(
            f"chunk {'file' if suffix else 'folder'} '{missing}' does not exist: --chunks {n_labels} "
            f"{per_job} names another run's chunks"
        )
    return [str(chunk) for chunk in chunks]


# --- commands: each handler beside its arguments ------------------------------------------

# (name, help, arguments, handler) of every subcommand, in the order ``wcgan --help`` lists them.
COMMANDS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable]] = []


def command(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None]):
    """Register the decorated handler as ``wcgan <name>``, its options declared by ``arguments``."""

    def register(handler: Callable[[argparse.Namespace], None]) -> Callable[[argparse.Namespace], None]:
        COMMANDS.append((name, help, arguments, handler))
        return handler

    return register


# --- options several commands share -------------------------------------------------------


def _training_output_arguments(sub: argparse.ArgumentParser) -> None:
    per_gan = "one per label in --shard order for per-label GANs (or their folder), else one"
    sub.add_argument("--model-out", nargs="+", required=True, help=f"trained generator (.pt): {per_gan}")
    sub.add_argument("--losses-out", nargs="+", required=True, help=f"loss history (.csv): {per_gan}")
    sub.add_argument("--summary-out", nargs="+", required=True, help=f"run summary (.json): {per_gan}")
    sub.add_argument(
        "--samples-out",
        nargs="+",
        help="also draw samples of each label from the trained generator (.pt each, in --shard "
        "order, or their folder)",
    )
    sub.add_argument(
        "--snapshots-out",
        nargs="+",
        help="samples of each label at each train.snapshots point (.pt each, in --shard order, "
        "or their folder)",
    )
    sub.add_argument("--samples", type=int, default=1000, help="how many per label, with --samples-out")
    sub.add_argument("--samples-seed", type=int, default=0, help="base seed of their latents")
    sub.add_argument(
        "--samples-weights",
        choices=WEIGHTS,
        default="ema",
        help="draw them from the generator's moving average (its raw weights when it has none) "
        "or from its raw weights; snapshots keep both",
    )
    sub.add_argument("--checkpoint-dir", required=True, help="resume state; kept after the run")
    sub.add_argument("--threads", type=int, help="torch intra-op threads (per process)")
    add_chunks_option(sub)  # --shard and --samples-out as the roots of every chunk's folder


def _extraction_arguments(
    sub: argparse.ArgumentParser, shards: str = "every label's real images (.pt)"
) -> None:
    """Real images, extractor and device: what every command that extracts features reads;
    and how many of each label's features the overall IS, KID and precision/recall read."""
    sub.add_argument("--shards", nargs="+", required=True, help=shards)
    sub.add_argument("--classifier", help="wcgan classifier file (the default extractor)")
    sub.add_argument("--inception-weights", help="Inception-v3 weights file, or 'download'")
    sub.add_argument("--max-real-per-label", type=int, help="use at most this many real images per label")
    sub.add_argument(
        "--overall-per-label",
        type=int,
        default=OVERALL_PER_LABEL,
        help="of each label, a seeded subset of at most this many generated and real features "
        "for the overall IS, KID and precision/recall (FID reads the moments of all)",
    )
    sub.add_argument("--device", default="auto")
    sub.add_argument("--threads", type=int)


def _merging_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--seed",
        type=int,
        default=SCORE_SEED,
        help="of KID's subsets, IS's shuffle and the precision/recall subset",
    )


def _precision_recall_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--prc-max-images",
        type=int,
        default=PRC_MAX_IMAGES,
        help="precision/recall from a seeded subset of at most this many images per side",
    )


# --- data ---------------------------------------------------------------------------------


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    from wcgan.sources import DataSpec

    add_config_options(parser, DataSpec, "data set (the config's data section)", exclude=("labels",))


def _spec(args: argparse.Namespace):
    from wcgan.sources import DataSpec

    return config_from_options(DataSpec, vars(args))


def _labels_arguments(sub: argparse.ArgumentParser) -> None:
    _add_data_options(sub)


@command("labels", "print a data set's labels: index, slug, name", _labels_arguments)
def cmd_labels(args: argparse.Namespace) -> None:
    from wcgan.labels import make_labels
    from wcgan.sources import label_names

    for label in make_labels(label_names(_spec(args))):
        print(f"{label.index}\t{label.slug}\t{label.name}")


def _split_arguments(sub: argparse.ArgumentParser) -> None:
    _add_data_options(sub)
    # Positional, after "--" in the rules: a label's name may start with '-'. Not "labels":
    # that is the data section's own key (data.labels, the run's label list).
    sub.add_argument("names", nargs="+", metavar="NAME", help="the labels' names in the data set")
    sub.add_argument(
        "--indices",
        type=int,
        nargs="+",
        help="their class indices (default: positions among the data set's labels)",
    )
    sub.add_argument("--out-dir", required=True, help="folder of the shards, <slug>.pt per label")
    sub.add_argument(
        "--image-size",
        type=int,
        help="with data.resolution unset, the size every image must have (the run's first image's)",
    )


@command("split", "write the images of one or more labels (a chunk) as shards", _split_arguments)
def cmd_split(args: argparse.Namespace) -> None:
    """Write a shard per label of a chunk; all are read and checked before any is written, so
    a bad label or two labels of different shapes leave no shard of the chunk behind."""
    from wcgan.data import Shard, load_label_images, one_image_shape
    from wcgan.files import save_shard
    from wcgan.labels import Label, find_label, make_labels, slugify
    from wcgan.sources import label_names

    spec = _spec(args)
    if args.indices is None:
        known = make_labels(label_names(spec))
        labels = [find_label(known, name) for name in args.names]
    elif len(args.indices) != len(args.names):
        raise WcganError(f"--indices gives {len(args.indices)} indices for {len(args.names)} labels")
    else:
        labels = [
            Label(index, slugify(name), name) for name, index in zip(args.names, args.indices, strict=True)
        ]
    shards = []
    for label in labels:
        shards.append(Shard(load_label_images(spec, label.name, args.image_size), label, spec.source))
        # Before the next label is read: a chunk's labels train as one network.
        one_image_shape((tuple(s.images.shape[1:]), s.label.name) for s in (shards[0], shards[-1]))
    for shard in shards:
        save_shard(shard, Path(args.out_dir) / f"{shard.label.slug}.pt")
        log(
            f"label '{shard.label.name}' ({shard.label.slug}): {len(shard.images)} images, {tuple(shard.images.shape[1:])}"
        )


def _label_table_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--shards", nargs="+", required=True, help="shard files, or folders of them")
    sub.add_argument(
        "--labels-per-job",
        type=int,
        default=1,
        help="labels per chunk, which names the chunks (without --chunks)",
    )
    add_chunks_option(sub)
    sub.add_argument("--out", required=True)


@command("label-table", "write labels.tsv from the shards", _label_table_arguments)
def cmd_label_table(args: argparse.Namespace) -> None:
    from wcgan.data import one_image_shape
    from wcgan.files import load_shard
    from wcgan.labels import make_chunks, write_table

    labels, counts, shapes = [], [], []
    for path in files_in(chunk_paths(args, args.shards)):
        shard = load_shard(path, header_only=True)
        labels.append(shard.label)
        counts.append(len(shard.images))
        shapes.append((tuple(shard.images.shape[1:]), shard.label.name))
    one_image_shape(shapes)
    order = sorted(range(len(labels)), key=lambda i: labels[i].index)
    labels = [labels[i] for i in order]
    per_job = args.chunks[1] if args.chunks else args.labels_per_job
    write_table(labels, [counts[i] for i in order], make_chunks(labels, per_job), args.out)


# --- training and sampling ----------------------------------------------------------------


def _outputs_given(args: argparse.Namespace) -> dict[str, list[str] | None]:
    """A training command's output options, by the names of ``TrainingOutputs``."""
    options = {"models": args.model_out, "losses": args.losses_out, "summaries": args.summary_out}
    return options | {"samples": args.samples_out, "snapshots": args.snapshots_out}


def _training_data(args: argparse.Namespace, config):
    """The sets a training job trains on, its budget and its outputs: each label's shard as a
    chunk of per-label GANs with the per-label budget, or every label's as one conditional GAN
    with the labels' budget together (``TrainConfig.for_labels``)."""
    from wcgan.data import TrainingSet
    from wcgan.files import load_shard
    from wcgan.training_outputs import TrainingOutputs, check_outputs

    # In label order: a folder of shards lists them by file name.
    shards = sorted(
        (load_shard(path) for path in files_in(chunk_paths(args, args.shard))), key=lambda s: s.label.index
    )
    if config.generator == "per_label":
        sets = [TrainingSet.of_label(shard) for shard in shards]
    else:
        sets = [TrainingSet.of_labels(shards)]
        config = config.for_labels(len(shards))
    given = _outputs_given(args)
    check_outputs(given, len(sets), len(shards), config.generator, config.snapshots)
    return sets, config, TrainingOutputs.of(given, [shard.label for shard in shards], args.chunks)


def _train_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--shard",
        nargs="+",
        required=True,
        help="the chunk's labels' shards, or their folder (K: K per-label GANs trained as one); "
        "every label's for --generator conditional",
    )
    _training_output_arguments(sub)
    sub.add_argument("--profile", action="store_true", help="synchronize the GPU to time each phase")
    sub.add_argument(
        "--mem-mb",
        type=int,
        help="the job's memory limit (MB): a job estimated above it is refused at its start",
    )
    add_config_options(sub, TrainConfig, "training (the config's train section)")


@command(
    "train",
    "train the GANs of a chunk of labels (one per label, batched on one device), or one "
    "conditional GAN for all, under the budget (resumes)",
    _train_arguments,
)
def cmd_train(args: argparse.Namespace) -> None:
    from wcgan.training import train_chunk

    config = config_from_options(TrainConfig, vars(args))
    if config.generator == "distributed":
        raise WcganError(
            "train.generator distributed runs as a group of processes: use wcgan train-distributed --launch torchrun"
        )
    if args.mem_mb is not None:
        from wcgan.memory import check_training_memory

        # A chunk's folder names the chunk; the shards' headers give the sizes, no image is read.
        folder = Path(args.shard[0]) if len(args.shard) == 1 and Path(args.shard[0]).is_dir() else None
        chunk = folder.name if folder and args.chunks is None else None
        check_training_memory(files_in(chunk_paths(args, args.shard)), config, args.mem_mb, chunk)
    sets, config, outputs = _training_data(args, config)
    results = train_chunk(
        sets, config, args.checkpoint_dir, threads=args.threads, profile=args.profile, log=log
    )
    outputs.write(results, sets, args.samples, args.samples_seed, args.started_at, args.samples_weights)


def _train_distributed_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--launch",
        choices=("torchrun", "srun", "jsrun"),
        help="start the group: torchrun --standalone on this machine, srun tasks in a Slurm "
        "allocation, jsrun resource sets in an LSF one",
    )
    sub.add_argument(
        "--shard",
        nargs="+",
        required=True,
        help="every label's shard in label order, or their folders (a device reads only its own "
        "under partition by_label)",
    )
    _training_output_arguments(sub)
    add_config_options(
        sub,
        TrainConfig,
        "training (the config's train section, per label; a round is one generator update; "
        "--generator is distributed whatever is given)",
    )
    add_config_options(sub, DistributedConfig, "distribution (the config's distributed section)")


@command(
    "train-distributed",
    "distributed training (a server and local critics; resumes): with --launch, start the "
    "DEVICES+1 processes and restart them when one is lost; without, one of those processes "
    "(under torchrun, srun or jsrun)",
    _train_distributed_arguments,
)
def cmd_train_distributed(args: argparse.Namespace) -> None:
    import os

    from wcgan.distributed import train_rank
    from wcgan.launch import environment_rank, launch_or_join, refused_alike, wants_gpus
    from wcgan.training_outputs import TrainingOutputs, check_outputs

    # Every rank of a group finds the same fault in its command line: rank 0 says it.
    with refused_alike(0 if args.launch else environment_rank(os.environ)):
        config = config_from_options(TrainConfig, vars(args), generator="distributed")
        dist_config = config_from_options(DistributedConfig, vars(args))
        config.check()
        dist_config.check()
        shards = files_in(chunk_paths(args, args.shard))
        check_outputs(_outputs_given(args), 1, len(shards), config.generator, config.snapshots)

    def rank(member, record) -> None:
        """This process's part; the server writes the outputs."""
        budget = config.for_labels(len(shards), dist_config.processes)
        outcome = train_rank(
            member, shards, budget, dist_config, args.checkpoint_dir, threads=args.threads, log=log,
            checkpointed=record.checkpointed,
        )  # fmt: skip
        if outcome is not None:
            result, data = outcome
            outputs = TrainingOutputs.of(_outputs_given(args), data.labels, args.chunks)
            outputs.write(
                [result], [data], args.samples, args.samples_seed, args.started_at, args.samples_weights
            )

    launch_or_join(
        args.launch, args.argv, dist_config.processes, args.checkpoint_dir, rank, nodes=dist_config.nodes,
        threads=args.threads or 1, gpus=wants_gpus(config.device), max_restarts=dist_config.max_restarts,
        log=log,
    )  # fmt: skip


def _default_run() -> str:
    """``results/<run>`` of the config in this folder (``config/config.yaml``), the run that
    ``snakemake`` here would make."""
    import yaml

    config = Path("config/config.yaml")
    if not config.is_file():
        raise WcganError("no --run DIR given and no config/config.yaml here to find the run in")
    run = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("run")
    if not run:
        raise WcganError(f"no --run DIR given and '{config}' names no run")
    return RunLayout.of(run).root


def _sample_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--label", help="the label's name or slug, drawn from the run's generators")
    sub.add_argument(
        "--run", help="run folder with labels.tsv and models/ (default: results/<run> of config/config.yaml)"
    )
    sub.add_argument("--model", help="one generator file (with --label for a conditional one)")
    sub.add_argument("-n", type=int, default=64, help="number of samples")
    sub.add_argument("--seed", type=int, default=0, help="base seed; each label derives its own")
    sub.add_argument(
        "--weights",
        choices=WEIGHTS,
        default="ema",
        help="the generator's moving average (its raw weights when it has none), or its raw weights",
    )
    sub.add_argument("--columns", type=int, default=8, help="grid columns for a .png")
    sub.add_argument("--threads", type=int)
    sub.add_argument("--out", required=True, help=".png: a grid; .pt: uint8 samples")


@command("sample", "draw samples from one label's generator", _sample_arguments)
def cmd_sample(args: argparse.Namespace) -> None:
    from wcgan.figures import save_grid
    from wcgan.files import load_generator, save_samples
    from wcgan.labels import find_label
    from wcgan.sampling import ConditionalEnsemble, generator_labels, sample_label

    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".pt"):
        raise WcganError(f"--out '{out}' must end in .png (a grid) or .pt (uint8 samples)")
    _torch_setup(args)
    if args.model is not None:
        generator, meta = load_generator(args.model, args.weights)
        labels = generator_labels(meta)
        if generator.num_classes is None:
            label, class_index = labels[0], None
        elif args.label is None:
            raise WcganError(f"'{args.model}' is a conditional generator: give --label NAME to draw")
        else:
            label = find_label(labels, args.label)
            class_index = labels.index(label)
        images = sample_label(generator, label, args.n, args.seed, class_index)
    elif args.label is not None:
        ensemble = ConditionalEnsemble.from_run(args.run or _default_run(), weights=args.weights)
        images = ensemble.sample(args.label, args.n, args.seed)
        label = ensemble.find(args.label)
    else:
        raise WcganError(
            "give --label NAME (with --run DIR, or the run of config/config.yaml) or --model FILE"
        )
    if out.suffix.lower() == ".png":
        save_grid(images, out, columns=args.columns)
    else:
        save_samples(images, label, out)
    log(f"label '{label.name}': {len(images)} samples -> {out}")


# --- metrics ------------------------------------------------------------------------------


def _torch_setup(args: argparse.Namespace):
    """Apply ``--threads``; return the torch device of ``--device`` (commands that have one)."""
    import torch

    from wcgan.training import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    return resolve_device(args.device) if hasattr(args, "device") else None


def _train_classifier_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--shards", nargs="+", required=True)
    add_chunks_option(sub)
    sub.add_argument("--out", required=True)
    sub.add_argument("--report-out", required=True)
    sub.add_argument("--device", default="auto")
    sub.add_argument("--threads", type=int)
    add_config_options(sub, ClassifierConfig, "classifier (the config's metrics.classifier section)")


@command("train-classifier", "train the classifier used as feature extractor", _train_classifier_arguments)
def cmd_train_classifier(args: argparse.Namespace) -> None:

    from wcgan.atomic import write_json
    from wcgan.classifier import train_classifier
    from wcgan.files import load_shard, save_classifier

    device = _torch_setup(args)
    config = config_from_options(ClassifierConfig, vars(args))
    shards = sorted(
        (load_shard(p, mmap=True) for p in files_in(chunk_paths(args, args.shards))),
        key=lambda s: s.label.index,
    )
    model, report = train_classifier(shards, config, device, log=log)
    save_classifier(model, [s.label.name for s in shards], report, args.out)
    write_json(report, args.report_out)


def _open_extractor(args: argparse.Namespace):
    """The feature extractor of ``--inception-weights`` or ``--classifier``, on ``--device``."""
    from wcgan.metrics import open_extractor

    device = _torch_setup(args)
    return open_extractor(args.inception_weights, args.classifier, device)


def _same_length(**files: Sequence[str]) -> None:
    """The options (by name) name as many files each."""
    if len({len(paths) for paths in files.values()}) > 1:
        shown = ", ".join(f"--{name.replace('_', '-')} {len(paths)}" for name, paths in files.items())
        raise WcganError(f"these options name one file per label (or job) each, but got {shown} files")


def _features_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--samples",
        nargs="+",
        required=True,
        help="the labels' samples (.pt), in label order, or their folder",
    )
    sub.add_argument("--out", required=True, help="the chunk's scores file (.pt)")
    sub.add_argument(
        "--snapshots", nargs="+", help="the chunk's training jobs' snapshot samples (.pt), or their folder"
    )
    _extraction_arguments(sub, shards="the same labels' real images (.pt), same order, or their folder")
    _precision_recall_arguments(sub)
    _merging_arguments(sub)


@command(
    "features",
    "map step of scoring: a chunk's features (each image through the extractor once), each "
    "label's scores, the features' moments and kept subsets (and those of snapshot samples)",
    _features_arguments,
)
def cmd_features(args: argparse.Namespace) -> None:
    from wcgan.files import load_samples, load_shard, load_snapshot_samples, save_chunk_scores
    from wcgan.metrics import extract_label_features, extract_snapshot_features, score_chunk

    # Folders (a chunk's) list their files by name, the same label order for each of them.
    sample_files, shard_files = files_in(args.samples), files_in(args.shards)
    _same_length(samples=sample_files, shards=shard_files)
    samples = [load_samples(path) for path in sample_files]
    network = _open_extractor(args)
    shards = [load_shard(path, mmap=True) for path in shard_files]
    labels = extract_label_features(network, samples, shards, args.max_real_per_label, log=log)
    snapshots = [
        extract_snapshot_features(network, load_snapshot_samples(path))
        for path in files_in(args.snapshots or ())
    ]
    scores = score_chunk(
        labels,
        overall_per_label=args.overall_per_label,
        snapshots=snapshots,
        prc_max_images=args.prc_max_images,
        seed=args.seed,
        device=network.device,
        log=log,
    )
    save_chunk_scores(scores, args.out)


def _merge_scores_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--features", nargs="+", required=True, help="every chunk's scores file (.pt), or their root"
    )
    add_chunks_option(sub)
    sub.add_argument("--out", required=True, help="metrics table (.tsv)")
    sub.add_argument("--threads", type=int)
    _precision_recall_arguments(sub)
    _merging_arguments(sub)


@command(
    "merge-scores",
    "reduce step of scoring: metrics.tsv (all labels merged, and per label) from every chunk's scores",
    _merge_scores_arguments,
)
def cmd_merge_scores(args: argparse.Namespace) -> None:
    from wcgan.metrics import load_chunk_score_files, merge_scores
    from wcgan.tables import write_metrics

    _torch_setup(args)
    run = load_chunk_score_files(chunk_paths(args, args.features, ".pt"))
    write_metrics(merge_scores(run, prc_max_images=args.prc_max_images, seed=args.seed, log=log), args.out)


def _merge_curve_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--features", nargs="+", required=True, help="every chunk's scores file (.pt), or their root"
    )
    add_chunks_option(sub)
    sub.add_argument("--out", required=True, help="curve table (.tsv)")
    sub.add_argument("--threads", type=int)
    _precision_recall_arguments(sub)
    _merging_arguments(sub)


@command(
    "merge-curve",
    "reduce step of the curve: FID against budget from every chunk's snapshot scores, all labels merged",
    _merge_curve_arguments,
)
def cmd_merge_curve(args: argparse.Namespace) -> None:
    import pandas as pd

    from wcgan.metrics import load_chunk_score_files, merge_curve
    from wcgan.tables import write_tsv

    _torch_setup(args)
    run = load_chunk_score_files(chunk_paths(args, args.features, ".pt"))
    rows = merge_curve(run, prc_max_images=args.prc_max_images, seed=args.seed, log=log)
    write_tsv(pd.DataFrame(rows), args.out)


def _score_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--samples", nargs="+", required=True, help="every label's samples (.pt)")
    sub.add_argument("--out", required=True, help="metrics table (.tsv)")
    _extraction_arguments(sub)
    _precision_recall_arguments(sub)


@command(
    "score",
    "score all labels' samples, merged and per label: features and merge-scores in one process",
    _score_arguments,
)
def cmd_score(args: argparse.Namespace) -> None:
    from wcgan.files import load_samples, load_shard
    from wcgan.metrics import score_run
    from wcgan.tables import write_metrics

    network = _open_extractor(args)
    samples = sorted((load_samples(p) for p in files_in(args.samples)), key=lambda s: s[1].index)
    shards = sorted((load_shard(p, mmap=True) for p in files_in(args.shards)), key=lambda s: s.label.index)
    records = score_run(
        samples,
        shards,
        network,
        args.max_real_per_label,
        overall_per_label=args.overall_per_label,
        prc_max_images=args.prc_max_images,
        log=log,
    )
    write_metrics(records, args.out)


def _score_curve_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--snapshots", nargs="+", required=True, help="every training job's snapshot samples (.pt)"
    )
    sub.add_argument("--out", required=True, help="curve table (.tsv)")
    _extraction_arguments(sub)
    _precision_recall_arguments(sub)
    add_chunks_option(sub)


@command(
    "score-curve",
    "FID against budget of every snapshot point, all labels merged: features and merge-curve in one process",
    _score_curve_arguments,
)
def cmd_score_curve(args: argparse.Namespace) -> None:
    import pandas as pd

    from wcgan.files import load_shard, load_snapshot_samples
    from wcgan.metrics import score_snapshots
    from wcgan.tables import write_tsv

    network = _open_extractor(args)
    points = [load_snapshot_samples(path) for path in files_in(args.snapshots)]
    shards = sorted(
        (load_shard(p, mmap=True) for p in files_in(chunk_paths(args, args.shards))),
        key=lambda s: s.label.index,
    )
    rows = score_snapshots(
        points, shards, network, args.max_real_per_label, overall_per_label=args.overall_per_label,
        prc_max_images=args.prc_max_images, log=log,
    )  # fmt: skip
    write_tsv(pd.DataFrame(rows), args.out)


# --- weak scaling -------------------------------------------------------------------------


def _scaling_config_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--base", required=True, help="the run's config, as JSON")
    sub.add_argument("--run", required=True, help="the point's run name")
    sub.add_argument("--n", type=int, required=True, help="N: concurrent label jobs, on the first N labels")
    sub.add_argument("--iterations", type=int, required=True, help="fixed generator iterations per job")
    sub.add_argument("--out", required=True, help="config file (.yaml)")


@command("scaling-config", "the config of one weak-scaling point", _scaling_config_arguments)
def cmd_scaling_config(args: argparse.Namespace) -> None:
    from wcgan.scaling import point_config
    from wcgan.sources import DataSpec, label_names

    base = json.loads(args.base)
    names = label_names(DataSpec.from_mapping(base["data"]))
    wanted = args.n * base["labels_per_job"]
    if wanted > len(names):
        raise WcganError(
            f"scaling: {args.n} jobs of {base['labels_per_job']} labels asked for, but the data set "
            f"has only {len(names)} labels"
        )
    config = point_config(base, args.run, names[:wanted], args.iterations)
    write_run_config(config, args.out)


def _scaling_times_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--config", required=True, help="the point's config (from scaling-config)")
    sub.add_argument("--series", required=True, help="how the jobs ran (local, slurm, ...)")
    sub.add_argument("--out", required=True, help="job table (.tsv)")


@command("scaling-times", "per-job times of a weak-scaling point", _scaling_times_arguments)
def cmd_scaling_times(args: argparse.Namespace) -> None:
    from wcgan.scaling import point_jobs, point_times, write_table

    config = read_run_config(args.config)
    layout = RunLayout.of_config(config)
    jobs = point_jobs(layout, config["data"]["labels"], config["labels_per_job"])
    table = point_times(layout.root, jobs, args.series, config["train"]["iterations"])
    write_table(table, args.out)
    log(f"scaling {args.series} N={len(jobs)}: mean job time {table['time_s'].mean():.2f} s")


def _scaling_report_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--points", nargs="+", required=True, help="job tables of the points")
    sub.add_argument("--projection", type=int, nargs="+", required=True, help="job counts to project to")
    sub.add_argument("--seed", type=int, default=0, help="of the projection's draws")
    sub.add_argument("--jobs-out", required=True)
    sub.add_argument("--summary-out", required=True)
    sub.add_argument("--projection-out", required=True)


@command("scaling-report", "weak-scaling summary and projection from the points", _scaling_report_arguments)
def cmd_scaling_report(args: argparse.Namespace) -> None:
    from wcgan.scaling import project, read_points, summarize, write_table

    jobs = read_points(args.points)
    summary = summarize(jobs)
    projection = project(jobs, args.projection, seed=args.seed)
    write_table(jobs, args.jobs_out)
    write_table(summary, args.summary_out)
    write_table(projection, args.projection_out)
    if not summary["concurrent"].all():
        apart = summary.loc[~summary["concurrent"], ["series", "n"]].to_records(index=False).tolist()
        log(f"scaling: in points {apart} the jobs overlapped too little to count as concurrent")


# --- comparing schemes --------------------------------------------------------------------


def _compare_config_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--base", required=True, help="the run's config, as JSON, its labels listed")
    sub.add_argument("--run", required=True, help="the variant's run name")
    sub.add_argument("--scheme", required=True, help="the variant's scheme (a name in wcgan.compare.SCHEMES)")
    sub.add_argument("--seed", type=int, required=True, help="the variant's train.seed")
    sub.add_argument("--options", default="{}", help="the scheme's loss options, as JSON (compare.options)")
    sub.add_argument("--snapshots", type=int, default=0, help="the variant's train.snapshots")
    sub.add_argument("--out", required=True, help="config file (.yaml)")


@command("compare-config", "the config of one compare variant (scheme, seed)", _compare_config_arguments)
def cmd_compare_config(args: argparse.Namespace) -> None:
    from wcgan.compare import variant_config

    base = json.loads(args.base)
    options = json.loads(args.options)
    config = variant_config(
        base, args.run, base["data"]["labels"], args.scheme, args.seed, options, args.snapshots
    )
    write_run_config(config, args.out)


def _compare_budget_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--config", required=True, help="the variant's config (from compare-config)")
    sub.add_argument("--out", required=True, help="budget table (.tsv)")


@command("compare-budget", "the budget a compare variant used, per label", _compare_budget_arguments)
def cmd_compare_budget(args: argparse.Namespace) -> None:
    from wcgan.compare import budget_table, trained_units
    from wcgan.tables import write_tsv

    config = read_run_config(args.config)
    units = trained_units(RunLayout.of_config(config), config["data"]["labels"], config["labels_per_job"])
    table = budget_table(units, config["train"]["loss"])
    write_tsv(table, args.out)
    log(
        f"compare {config['run']}: {table['iterations'].sum()} iterations, "
        f"{table['device_seconds'].sum():.1f} device-seconds in {len(table)} training jobs"
    )


def _compare_report_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--budgets", nargs="+", required=True, help="<scheme>-s<seed>/budget.tsv of each variant"
    )
    sub.add_argument("--metrics", nargs="+", required=True, help="<scheme>-s<seed>/metrics.tsv, same order")
    sub.add_argument("--out", required=True, help="comparison table (.tsv)")
    sub.add_argument(
        "--labels-out", required=True, help="per variant and label: FID, recall, collapsed (.tsv)"
    )
    sub.add_argument("--seeds-out", help="also: mean and std over seeds per scheme (.tsv)")
    sub.add_argument("--curves", nargs="+", help="<scheme>-s<seed>/curve.tsv of each variant")
    sub.add_argument(
        "--curve-ends-out",
        help="with --curves: per scheme and generator weights, each curve's end and last slope (.tsv)",
    )


@command(
    "compare-report", "one table of every compare variant's budget and scores", _compare_report_arguments
)
def cmd_compare_report(args: argparse.Namespace) -> None:
    from wcgan.compare import aggregate_seeds, comparison_table, curve_ends_table, label_table, read_variants
    from wcgan.tables import write_tsv

    if bool(args.curves) != bool(args.curve_ends_out):
        raise WcganError("--curves and --curve-ends-out go together")
    variants = read_variants(args.budgets, args.metrics)
    table = comparison_table(variants)
    write_tsv(table, args.out)
    write_tsv(label_table(variants), args.labels_out)
    if args.seeds_out:
        write_tsv(aggregate_seeds(table), args.seeds_out)
    if args.curves:
        write_tsv(curve_ends_table(args.curves), args.curve_ends_out)
    columns = [
        "scheme",
        "seed",
        "device_seconds",
        "iterations",
        "fid",
        "fid_label_max",
        "recall_label_min",
        "collapsed",
    ]
    log(table[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def _plot_compare_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--comparison", required=True, help="comparison.tsv of compare-report")
    sub.add_argument(
        "--metrics", nargs="+", required=True, help="<scheme>-s<seed>/metrics.tsv of each variant"
    )
    sub.add_argument("--variants", nargs="+", required=True, help="variant folders whose samples are shown")
    sub.add_argument("--per-label", type=int, default=6)
    sub.add_argument(
        "--max-labels", type=int, default=50, help="at most this many rows, spread evenly over the labels"
    )
    sub.add_argument("--curves", nargs="+", required=True, help="<scheme>-s<seed>/curve.tsv of each variant")
    sub.add_argument("--samples-out", required=True)
    sub.add_argument("--fid-out", required=True)
    sub.add_argument("--budget-out", required=True, help="FID against device-seconds (.png)")


@command(
    "plot-compare",
    "compare figures: samples side by side, FID per scheme, FID against device-seconds",
    _plot_compare_arguments,
)
def cmd_plot_compare(args: argparse.Namespace) -> None:
    from wcgan.compare import figure_data
    from wcgan.figures import plot_compare_curves, plot_compare_fid, save_compare_grid

    data = figure_data(
        args.comparison, args.metrics, args.curves, args.variants, args.per_label, args.max_labels
    )
    plot_compare_fid(data.comparison, data.label_fids, args.fid_out)
    plot_compare_curves(data.curves, args.budget_out)
    save_compare_grid(data.sample_rows, args.samples_out, data.title)


# --- figures ------------------------------------------------------------------------------


def _plot_grids_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--samples", nargs="+", required=True)
    add_chunks_option(sub)
    sub.add_argument("--count", type=int, default=64)
    sub.add_argument("--columns", type=int, default=8)
    sub.add_argument("--out-dir", required=True)


@command("plot-grids", "a grid of samples per label, <out-dir>/<slug>.png", _plot_grids_arguments)
def cmd_plot_grids(args: argparse.Namespace) -> None:
    from wcgan.figures import save_grid
    from wcgan.files import load_samples

    for path in files_in(chunk_paths(args, args.samples)):
        images, label = load_samples(path)
        save_grid(images[: args.count], Path(args.out_dir) / f"{label.slug}.png", columns=args.columns)


def _plot_merged_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--samples", nargs="+", required=True)
    add_chunks_option(sub)
    sub.add_argument("--per-label", type=int, default=10)
    sub.add_argument(
        "--max-labels", type=int, default=50, help="at most this many rows, spread evenly over the labels"
    )
    sub.add_argument("--out", required=True)


@command("plot-merged", "one row of samples per label", _plot_merged_arguments)
def cmd_plot_merged(args: argparse.Namespace) -> None:
    from wcgan.figures import save_merged_grid
    from wcgan.files import load_samples

    rows = []
    for path in files_in(chunk_paths(args, args.samples)):
        images, label = load_samples(path)
        # A copy of the few shown, not a view: a view would keep every label's samples in memory.
        rows.append((label.index, label.name, images[: args.per_label].clone()))
    rows.sort(key=lambda row: row[0])
    save_merged_grid([(name, images) for _, name, images in rows], args.out, args.max_labels)


def _plot_losses_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--losses", nargs="+", required=True)
    add_chunks_option(sub)
    sub.add_argument("--labels", required=True, help="labels.tsv, for label names")
    sub.add_argument("--out", required=True)


@command(
    "plot-losses",
    "loss curves: each label's (up to 10 labels), else median and 10-90 percent band, worst labels named",
    _plot_losses_arguments,
)
def cmd_plot_losses(args: argparse.Namespace) -> None:
    from wcgan.figures import plot_losses
    from wcgan.files import load_losses
    from wcgan.labels import read_table

    names = {label.slug: label.name for label, _, _ in read_table(args.labels)}
    histories = [
        (names.get(Path(p).stem, Path(p).stem), load_losses(p))
        for p in files_in(chunk_paths(args, args.losses), ".csv")
    ]
    plot_losses(histories, args.out)


def _plot_scores_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--metrics", required=True, help="metrics.tsv")
    sub.add_argument("--out", required=True)


@command("plot-scores", "per-label FID sorted worst first, the worst labels named", _plot_scores_arguments)
def cmd_plot_scores(args: argparse.Namespace) -> None:
    from wcgan.figures import plot_label_scores
    from wcgan.tables import read_metrics

    plot_label_scores(read_metrics(args.metrics), args.out)


def _plot_ranked_grids_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--metrics", required=True, help="metrics.tsv")
    sub.add_argument("--grids", required=True, help="the folder of per-label grids from plot-grids")
    sub.add_argument("--count", type=int, default=8, help="this many worst and this many best labels")
    sub.add_argument("--out", required=True)


@command(
    "plot-ranked-grids",
    "the sample grids of the labels of highest and lowest FID",
    _plot_ranked_grids_arguments,
)
def cmd_plot_ranked_grids(args: argparse.Namespace) -> None:
    from wcgan.figures import plot_ranked_grids
    from wcgan.tables import read_metrics

    plot_ranked_grids(read_metrics(args.metrics), args.grids, args.out, args.count)


def _plot_scaling_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--summary", required=True, help="summary.tsv of scaling-report")
    sub.add_argument("--projection", required=True, help="projection.tsv of scaling-report")
    sub.add_argument("--out-dir", required=True)


@command("plot-scaling", "weak-scaling figures from the scaling tables", _plot_scaling_arguments)
def cmd_plot_scaling(args: argparse.Namespace) -> None:
    from wcgan.figures import plot_job_time_split, plot_scaling_projection, plot_weak_scaling
    from wcgan.scaling import PARTS
    from wcgan.tables import read_checked_csv

    summary = read_checked_csv(args.summary, "weak-scaling summary")
    out = Path(args.out_dir)
    plot_weak_scaling(summary, out / "weak_scaling.png")
    plot_job_time_split(summary, PARTS, out / "job_time_split.png")
    projection = read_checked_csv(args.projection, "weak-scaling projection")
    plot_scaling_projection(summary, projection, out / "projection.png")


# --- parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wcgan", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"wcgan {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for name, help, arguments, handler in COMMANDS:
        # Options spelled out in full: train-distributed hands its command line on to its ranks.
        sub = commands.add_parser(name, help=help, description=help, allow_abbrev=False)
        sub.set_defaults(handler=handler)
        arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # When and how the command was started: a training summary's timing, a group's ranks' argv.
    parser.set_defaults(started_at=time.time(), argv=list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except QuietExit as exc:  # another process's line says why
        return exc.exit_code
    except WcganError as exc:
        log(f"wcgan: error: {exc}")
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
