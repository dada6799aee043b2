import pytest
import torch

from wcgan.config import SUPPORTED_RESOLUTIONS
from wcgan.networks import Classifier, Critic, Generator, float_to_images, images_to_float


@pytest.mark.parametrize("resolution", SUPPORTED_RESOLUTIONS[:5])
@pytest.mark.parametrize("channels", [1, 3])
def test_generator_and_critic_shapes(resolution, channels):
    generator = Generator(z_dim=8, resolution=resolution, channels=channels, width=4)
    critic = Critic(resolution=resolution, channels=channels, width=4)
    images = generator(torch.randn(2, 8))
    assert images.shape == (2, channels, resolution, resolution)
    assert images.abs().max() <= 1
    assert critic(images).shape == (2,)


def test_width_sets_the_channels_and_rebuild_from_hparams():
    generator = Generator(z_dim=8, resolution=32, channels=3, width=8)
    assert generator.net[-2].in_channels == 8
    rebuilt = Generator(**generator.hparams)
    rebuilt.load_state_dict(generator.state_dict())
    generator.eval(), rebuilt.eval()
    z = torch.randn(2, 8)
    assert torch.equal(generator(z), rebuilt(z))


def test_unsupported_resolution_is_rejected():
    with pytest.raises(ValueError, match="resolution 28"):
        Generator(z_dim=8, resolution=28, channels=3, width=4)


def test_classifier_features_and_logits():
    model = Classifier(resolution=16, channels=3, num_classes=5, width=4, feature_dim=12)
    features, logits = model(torch.randn(3, 3, 16, 16))
    assert features.shape == (3, 12) and logits.shape == (3, 5)


def test_image_scaling_roundtrip():
    images = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    x = images_to_float(images)
    assert x.min() == -1 and x.max() == 1
    assert torch.equal(float_to_images(x), images)


def test_conditional_generator_draws_each_class_from_its_own_batch_norm():
    generator = Generator(z_dim=8, resolution=8, channels=1, width=4, num_classes=3).eval()
    with torch.no_grad():
        for layer in generator.net:
            if hasattr(layer, "shift"):
                layer.shift.weight.copy_(torch.arange(3.0)[:, None].expand_as(layer.shift.weight))
        z = torch.randn(1, 8).expand(3, 8)
        images = generator(z, torch.tensor([0, 1, 2]))
    assert not torch.equal(images[0], images[1]) and not torch.equal(images[1], images[2])
    rebuilt = Generator(**generator.hparams)
    rebuilt.load_state_dict(generator.state_dict())
    assert torch.equal(rebuilt.eval()(z, torch.tensor([0, 1, 2])), images)
    with pytest.raises(ValueError, match="called without class labels"):
        generator(z)


def test_projection_critic_adds_the_class_embedding_times_the_features():
    critic = Critic(resolution=8, channels=1, width=4, num_classes=2)
    images = torch.randn(4, 1, 8, 8)
    labels = torch.tensor([0, 1, 0, 1])
    features = critic.net[:-1](images)
    expected = critic.net[-1](features).squeeze(1) + (critic.embedding.weight[labels] * features).sum(1)
    assert torch.allclose(critic(images, labels), expected)
    with pytest.raises(ValueError, match="called with class labels"):
        Critic(8, 1, 4)(images, labels)


def test_spectral_norm_bounds_every_layers_largest_singular_value():
    critic = Critic(resolution=8, channels=1, width=4, num_classes=2, spectral_norm=True)
    for _ in range(30):  # power iterations converge in training mode
        critic(torch.randn(8, 1, 8, 8), torch.randint(2, (8,)))
    for module in critic.modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
            sigma = torch.linalg.matrix_norm(module.weight.detach().flatten(1), ord=2)
            assert sigma == pytest.approx(1.0, abs=0.05)
    plain = Critic(resolution=8, channels=1, width=4)
    assert not any("parametrizations" in name for name, _ in plain.named_parameters())
