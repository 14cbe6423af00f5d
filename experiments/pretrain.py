"""Pretrain the small model: `python -m experiments.pretrain [overrides]`."""

from experiments.cli import hydra_command
from growth.config import Config
from growth.experiment import pretrain


def run(config: Config) -> None:
    print(pretrain.run(config))


main = hydra_command(run)

if __name__ == "__main__":
    main()
