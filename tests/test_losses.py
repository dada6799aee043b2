import pytest
import torch
from torch import nn

from wcgan.config import RECIPES, TrainConfig
from wcgan.losses import LOSSES, Hinge, NonSaturating, WassersteinClip, WassersteinGP, make_optimizer
from wcgan.networks import Critic, NetworkStack


class LinearCritic(nn.Module):
    """D(x) = <w, x>: its gradient is w everywhere, so the penalty is known exactly."""

    def __init__(self, norm: float):
        super().__init__()
        self.weight = nn.Parameter(torch.full((4,), norm / 2.0))  # ||w|| = norm

    def forward(self, x):
        return x.flatten(1) @ self.weight


def alone(critic: nn.Module) -> NetworkStack:
    """One label's critic as the losses take it: inputs and scores with a label axis of 1."""
    return NetworkStack([critic])


def test_every_loss_has_a_recipe():
    assert set(LOSSES) == set(RECIPES)


def test_gradient_penalty_of_a_linear_critic():
    real, fake = torch.randn(1, 8, 1, 2, 2), torch.randn(1, 8, 1, 2, 2)
    rngs = [torch.Generator().manual_seed(0)]
    loss = WassersteinGP(gp_weight=10.0)
    assert loss.critic_penalty(alone(LinearCritic(1.0)), real, fake, rngs).item() < 1e-10
    assert abs(loss.critic_penalty(alone(LinearCritic(3.0)), real, fake, rngs).item() - 4.0) < 1e-5
    assert loss.penalty_weight == 10.0


def test_critic_loss_is_minus_the_wasserstein_estimate():
    critic = alone(LinearCritic(2.0))
    real, fake = torch.ones(1, 4, 1, 2, 2), torch.zeros(1, 4, 1, 2, 2)
    loss, wasserstein = WassersteinGP(10.0).critic_loss(critic, real, fake)
    assert torch.isclose(wasserstein, torch.tensor(4.0))  # <w, 1> = 4 * 1.0
    assert torch.isclose(loss, -wasserstein)
    assert torch.isclose(WassersteinGP(10.0).generator_loss(critic, real), torch.tensor(-4.0))


def test_dcgan_is_cross_entropy_on_the_critics_logits():
    critic = alone(LinearCritic(2.0))  # scores <w, 1> = 4 and 0
    real, fake = torch.ones(1, 4, 1, 2, 2), torch.zeros(1, 4, 1, 2, 2)
    loss, gap = NonSaturating().critic_loss(critic, real, fake)
    expected = -torch.log(torch.sigmoid(torch.tensor(4.0))) - torch.log(1 - torch.sigmoid(torch.tensor(0.0)))
    assert torch.isclose(loss, expected) and torch.isclose(gap, torch.tensor(4.0))
    # Non-saturating: -log sigmoid(D(G(z))), not log(1 - sigmoid(D(G(z)))).
    assert torch.isclose(
        NonSaturating().generator_loss(critic, real), -torch.log(torch.sigmoid(torch.tensor(4.0)))
    )
    assert NonSaturating().critic_penalty(critic, real, fake, None) is None


def test_hinge_loss_counts_only_scores_inside_the_margin():
    scores = torch.tensor([-2.0, -0.5, 0.5, 2.0])
    assert Hinge().real_term(scores).tolist() == [3.0, 1.5, 0.5, 0.0]
    assert Hinge().fake_term(scores).tolist() == [0.0, 0.5, 1.5, 3.0]
    assert Hinge().generator_term(scores).tolist() == [2.0, 0.5, -0.5, -2.0]


def test_weight_clipping_clamps_the_critic():
    critic = LinearCritic(3.0)
    loss = WassersteinClip(clip_value=0.01)
    assert (
        loss.critic_penalty(alone(critic), torch.zeros(1, 2, 1, 2, 2), torch.zeros(1, 2, 1, 2, 2), []) is None
    )
    loss.after_critic_step(alone(critic))
    assert torch.allclose(critic.weight, torch.full((4,), 0.01))


