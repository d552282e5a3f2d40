"""Turn sentences into clips: `python generate.py text="a red circle moves to the left" num_samples=4`."""

import hydra
from omegaconf import DictConfig

import t2v  # noqa: F401  (registers the config resolvers)


@hydra.main(version_base="1.3", config_path="conf", config_name="generate")
def main(cfg: DictConfig) -> None:
    # Imported here so `--help` and `--cfg job` answer without loading torch.
    from t2v.cli.generate import generate
    from t2v.errors import run_reporting_errors

    run_reporting_errors(generate, cfg)


if __name__ == "__main__":
    main()
