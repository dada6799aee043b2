"""The classifier that stands in for Inception-v3 where its weights are not at hand.

It is trained on the run's real images (a stratified hold-out measures its accuracy); its logits
give the Inception Score and its pooled features FID, KID and precision/recall. Numbers are
comparable between runs scored with the same classifier file, not with published Inception
figures.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from wcgan.config import ClassifierConfig
from wcgan.data import Shard
from wcgan.errors import WcganError
from wcgan.networks import Classifier, images_to_float


def _split(shards: Sequence[Shard], config: ClassifierConfig, rng: torch.Generator):
    """Stratified train/hold-out split: every label keeps at least one image on each side."""
    train, held, train_y, held_y = [], [], [], []
    for class_index, shard in enumerate(shards):
        order = torch.randperm(len(shard.images), generator=rng)
        if config.max_images_per_label:
            order = order[: config.max_images_per_label]
        n_held = min(max(1, round(len(order) * config.holdout)), len(order) - 1)
        held.append(shard.images[order[:n_held]])
        train.append(shard.images[order[n_held:]])
        held_y.append(torch.full((n_held,), class_index))
        train_y.append(torch.full((len(order) - n_held,), class_index))
    return torch.cat(train), torch.cat(train_y), torch.cat(held), torch.cat(held_y)


def _batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """``order`` in batches of ``batch_size``; a last batch of one image joins the one before,
    as batch norm cannot train on a single image."""
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


@torch.no_grad()
def predict(model: Classifier, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    device = next(model.parameters()).device
    model.eval()
    return torch.cat(
        [model(images_to_float(part.to(device)))[1].argmax(1).cpu() for part in images.split(batch_size)]
    )


def train_classifier(
    shards: Sequence[Shard],
    config: ClassifierConfig,
    device: torch.device,
    log: Callable[[str], None] = print,
) -> tuple[Classifier, dict[str, Any]]:
    """Train on all labels' real images; return the model and a report with hold-out accuracy."""
    shapes = {(s.resolution, s.channels) for s in shards}
    if len(shapes) != 1:
        raise WcganError(f"shards differ in resolution or channels: {sorted(shapes)}")
    if len(shards) < 2:
        raise WcganError("the classifier needs at least 2 labels")
    ((resolution, channels),) = shapes
    rng = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    x_train, y_train, x_held, y_held = _split(shards, config, rng)
    model = Classifier(resolution, channels, len(shards), config.width).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps_per_epoch = len(_batches(torch.arange(len(x_train)), config.batch_size))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs * steps_per_epoch)
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=rng)
        total = 0.0
        for rows in _batches(order, config.batch_size):
            images = images_to_float(x_train[rows].to(device))
            loss = F.cross_entropy(model(images)[1], y_train[rows].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(rows)
        log(f"classifier epoch {epoch + 1}/{config.epochs}: train loss {total / len(x_train):.4f}")
    correct = predict(model, x_held) == y_held
    per_label = {
        shard.label.name: correct[y_held == i].float().mean().item() for i, shard in enumerate(shards)
    }
    report = {
        "holdout_accuracy": correct.float().mean().item(),
        "holdout_images": len(y_held),
        "train_images": len(y_train),
        "per_label_accuracy": per_label,
        "resolution": resolution,
        "channels": channels,
        "feature_dim": model.feature_dim,
        "config": dataclasses.asdict(config),
    }
    log(f"classifier hold-out accuracy {report['holdout_accuracy']:.4f} on {len(y_held)} images")
    return model.eval(), report
