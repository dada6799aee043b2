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
