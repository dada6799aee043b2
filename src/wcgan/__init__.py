"""wcgan: per-label Wasserstein conditional GANs, trained as independent jobs and scored together."""

__version__ = "0.1.0"
