"""What a training job holds in memory, estimated from what is known before it starts: the
scheduler's request for a chunk job (``workflow/rules/common/train.smk``) and the job's own
check at its start (``wcgan train --mem-mb``), so a chunk that cannot fit is refused in one line
instead of being killed by the kernel mid-run.

A GAN's job holds, besides the runtime (Python, torch and their libraries):

- its images, as uint8 (``wcgan.training.resident_images``): images x C x H x W bytes;
- per GAN, its generator and critic in float32 with a gradient and the optimizer's moments for
  each parameter (Adam 2, RMSprop 1), its generator's moving average and snapshots;
- a step's activations, per GAN in proportion to the batch and to the feature maps of one image
  through both networks (the factor fitted to measurements, docs/many-labels.md).

No torch here: the workflow computes a request for every parse without it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from wcgan.config import TrainConfig
from wcgan.errors import WcganError

MB = 1_000_000  # Snakemake's mem_mb, and --mem-mb
# Measured peak resident memory of `wcgan train` on a CPU, less the other terms: Python, torch
# and the job's own code (bench/chunk_memory.py, docs/many-labels.md).
RUNTIME_BYTES = 850 * MB
# A step's activations as a multiple of one image's feature maps through the generator and
# the critic (float32) times the batch, fitted to the growth of peak memory with K on a CPU
# (bench/chunk_memory.py, docs/many-labels.md) and rounded up.
ACTIVATION_FACTOR = 2
MOMENTS = {"adam": 2, "rmsprop": 1}  # optimizer state per parameter


def _channels(width: int, levels: int) -> list[int]:
    """Channels at each level, 4x4 first (``wcgan.networks._channels_at``)."""
    return [width * min(2 ** (levels - level), 8) for level in range(levels + 1)]


def network_sizes(
    resolution: int, channels: int, width: int, z_dim: int, classes: int | None = None
) -> tuple[int, int, int]:
    """A generator's and critic's parameter counts (per label, or conditional on ``classes``),
    and the elements of one image's feature maps through both (every layer's output once),
    from their architecture (``wcgan.networks.Generator``, ``Critic``)."""
    levels = int(math.log2(resolution // 4))
    c = _channels(width, levels)
    sides = [4 * 2**level for level in range(levels + 1)]
    # A batch norm's scale and shift: its own, or an embedding's row per class.
    norm = 2 * (classes or 1)
    generator = z_dim * c[0] * 16 + norm * c[0] + width * channels * 9 + channels
    generator += sum(c[k] * c[k + 1] * 16 + norm * c[k + 1] for k in range(levels))
    critic = channels * width * 9 + width + c[0] * 16 + 1
    critic += sum(c[k] * c[k - 1] * 16 + c[k - 1] for k in range(1, levels + 1))
    critic += c[0] * 16 * (classes or 0)  # the projection's class embedding
    maps = sum(ck * side * side for ck, side in zip(c, sides, strict=True))
    features = 2 * maps + 2 * channels * resolution**2  # both networks, and the image in and out
    return generator, critic, features


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of a training job, by what holds them."""

    images: int
    networks: int
    activations: int
    runtime: int = RUNTIME_BYTES

    @property
    def total(self) -> int:
        return self.images + self.networks + self.activations + self.runtime

    @property
    def data_mb(self) -> int:
        """What the job's data and networks add to the runtime, in MB rounded up."""
        return -(-(self.images + self.networks + self.activations) // MB)

    def describe(self) -> str:
        parts = ("images", "networks", "activations", "runtime")
        terms = " + ".join(f"{name} {getattr(self, name) / 1e9:.2f} GB" for name in parts)
        return f"about {self.total / 1e9:.2f} GB ({terms})"


def check_fits(estimate: MemoryEstimate, limit_mb: int, subject: str) -> None:
    """Refuse a job whose estimate is over its memory limit (the scheduler's ``mem_mb``),
    before it reads its images: the kernel would otherwise kill it mid-run."""
    if estimate.total > limit_mb * MB:
        raise WcganError(
            f"{subject} need {estimate.describe()}, more than the job's {limit_mb / 1000:.2f} GB "
            f"(--mem-mb, the workflow's resources.train_mem_mb plus the estimate for "
            f"resources.train_images_per_label images per label); raise those, or lower labels_per_job"
        )


def training_memory(
    config: TrainConfig, gans: int, images: int, channels: int, resolution: int, classes: int | None = None
) -> MemoryEstimate:
    """The memory of a job training ``gans`` per-label GANs (a chunk's K), or one GAN
    conditional on ``classes``, on ``images`` images in all of ``channels`` x ``resolution``
    x ``resolution``."""
    generator, critic, features = network_sizes(resolution, channels, config.width, config.z_dim, classes)
    per_parameter = 4 * (2 + MOMENTS[config.effective_optimizer])  # weight, gradient, moments
    # The snapshots taken, and the trained generator's copy beside them; with a moving average,
    # its generator and a copy of it at each snapshot.
    averaged = 2 if config.ema_half_life_images else 1
    generator_copies = 4 * generator * (config.snapshots + 1) * averaged
    networks = gans * (per_parameter * (generator + critic) + generator_copies)
    activations = gans * ACTIVATION_FACTOR * 4 * config.batch_size * features
    return MemoryEstimate(images * channels * resolution**2, networks, activations)


def check_training_memory(
    shard_files: Sequence[str], config: TrainConfig, limit_mb: int, chunk: str | None
) -> None:
    """Refuse a training job whose images and networks would not fit ``limit_mb`` (its
    ``--mem-mb``), from the shards' headers, before any image is read or anything written.
    ``chunk`` names the chunk of a per-label job in the message."""
    from wcgan.files import load_shard

    shards = [load_shard(path, header_only=True) for path in shard_files]
    if not shards:
        return  # the training data's own check says so
    count, (channels, resolution) = len(shards), shards[0].images.shape[1:3]
    images = sum(len(shard.images) for shard in shards)
    if config.generator == "per_label":
        subject = f"{f'chunk {chunk}: ' if chunk else ''}K = {count} labels"
        estimate = training_memory(config, count, images, channels, resolution)
    else:
        subject = f"the conditional GAN's {count} labels"
        estimate = training_memory(config, 1, images, channels, resolution, classes=count)
    check_fits(estimate, limit_mb, subject)
