"""DCGAN-style generator and critic sized by resolution, and the classifier behind the metrics.

Every network keeps its constructor arguments in ``hparams``, saved beside its state dict, so a
file rebuilds it as ``Network(**hparams)`` without pickling code. ``NetworkStack`` evaluates the
networks of several labels (one architecture, parameters of their own) in one call.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn.utils import parametrize

from wcgan.config import SUPPORTED_RESOLUTIONS

MAX_WIDTH_MULTIPLE = 8  # channels stop doubling at 8 x width, as in DCGAN's 64x64 nets


def _levels(resolution: int) -> int:
    """Number of 2x resampling steps between 4x4 and ``resolution``."""
    if resolution not in SUPPORTED_RESOLUTIONS:
        raise ValueError(f"resolution {resolution} not in {SUPPORTED_RESOLUTIONS}")
    return int(math.log2(resolution // 4))


def _channels_at(width: int, levels: int, level: int) -> int:
    """Channels at ``level`` (0 = 4x4, ``levels`` = full resolution): wide at 4x4, ``width`` at the top."""
    return width * min(2 ** (levels - level), MAX_WIDTH_MULTIPLE)


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose scale and shift are looked up per class (de Vries et al. 2017; the
    generators of SN-GAN's projection-discriminator runs and BigGAN)."""

    def __init__(self, features: int, num_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(features, affine=False)
        self.scale = nn.Embedding(num_classes, features)
        self.shift = nn.Embedding(num_classes, features)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        shape = (len(x), -1, 1, 1)
        return self.norm(x) * self.scale(labels).view(shape) + self.shift(labels).view(shape)


def _check_labels(network: nn.Module, labels: torch.Tensor | None) -> None:
    if (labels is None) != (network.num_classes is None):
        raise ValueError(
            f"{type(network).__name__} with num_classes={network.num_classes} called "
            f"{'without' if labels is None else 'with'} class labels"
        )


class Generator(nn.Module):
    """z -> 4x4 -> (transposed conv, BN, ReLU) x levels -> 3x3 conv -> tanh image in [-1, 1].

    With ``num_classes`` it is a class-conditional generator ``G(z, c)``: each batch norm takes
    its scale and shift from the class (conditional batch norm); one network for every label.
    """

    def __init__(
        self,
        z_dim: int,  # latent size
        resolution: int,  # output height = width
        channels: int,  # output image channels
        width: int,  # channels at full resolution; doubles per level down to 4x4
        num_classes: int | None = None,  # None: one label's generator; K: conditional on K classes
    ):
        super().__init__()
        self.hparams = dict(z_dim=z_dim, resolution=resolution, channels=channels, width=width)
        if num_classes is not None:
            self.hparams["num_classes"] = num_classes
        self.z_dim, self.resolution, self.channels = z_dim, resolution, channels
        self.num_classes = num_classes
        levels = _levels(resolution)

        def norm(features: int) -> nn.Module:
            if num_classes is None:
                return nn.BatchNorm2d(features)
            return ConditionalBatchNorm2d(features, num_classes)

        base = _channels_at(width, levels, 0)
        layers: list[nn.Module] = [
            nn.Linear(z_dim, base * 16, bias=False),
            nn.Unflatten(1, (base, 4, 4)),
            norm(base),
            nn.ReLU(inplace=True),
        ]
        for level in range(levels):
            c_in, c_out = _channels_at(width, levels, level), _channels_at(width, levels, level + 1)
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
                norm(c_out),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.Conv2d(width, channels, 3, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        _check_labels(self, labels)
        x = z
        for layer in self.net:
            x = layer(x, labels) if isinstance(layer, ConditionalBatchNorm2d) else layer(x)
        return x


class Critic(nn.Module):
    """Image -> (strided conv, LeakyReLU) x levels -> linear score. No batch norm: the gradient
    penalty is defined per sample, and batch statistics would couple the samples.

    With ``num_classes`` it is a projection discriminator (Miyato and Koyama 2018): the score
    adds the inner product of a class embedding with the last features, ``D(x, c) = w.h(x) +
    e(c).h(x)``. ``spectral_norm`` normalises every layer's weight by its largest singular value
    (Miyato et al. 2018), the constraint that recipe pairs with the hinge loss.
    """

    def __init__(
        self,
        resolution: int,  # input height = width
        channels: int,  # input image channels
        width: int,  # channels at full resolution; doubles per level down to 4x4
        num_classes: int | None = None,  # None: one label's critic; K: projection on K classes
        spectral_norm: bool = False,  # spectral normalisation of every conv and linear layer
    ):
        super().__init__()
        self.hparams = dict(resolution=resolution, channels=channels, width=width)
        if num_classes is not None or spectral_norm:
            self.hparams.update(num_classes=num_classes, spectral_norm=spectral_norm)
        self.num_classes = num_classes
        levels = _levels(resolution)

        def weighted(layer: nn.Module) -> nn.Module:
            return nn.utils.parametrizations.spectral_norm(layer) if spectral_norm else layer

        layers: list[nn.Module] = [weighted(nn.Conv2d(channels, width, 3, padding=1)), nn.LeakyReLU(0.2)]
        for level in range(levels, 0, -1):
            c_in, c_out = _channels_at(width, levels, level), _channels_at(width, levels, level - 1)
            layers += [weighted(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        features = _channels_at(width, levels, 0) * 16
        layers += [nn.Flatten(), weighted(nn.Linear(features, 1))]
        self.net = nn.Sequential(*layers)
        if num_classes is not None:
            self.embedding = weighted(nn.Embedding(num_classes, features))

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        _check_labels(self, labels)
        if labels is None:
            return self.net(images).squeeze(1)
        features = self.net[:-1](images)
        return self.net[-1](features).squeeze(1) + (self.embedding(labels) * features).sum(1)


class Classifier(nn.Module):
    """A small CNN trained on the real labels; its logits give IS, its penultimate features
    (after a fully connected layer, like Inception's pool features) FID/KID/PR."""

    def __init__(
        self,
        resolution: int,  # input height = width
        channels: int,  # input image channels
        num_classes: int,  # labels of the run
        width: int,  # channels of the first block; doubles per block up to 4 x width
        feature_dim: int = 128,  # size of the penultimate features
    ):
        super().__init__()
        self.hparams = dict(
            resolution=resolution,
            channels=channels,
            num_classes=num_classes,
            width=width,
            feature_dim=feature_dim,
        )
        self.resolution, self.channels, self.feature_dim = resolution, channels, feature_dim
        layers: list[nn.Module] = []
        c_in, c_out = channels, width
        for _ in range(_levels(resolution)):
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in, c_out = c_out, min(c_out * 2, width * 4)
        layers += [
            nn.Flatten(),
            nn.Linear(c_in * 16, feature_dim, bias=False),
            nn.BatchNorm1d(feature_dim),
            nn.ReLU(inplace=True),
        ]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(features, logits)`` for images scaled to [-1, 1]."""
        features = self.body(images)
        return features, self.head(features)


def stack_labels(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``torch.stack`` along a new leading label axis; one label's tensor becomes a view, no
    copy, so a chunk of one costs what one label's loop did."""
    return tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(tensors)


class NetworkStack:
    """K networks of one architecture called as one: inputs ``(K, B, ...)``, network k's
    outputs at ``[k]``, so scores come out ``(K, B)`` and images ``(K, B, C, H, W)``.

    The networks stay ordinary modules, each with its own parameters, buffers and state dict:
    saving, snapshots and per-label files are those of one network. Two ways to evaluate them,
    the same numbers either way:

    * ``vectorized``: one call stacks their parameters with ``torch.stack`` (differentiable:
      each network's parameters get their own gradient back) and their buffers, and evaluates
      one structural copy of the first network (on the meta device, no storage) under
      ``torch.func.vmap`` of ``functional_call``. vmap turns the per-network convolutions into
      grouped ones and the linear layers into batched matrix products: one kernel for all K.
      Batch norm keeps
      per-network statistics: its running statistics are updated in the stacked buffers and
      copied back into each network.
    * not vectorized (the default): each network on its own slice, outputs stacked. Grouped
      convolutions (and vmap's reshuffling around them) were slower than K plain ones on both
      kinds of device measured: oneDNN's on a CPU, cuDNN's on an H200, where the host queues
      the K networks' kernels faster than the GPU runs them ([Many labels](../../docs/many-labels.md),
      [GPU](../../docs/gpu.md)). ``bench/labels_per_job.py`` measures both on other devices.

    One network is called directly,
    so a stack of one costs what the network does. Parametrized networks (spectral norm) do not
    vectorize: their parameters live in the parametrizations, which ``functional_call`` over a
    copy does not follow.
    """

    def __init__(self, networks: Sequence[nn.Module], vectorized: bool = False):
        self.networks = list(networks)
        if not self.networks:
            raise ValueError("a NetworkStack needs at least one network")
        first = self.networks[0]
        self._structure: nn.Module | None = None
        if vectorized and len(self.networks) > 1:
            if any(parametrize.is_parametrized(module) for module in first.modules()):
                raise ValueError("parametrized networks (spectral norm) cannot be vectorized")
            self._structure = copy.deepcopy(first).to("meta")
            self._parameter_names = [name for name, _ in first.named_parameters()]
            self._buffer_names = [name for name, _ in first.named_buffers()]

    def __len__(self) -> int:
        return len(self.networks)

    def parameters(self) -> Iterator[nn.Parameter]:
        """Every network's parameters, network after network."""
        for network in self.networks:
            yield from network.parameters()

    def requires_grad_(self, requires_grad: bool = True) -> NetworkStack:
        for network in self.networks:
            network.requires_grad_(requires_grad)
        return self

    def __call__(self, inputs: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Network k on ``inputs[k]`` (and ``labels[k]``, a conditional network's classes)."""
        arguments = (inputs,) if labels is None else (inputs, labels)
        if self._structure is None:
            # Views whose backward is one stack (a squeeze for one network), where indexing
            # each would add a zero-filled gradient per network.
            if len(self.networks) == 1:
                return self.networks[0](*(argument.squeeze(0) for argument in arguments)).unsqueeze(0)
            slices = zip(*(argument.unbind(0) for argument in arguments), strict=True)
            return torch.stack([network(*part) for network, part in zip(self.networks, slices, strict=True)])
        params = {
            name: torch.stack([network.get_parameter(name) for network in self.networks])
            for name in self._parameter_names
        }
        buffers = {
            name: torch.stack([network.get_buffer(name) for network in self.networks])
            for name in self._buffer_names
        }
        self._structure.train(self.networks[0].training)
        outputs = vmap(self._call_structure)(params, buffers, *arguments)
        if buffers and self._structure.training:  # batch norm updated its running statistics
            with torch.no_grad():
                for name, stacked in buffers.items():
                    for network, value in zip(self.networks, stacked, strict=True):
                        network.get_buffer(name).copy_(value)
        return outputs

    def _call_structure(self, params, buffers, *arguments):
        return functional_call(self._structure, (params, buffers), arguments)


def images_to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the range the generator's tanh produces."""
    return images.float().div_(127.5).sub_(1.0)


def float_to_images(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounding to the nearest level."""
    return x.add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)
