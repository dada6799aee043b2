"""One-stage training gives both networks the gradients two-stage training gives them, at the
same critic parameters, for every loss; on the project's own networks, in float64."""

import pytest
import torch

from wcgan.losses import LOSSES, GANLoss
from wcgan.networks import Critic, Generator, NetworkStack

BATCH = 16
OPTIONS = {"wgan-gp": {"gp_weight": 10.0}, "wgan-clip": {"clip_value": 0.01}}


def make_loss(name: str) -> GANLoss:
    return LOSSES[name](**OPTIONS.get(name, {}))


def setup(scores_mean: float | None = None, scores_std: float = 2.0):
    """A generator and critic at 8x8 (stacks of one, as the losses take them), a real batch and
    latents with a label axis of 1; with ``scores_mean``, the critic's last layer is rescaled so
    its scores of the fakes have that mean and standard deviation."""
    torch.manual_seed(0)
    generator = Generator(z_dim=8, resolution=8, channels=1, width=4).double()
    critic = Critic(resolution=8, channels=1, width=4).double()
    real = torch.rand(1, BATCH, 1, 8, 8, dtype=torch.float64) * 2 - 1
    z = torch.randn(1, BATCH, 8, dtype=torch.float64)
    if scores_mean is not None:
        with torch.no_grad():
            last = critic.net[-1]
            last.weight *= scores_std / critic(generator(z[0])).std()
            last.bias += scores_mean - critic(generator(z[0])).mean()
    return NetworkStack([generator]), NetworkStack([critic]), real, z


def gradients(network: NetworkStack) -> list[torch.Tensor]:
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in network.parameters()]


def add_penalty(loss: GANLoss, critic, real, fake) -> None:
    penalty = loss.critic_penalty(critic, real, fake, [torch.Generator().manual_seed(1)])
    if penalty is not None:
        (loss.penalty_weight * penalty).sum().backward()


def two_stage(loss: GANLoss, generator, critic, real, z):
    """The training loop's two passes, both at the same critic parameters (no optimizer step)."""
    with torch.no_grad():
        fake = generator(z)
    critic_loss, gap = loss.critic_loss(critic, real, fake)
    critic_loss.sum().backward()
    add_penalty(loss, critic, real, fake)
    critic.requires_grad_(False)
    generator_loss = loss.generator_loss(critic, generator(z))
    generator_loss.sum().backward()
    critic.requires_grad_(True)
    return gradients(critic), gradients(generator), (critic_loss, gap, generator_loss)


def one_stage(loss: GANLoss, generator, critic, real, z):
    fake = generator(z)
    values = loss.one_stage_backward(critic, real, fake)
    add_penalty(loss, critic, real, fake)
    return gradients(critic), gradients(generator), values


def assert_all_close(actual: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    assert any(e.abs().max() > 0 for e in expected)
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("name", "scores_mean", "scores_std"),
    [
        ("wgan-gp", None, None),
        ("wgan-clip", None, None),
        ("dcgan", None, None),
        ("dcgan", -36.0, 4.0),  # sigmoid(D(fake)) on both sides of float64's eps: some rescored
        ("hinge", -1.0, 2.0),  # fakes on both sides of the margin
        ("hinge", -4.0, 0.5),  # every fake beyond the margin: no critic gradient to rescale
    ],
)
def test_one_stage_gradients_equal_two_stage(name, scores_mean, scores_std):
    loss = make_loss(name)
    generator, critic, real, z = setup(scores_mean, scores_std)
    with torch.no_grad():
        scores = critic(generator(z))[0]
    if name == "hinge":
        beyond = scores < -1
        assert beyond.any() and (beyond.all() if scores_mean < -3 else not beyond.all())
    if name == "dcgan" and scores_mean is not None:
        below = torch.sigmoid(scores) < torch.finfo(scores.dtype).eps
        assert below.any() and not below.all()
    critic_expected, generator_expected, values_expected = two_stage(loss, generator, critic, real, z)
    for network in (*critic.networks, *generator.networks):
        network.zero_grad(set_to_none=True)
    critic_actual, generator_actual, values_actual = one_stage(loss, generator, critic, real, z)
    assert_all_close(critic_actual, critic_expected)
    assert_all_close(generator_actual, generator_expected)
    torch.testing.assert_close(torch.stack(values_actual), torch.stack(values_expected).detach())


@pytest.mark.parametrize("name", ["wgan-gp", "wgan-clip"])
def test_symmetric_losses_negate_the_critic_gradient_into_the_generator(name):
    """Without the hook, the generator would climb its own loss: the plain backward pass of the
    critic's loss sends it exactly the opposite gradient."""
    loss = make_loss(name)
    generator, critic, real, z = setup()
    loss.critic_loss(critic, real, generator(z))[0].sum().backward()
    plain = gradients(generator)
    generator.networks[0].zero_grad(set_to_none=True)
    loss.one_stage_backward(critic, real, generator(z))
    assert_all_close(gradients(generator), [-g for g in plain])


def test_the_gradient_penalty_sends_nothing_to_the_generator():
    loss = make_loss("wgan-gp")
    generator, critic, real, z = setup()
    add_penalty(loss, critic, real, generator(z))  # fakes that carry the generator's graph
    assert all(p.grad is None for p in generator.parameters())
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in critic.parameters())


def test_one_stage_leaves_the_critic_trainable():
    """Rescoring freezes the critic for a moment; it must be unfrozen afterwards."""
    generator, critic, real, z = setup(scores_mean=-4.0, scores_std=0.5)
    make_loss("hinge").one_stage_backward(critic, real, generator(z))
    assert all(p.requires_grad for p in critic.parameters())
