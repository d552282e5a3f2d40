"""Hydra callbacks for sweeps (``python train.py -m ...``), registered in ``conf/hydra/default.yaml``.

:class:`OptimiseMonitor` points an optimising sweeper (Optuna, ``t2v[optuna]``) the right way: a sweep optimises
the stage's ``stage.monitor`` (what ``train.py`` returns), lower-is-better for the VAE's ``val/elbo`` and
higher-is-better for a GAN's ``val/fidelity``, while the plugin minimises unless told.
"""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, read_write

from t2v.config import direction


class OptimiseMonitor(Callback):
    """Before an optimising sweeper (one with a ``direction``) is built, set what the command line leaves unset:

    - ``hydra.sweeper.direction`` from ``stage.mode`` (min -> minimize, max -> maximize);
    - ``hydra.sweeper.max_failure_rate: 1.0``: a failed trial (bad input, a non-finite loss) is recorded as failed
      and the search goes on; the plugin's 0.0 would end the sweep at the first one. A sweep in which every trial
      fails still ends in an error.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweeper = config.hydra.sweeper
        if "direction" not in sweeper:  # the basic sweeper runs every job and optimises nothing
            return
        given = {o.lstrip("+").split("=")[0] for o in config.hydra.overrides.hydra}
        with read_write(sweeper):
            if "hydra.sweeper.direction" not in given:
                sweeper.direction = direction(config.stage.mode)
            if "hydra.sweeper.max_failure_rate" not in given and "max_failure_rate" in sweeper:
                sweeper.max_failure_rate = 1.0
