"""Train a t2v stage: `python train.py stage=vae`, `python train.py -m stage=vae model.latent_dim=64,128`."""

import hydra
from omegaconf import DictConfig

import t2v  # noqa: F401  (registers the config resolvers)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # Imported here so `--help` and `--cfg job` answer without loading torch.
    from hydra.utils import get_method

    from t2v.cli import run_reporting_errors

    # A stage may name its own task (stage=pipeline does); a plain stage is trained.
    task = get_method(cfg.stage.get("task") or "t2v.cli.train.train")
    summary = run_reporting_errors(task, cfg)
    best = summary.get("best") or {}
    return best.get(summary.get("monitor"))  # what a Hydra sweeper (e.g. Optuna) optimises


if __name__ == "__main__":
    main()
