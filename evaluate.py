"""Score a trained chain: `python evaluate.py [experiment=t2v]` -> attribute fidelity, FD/KID, diversity, retrieval."""

import hydra
from omegaconf import DictConfig

import t2v  # noqa: F401  (registers the config resolvers)


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    # Imported here so `--help` and `--cfg job` answer without loading torch.
    from t2v.cli.evaluate import evaluate
    from t2v.errors import run_reporting_errors

    run_reporting_errors(evaluate, cfg)


if __name__ == "__main__":
    main()
