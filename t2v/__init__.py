"""t2v: a config-driven text-to-video experiment framework (PyTorch Lightning + Hydra)."""

from t2v.config import register_resolvers

__version__ = "0.1.0"

register_resolvers()
