"""The exponential moving average of generators' weights that samples and scores are drawn from
by default, as in stylegan2-ada (``G_ema``), StudioGAN and BigGAN
([Training](../../docs/training.md#the-generators-moving-average)).

Its decay is set as a half-life in images the generator has produced, so it means the same at
any batch size, and is shortened early in training (``rampup``) so the average does not drag the
random initial weights along. Batch-norm buffers are copied from the raw generator, not averaged.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from wcgan.config import EmaSchedule


class GeneratorAverage:
    """A moving-average copy of each of ``generators``, updated after every generator update of
    ``batch`` images: ``average = beta * average + (1 - beta) * weights``."""

    def __init__(self, generators: Sequence[nn.Module], schedule: EmaSchedule, batch: int):
        self.schedule, self.batch = schedule, batch
        self.generators = list(generators)
        self.averages = [copy.deepcopy(g).eval().requires_grad_(False) for g in self.generators]
        self._raw = [p for g in self.generators for p in g.parameters()]
        self._averaged = [p for g in self.averages for p in g.parameters()]
        self._raw_buffers = [b for g in self.generators for b in g.buffers()]
        self._copied_buffers = [b for g in self.averages for b in g.buffers()]

    @torch.no_grad()
    def update(self, count: int) -> None:
        """After generator update number ``count`` (1 for the first)."""
        beta = self.schedule.beta(count * self.batch, self.batch)
        # One kernel per operation for every label's parameters, as the optimizers step them.
        torch._foreach_lerp_(self._averaged, self._raw, 1.0 - beta)
        for copied, raw in zip(self._copied_buffers, self._raw_buffers, strict=True):
            copied.copy_(raw)

    def state(self) -> list[dict[str, Any]]:
        return [average.state_dict() for average in self.averages]

    def load(self, states: Sequence[dict[str, Any]]) -> None:
        for average, state in zip(self.averages, states, strict=True):
            average.load_state_dict(state)
