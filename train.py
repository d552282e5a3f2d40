"""Train a t2v stage: `python train.py stage=vae`, `python train.py -m stage=vae model.latent_dim=64,128`."""

import hydra
from omegaconf import DictConfig

import t2v  # noqa: F401  (registers the config resolvers)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # Imported here so `--help` and `--cfg job` answer without loading torch.
    from t2v.cli.train import train

    return train(cfg)


if __name__ == "__main__":
    main()
