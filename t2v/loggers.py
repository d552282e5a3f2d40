"""Logger factories referenced from `conf/logger/`.

Lightning's own loggers are built straight from config; W&B needs a factory because whether it
runs offline depends on the machine (is an API key configured?), not on the config.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import WandbLogger


def wandb_api_key_configured() -> bool:
    """True when W&B could log in: WANDB_API_KEY is set or `wandb login` wrote ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc_path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        hosts = netrc.netrc(netrc_path).hosts
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return any("wandb" in host for host in hosts)


def wandb_logger(offline: bool | None = None, save_dir: str = ".", **kwargs: Any) -> WandbLogger:
    """A WandbLogger writing into the run dir; offline unless an API key is configured.

    ``offline=None`` decides automatically. An explicit WANDB_MODE in the environment wins over
    both, as W&B users expect.
    """
    mode = os.environ.get("WANDB_MODE")
    if mode in ("offline", "dryrun"):
        offline = True
    elif mode == "online":
        offline = False
    elif offline is None:
        offline = not wandb_api_key_configured()
    Path(save_dir).mkdir(parents=True, exist_ok=True)  # wandb would fall back to ./wandb otherwise
    return WandbLogger(offline=offline, save_dir=save_dir, **kwargs)
