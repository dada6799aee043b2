"""GAN losses, two-stage and one-stage. Each splits the critic update into a main term and an
optional regularizer, so the loop can time them apart; their published settings live in
``wcgan.config.RECIPES``.

A loss is written per sample on the critic's scores ``s``: ``real_term(s)`` and ``fake_term(s)``
make the critic's loss, ``generator_term(s)`` the generator's; each batch loss is their mean.

Every tensor has a leading label axis: the critic is a ``wcgan.networks.NetworkStack`` of K
labels' critics (or any callable from ``(K, B, ...)`` images to ``(K, B)`` scores), images are
``(K, B, C, H, W)``, and every loss, gap and penalty comes back per label, ``(K,)``: the mean
over that label's batch. The training loop backpropagates their sum, which gives each label's
parameters exactly the gradient of its own loss, as if it were trained alone: nothing, not a
mean, a penalty norm or a random number, is shared between labels.

Two-stage training (``train.training: two_stage``) updates the critic on detached fakes, then the
generator through a second forward and backward pass of both networks. One-stage training (Shen
et al. 2021, "Training Generative Adversarial Networks in One Stage") gets both networks'
gradients from one forward and one backward pass (``GANLoss.one_stage_backward``): the critic
scores real and non-detached fakes, and on its way back into the generator the gradient is
rescaled per sample by ``generator_term'(s) / fake_term'(s)``, which turns the gradient of the
critic's fake term into that of the generator's loss. Symmetric losses (generator loss = minus
the critic's fake term: the Wasserstein ones) have the ratio -1, a plain negation. Where the
critic's fake term is flat (hinge, beyond its margin) there is nothing to rescale: those fakes
alone are scored again by the critic, frozen, for the generator's gradient. With ``n``
critic steps per generator step the generator's update rides on the last critic pass; the first
``n - 1`` are ordinary critic steps on detached fakes. Both optimizers then step, so the two
updates are simultaneous: the generator's gradient is taken at the critic's parameters before
the critic's step, where two-stage training takes it after.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from wcgan.networks import NetworkStack, stack_labels

Labels = torch.Tensor | None  # class indices of a conditional critic's inputs; None: one label
# A critic per label: (K, B, C, H, W) images [and (K, B) classes] -> (K, B) scores.
Scorer = nn.Module | NetworkStack


def score(critic: Scorer, images: torch.Tensor, labels: Labels) -> torch.Tensor:
    """The critic's scores of ``images``, of classes ``labels`` for a conditional critic."""
    return critic(images) if labels is None else critic(images, labels)


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(K, B)`` values shaped to multiply ``(K, B, ...)`` tensors sample by sample."""
    return values.view(*values.shape, *[1] * (like.dim() - values.dim()))


class GANLoss:
    """Critic and generator objectives; the optimizer steps stay in the training loop."""

    name: ClassVar[str]  # the key of this loss in LOSSES and wcgan.config.RECIPES
    penalty_weight: float = 0.0  # multiplies critic_penalty in the critic's loss

    def real_term(self, scores: torch.Tensor) -> torch.Tensor:
        """The critic's loss on each real sample."""
        raise NotImplementedError

    def fake_term(self, scores: torch.Tensor) -> torch.Tensor:
        """The critic's loss on each generated sample."""
        raise NotImplementedError

    def generator_term(self, scores: torch.Tensor) -> torch.Tensor:
        """The generator's loss on each generated sample."""
        raise NotImplementedError

    def critic_loss(
        self, critic: Scorer, real: torch.Tensor, fake: torch.Tensor, labels: Labels = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(loss to minimise, gap E[D(real)] - E[D(fake)])``, each ``(K,)``. For the
        Wasserstein losses the gap is the Wasserstein estimate; for the others a generic measure
        of separation. ``labels`` are the classes of a conditional critic, the same for
        ``real[k, i]`` and ``fake[k, i]``; None for one label's critic."""
        loss, gap, _ = self._scored_critic_loss(critic, real, fake, labels)
        return loss, gap

    def _scored_critic_loss(
        self, critic: Scorer, real: torch.Tensor, fake: torch.Tensor, labels: Labels
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``critic_loss`` and the critic's scores of the fakes."""
        # One pass over real and fake together: the critic has no batch statistics.
        both = None if labels is None else torch.cat([labels, labels], 1)
        real_scores, fake_scores = score(critic, torch.cat([real, fake], 1), both).split(
            [real.shape[1], fake.shape[1]], 1
        )
        loss = self.real_term(real_scores).mean(-1) + self.fake_term(fake_scores).mean(-1)
        return loss, real_scores.mean(-1) - fake_scores.mean(-1), fake_scores

    def critic_penalty(
        self,
        critic: Scorer,
        real: torch.Tensor,
        fake: torch.Tensor,
        rngs: Sequence[torch.Generator],
        labels: Labels = None,
    ) -> torch.Tensor | None:
        """An unweighted regularizer on the critic per label, ``(K,)``, or None when the loss has
        none; label k's random numbers come from ``rngs[k]``. It never sends a gradient to the
        generator, even when ``fake`` carries the generator's graph."""
        return None

    def generator_loss(self, critic: Scorer, fake: torch.Tensor, labels: Labels = None) -> torch.Tensor:
        return self.generator_term(score(critic, fake, labels)).mean(-1)

    def after_critic_step(self, critic: Scorer) -> None:
        """Hook run after each critic optimizer step (weight clipping)."""

    def one_stage_backward(
        self, critic: Scorer, real: torch.Tensor, fake: torch.Tensor, labels: Labels = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Backpropagate the critic's loss and the generator's from one pass over the critic.

        ``fake`` is the generator's output, not detached. Afterwards the critic's parameters hold
        the gradient of ``critic_loss(critic, real, fake)`` and the generator's parameters that of
        ``generator_loss(critic, fake)``, both at the critic's current parameters (the penalty is
        left to the caller: it sends nothing to the generator). Returns ``(critic loss, gap,
        generator loss)``, detached, each ``(K,)``.

        The critic's gradient is exact because the backward pass starts from the critic's own
        loss. The fakes' gradient is then ``fake_term'(s_i) / B * dD/dx_i`` for sample ``i``;
        a hook on the critic pass's view of the fakes multiplies it by ``generator_term'(s_i) /
        fake_term'(s_i)``, which makes it the generator loss's gradient ``generator_term'(s_i) /
        B * dD/dx_i``. Where ``fake_term'(s_i)`` is zero (hinge: fakes beyond the margin), or too
        small for the ratio to be accurate, that gradient carries nothing to rescale: the hook
        drops it, and those samples alone are scored again by the critic with its parameters
        frozen, adding their generator term to the objective; that gradient reaches the
        generator's output directly, not through the hook. Still one backward call, and exact;
        the rescored samples cost an extra critic pass (checking whether there are any waits
        for the device). Each label's critic scores its own: the pass takes as many samples of
        every label as the label with the most to rescore has, its rescored ones first, and
        the others (padding) count with weight 0.
        """
        critic_view = fake.view_as(fake)  # the critic pass's own edge back into the generator
        critic_loss, gap, fake_scores = self._scored_critic_loss(critic, real, critic_view, labels)
        scores = fake_scores.detach()
        scale, rescore = self._generator_gradient_scale(scores)
        critic_view.register_hook(lambda grad: grad * _per_sample(scale, grad))
        objective = critic_loss.sum()
        most = int(rescore.sum(1).max())
        if most:
            # Per label, the rescored samples first (in batch order), then padding.
            rows = torch.sort((~rescore).to(torch.uint8), dim=1, stable=True).indices[:, :most]
            weight = rescore.gather(1, rows)
            labels_of = torch.arange(len(fake), device=fake.device)[:, None]
            critic.requires_grad_(False)  # the critic's own gradient comes from its loss alone
            try:
                rescored = score(
                    critic, fake[labels_of, rows], None if labels is None else labels[labels_of, rows]
                )
                objective = objective + (self.generator_term(rescored) * weight).sum() / fake.shape[1]
            finally:
                critic.requires_grad_(True)
        objective.backward()
        return critic_loss.detach(), gap.detach(), self.generator_term(scores).mean(-1)

    def _generator_gradient_scale(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sample, ``generator_term'(s) / fake_term'(s)`` (0 where that ratio is not usable),
        and which samples need their generator gradient from a frozen critic pass instead."""
        scores = scores.detach().requires_grad_(True)
        with torch.enable_grad():
            (critic_slope,) = torch.autograd.grad(self.fake_term(scores).sum(), scores)
            (generator_slope,) = torch.autograd.grad(self.generator_term(scores).sum(), scores)
        # Below eps relative to the generator's slope, the critic's rounded gradient (or its
        # underflow to zero) would be scaled up into the generator's: rescore those instead.
        usable = critic_slope.abs() > generator_slope.abs() * torch.finfo(scores.dtype).eps
        scale = torch.where(usable, generator_slope / critic_slope, 0.0)
        return scale, ~usable & (generator_slope != 0)


class Wasserstein(GANLoss):
    """The Wasserstein critic loss E[D(fake)] - E[D(real)] and generator loss -E[D(fake)]: a
    symmetric pair, so one stage scales the generator's gradient by -1 (negation) and never
    rescores."""

    def real_term(self, scores):
        return -scores

    def fake_term(self, scores):
        return scores

    def generator_term(self, scores):
        return -scores


class WassersteinGP(Wasserstein):
    """WGAN-GP (Gulrajani et al. 2017): a penalty on the critic's gradient norm at random
    interpolates between real and fake samples keeps it close to 1-Lipschitz.

    One stage: the critic's last pass backpropagates the Wasserstein term through the
    non-detached fakes, negated into the generator; the penalty then takes its own (double)
    backward pass on detached fakes, so it reaches the critic only."""

    name = "wgan-gp"

    def __init__(self, gp_weight: float):
        self.penalty_weight = gp_weight

    def critic_penalty(self, critic, real, fake, rngs, labels=None):
        batch, dtype = real.shape[1], real.dtype
        alpha = stack_labels(
            [torch.rand(batch, 1, 1, 1, generator=rng, device=real.device, dtype=dtype) for rng in rngs]
        )
        # Detached: the penalty regularizes the critic alone, in one stage as in two.
        interpolates = (alpha * real + (1 - alpha) * fake.detach()).requires_grad_(True)
        scores = score(critic, interpolates, labels)
        # Outside the critic's vmap (autograd.grad does not run inside one): each score depends
        # on its own interpolate only, so the gradient of the sum is every sample's own gradient.
        (grad,) = torch.autograd.grad(scores.sum(), interpolates, create_graph=True)
        return (grad.flatten(2).norm(2, dim=2) - 1).square().mean(-1)


class WassersteinClip(Wasserstein):
    """The original WGAN (Arjovsky et al. 2017): critic weights clipped to [-c, c] after each step.

    One stage: the critic's last pass backpropagates the Wasserstein term, negated into the
    generator. Clipping is compatible: it acts on the critic's weights after the optimizer step,
    when both gradients have been taken, so it changes neither; the generator's gradient is taken
    at the critic of the previous step, which was clipped too."""

    name = "wgan-clip"

    def __init__(self, clip_value: float):
        self.clip_value = clip_value

    @torch.no_grad()
    def after_critic_step(self, critic):
        for param in critic.parameters():
            param.clamp_(-self.clip_value, self.clip_value)


class NonSaturating(GANLoss):
    """DCGAN's loss (Radford et al. 2016; Goodfellow et al. 2014): binary cross-entropy on the
    critic's logits, real = 1 and fake = 0, with the non-saturating generator loss
    -log sigmoid(D(G(z))).

    One stage: asymmetric. The generator's gradient is the critic fake term's scaled by
    (sigmoid(s) - 1) / sigmoid(s) = -exp(-s) per sample; fakes the critic rejects with
    sigmoid(s) below float precision are rescored by the frozen critic."""

    name = "dcgan"

    def real_term(self, scores):
        return F.binary_cross_entropy_with_logits(scores, torch.ones_like(scores), reduction="none")

    def fake_term(self, scores):
        return F.binary_cross_entropy_with_logits(scores, torch.zeros_like(scores), reduction="none")

    def generator_term(self, scores):
        return self.real_term(scores)


class Hinge(GANLoss):
    """The hinge loss of SN-GAN (Miyato et al. 2018; Lim and Ye 2017): critic relu(1 - D(x)) +
    relu(1 + D(G(z))), generator -D(G(z)).

    One stage: asymmetric. Inside the margin (D(G(z)) > -1) the generator's gradient is the
    critic fake term's negated; beyond it the critic's fake term is flat and sends nothing, so
    those fakes are rescored by the frozen critic for the generator's gradient."""

    name = "hinge"

    def real_term(self, scores):
        return F.relu(1 - scores)

    def fake_term(self, scores):
        return F.relu(1 + scores)

    def generator_term(self, scores):
        return -scores


LOSSES: dict[str, type[GANLoss]] = {
    loss.name: loss for loss in (WassersteinGP, WassersteinClip, NonSaturating, Hinge)
}


def make_optimizer(
    name: str, params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float] | None
) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(float(betas[0]), float(betas[1])))
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}")
