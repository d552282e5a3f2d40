"""Train a t2v stage: `python train.py stage=vae`, `python train.py -m stage=vae model.latent_dim=64,128`."""

import warnings

import hydra
from omegaconf import DictConfig

import t2v  # noqa: F401  (registers the config resolvers)

# conf/hydra/launcher/submitit_*.yaml take the place of the submitit plugin's options of the same names (to size
# the jobs from the trainer); Hydra merges them onto the plugin's schema, and warns that it does.
warnings.filterwarnings("ignore", message=".*is validated against ConfigStore schema with the same name.*")


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # Imported here so `--help` and `--cfg job` answer without loading torch.
    from t2v.cli.train import train

    return train(cfg)


if __name__ == "__main__":
    main()
