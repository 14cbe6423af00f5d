"""Grow, probe and continue every candidate for one (seed, growth step): `python -m experiments.grow`."""

import hydra
from omegaconf import DictConfig

from experiments.cli import user_errors
from growth.config import register_configs
from growth.distributed import hosts
from growth.experiment import plan, progress, runner
from growth.store.compile_cache import enable as enable_compile_cache
from growth.validate import to_config

register_configs()


@hydra.main(version_base=None, config_path="../configs", config_name="config")
def main(cfg: DictConfig) -> None:
    enable_compile_cache()
    with user_errors():
        config = to_config(cfg)
        hosts.initialize(config.mesh.distributed)  # before any other JAX call (a multi-process job)
        prepared = runner.prepare(config)
        with progress.showing(plan.display(config, [prepared])):  # live progress and ETA
            print(runner.run(config))


if __name__ == "__main__":
    main()
