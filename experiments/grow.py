"""Grow, probe and continue every candidate for one (seed, growth step): `python -m experiments.grow`."""

from experiments.cli import hydra_command
from growth.config import Config
from growth.experiment import plan, progress, runner


def grow(config: Config) -> None:
    prepared = runner.prepare(config)
    with progress.showing(plan.display(config, [prepared])):  # live progress and ETA
        print(runner.run(config))


main = hydra_command(grow)

if __name__ == "__main__":
    main()
