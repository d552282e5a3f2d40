"""t2v: a config-driven text-to-video experiment framework (PyTorch Lightning + Hydra)."""

__version__ = "0.1.0"
