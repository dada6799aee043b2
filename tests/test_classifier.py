import pytest
import torch

from wcgan.classifier import train_classifier
from wcgan.config import ClassifierConfig
from wcgan.errors import WcganError


def test_a_last_batch_of_one_image_trains_with_the_batch_before(digit_shards):
    # 4 images per label, 1 held out: 9 to train on, batches of 4, 4 and a lone 1.
    config = ClassifierConfig(epochs=1, batch_size=4, width=4, holdout=0.25, max_images_per_label=4, seed=0)
    _, report = train_classifier(digit_shards, config, torch.device("cpu"), log=lambda _: None)
    assert report["train_images"] == 9 and report["holdout_images"] == 3


def test_batches_of_one_image_are_refused():
    with pytest.raises(WcganError, match="metrics.classifier.batch_size must be 2 or more"):
        ClassifierConfig.from_mapping({"batch_size": 1})
