"""Train a t2v stage: `python train.py stage=vae`, `python train.py -m stage=vae model.latent_dim=64,128`."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # Imported here so `--help` and `--cfg job` answer without loading torch.
    from t2v.cli import run_reporting_errors
    from t2v.cli.train import train

    summary = run_reporting_errors(train, cfg)
    best = summary.get("best") or {}
    return best.get(summary["monitor"])  # what a Hydra sweeper (e.g. Optuna) optimises


if __name__ == "__main__":
    main()