def test_critic_learns_to_separate_real_from_fake():
    torch.manual_seed(0)
    critic = alone(
        nn.Sequential(nn.Flatten(), nn.Linear(4, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1), nn.Flatten(0))
    )
    real, fake = torch.randn(1, 64, 1, 2, 2) + 2, torch.randn(1, 64, 1, 2, 2) - 2
    loss = WassersteinGP(gp_weight=10.0)
    optimizer = make_optimizer("adam", critic.parameters(), 1e-2, (0.0, 0.9))
    rngs = [torch.Generator().manual_seed(0)]
    estimates = []
    for _ in range(100):
        critic_loss, wasserstein = loss.critic_loss(critic, real, fake)
        total = (critic_loss + loss.penalty_weight * loss.critic_penalty(critic, real, fake, rngs)).sum()
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        estimates.append(wasserstein.item())
    assert estimates[-1] > 3.0 > estimates[0]  # the two clouds are 4 apart on every pixel


def test_projection_critic_separates_real_from_fake_class_by_class():
    # Real class 0 sits at +2 and class 1 at -2; the fakes have the classes swapped, so real and
    # fake images have the same marginal and only a class-aware critic can tell them apart.
    torch.manual_seed(0)
    network = Critic(resolution=8, channels=1, width=4, num_classes=2, spectral_norm=True)
    critic = alone(network)
    classes = torch.arange(64) % 2
    sign = (1 - 2 * classes).float().view(-1, 1, 1, 1)
    real = (2 * sign + 0.3 * torch.randn(64, 1, 8, 8)).clamp(-3, 3)
    fake = (-2 * sign + 0.3 * torch.randn(64, 1, 8, 8)).clamp(-3, 3)
    loss = Hinge()
    optimizer = make_optimizer("adam", critic.parameters(), 2e-3, (0.0, 0.9))
    gaps = []
    for _ in range(60):
        critic_loss, gap = loss.critic_loss(critic, real[None], fake[None], classes[None])
        optimizer.zero_grad()
        critic_loss.sum().backward()
        optimizer.step()
        gaps.append(gap.item())
    assert gaps[-1] > max(2.0, gaps[0] + 1.5)  # past the hinge margins: real >= 1, fake <= -1
    scores = network(torch.cat([real, fake]), torch.cat([classes, classes]))
    assert (scores[:64] > scores[64:].max()).float().mean() > 0.9  # nearly every real above every fake


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_with_its_recipe_teaches_the_critic_to_rank_real_above_fake(name):
    torch.manual_seed(0)
    network = nn.Sequential(
        nn.Flatten(), nn.Linear(4, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1), nn.Flatten(0)
    )
    critic = alone(network)
    real, fake = torch.randn(1, 64, 1, 2, 2) + 1, torch.randn(1, 64, 1, 2, 2) - 1
    config = TrainConfig(loss=name, iterations=1)
    settings = config.effective()
    loss = LOSSES[name](**config.resolved().loss_options)
    # Ten times the recipe's rate: a hundred steps stand in for a long run.
    optimizer = make_optimizer(
        settings["optimizer"], critic.parameters(), 10 * settings["lr"], settings.get("betas")
    )
    rngs = [torch.Generator().manual_seed(0)]
    loss.after_critic_step(critic)  # start inside the constraint (weight clipping)
    gaps = []
    for _ in range(100):
        critic_loss, gap = loss.critic_loss(critic, real, fake)
        penalty = loss.critic_penalty(critic, real, fake, rngs)
        total = critic_loss if penalty is None else critic_loss + loss.penalty_weight * penalty
        optimizer.zero_grad()
        total.sum().backward()
        optimizer.step()
        loss.after_critic_step(critic)
        gaps.append(gap.item())
    assert gaps[-1] > 1.5 * max(gaps[0], 0.0) and gaps[-1] > 0  # E[D(real)] - E[D(fake)] grew
    with torch.no_grad():
        assert (network(real[0]) > network(fake[0]).median()).float().mean() > 0.85
