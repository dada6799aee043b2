"""GAN losses. Each splits the critic update into a main term and an optional regularizer, so
the loop can time them apart; their published settings live in ``wcgan.config.RECIPES``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import torch
from torch import nn


class GANLoss:
    """Critic and generator objectives; the optimizer steps stay in the training loop."""

    name: ClassVar[str]  # the key of this loss in LOSSES and wcgan.config.RECIPES
    penalty_weight: float = 0.0  # multiplies critic_penalty in the critic's loss

    def critic_loss(
        self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(loss to minimise, Wasserstein estimate E[D(real)] - E[D(fake)])``."""
        # One pass over real and fake together: the critic has no batch statistics.
        scores = critic(torch.cat([real, fake]))
        wasserstein = scores[: len(real)].mean() - scores[len(real) :].mean()
        return -wasserstein, wasserstein

    def critic_penalty(
        self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, rng: torch.Generator
    ) -> torch.Tensor | None:
        """An unweighted regularizer on the critic, or None when the loss has none."""
        return None

    def generator_loss(self, critic: nn.Module, fake: torch.Tensor) -> torch.Tensor:
        return -critic(fake).mean()

    def after_critic_step(self, critic: nn.Module) -> None:
        """Hook run after each critic optimizer step (weight clipping)."""


class WassersteinGP(GANLoss):
    """WGAN-GP (Gulrajani et al. 2017): a penalty on the critic's gradient norm at random
    interpolates between real and fake samples keeps it close to 1-Lipschitz."""

    name = "wgan-gp"

    def __init__(self, gp_weight: float):
        self.penalty_weight = gp_weight

    def critic_penalty(self, critic, real, fake, rng):
        alpha = torch.rand(len(real), 1, 1, 1, generator=rng, device=real.device)
        interpolates = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(interpolates).sum(), interpolates, create_graph=True)
        return (grad.flatten(1).norm(2, dim=1) - 1).square().mean()


class WassersteinClip(GANLoss):
    """The original WGAN (Arjovsky et al. 2017): critic weights clipped to [-c, c] after each step."""

    name = "wgan-clip"

    def __init__(self, clip_value: float):
        self.clip_value = clip_value

    @torch.no_grad()
    def after_critic_step(self, critic):
        for param in critic.parameters():
            param.clamp_(-self.clip_value, self.clip_value)


LOSSES: dict[str, type[GANLoss]] = {loss.name: loss for loss in (WassersteinGP, WassersteinClip)}


def make_optimizer(
    name: str, params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float] | None
) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(float(betas[0]), float(betas[1])))
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}")
