"""Run a whole experiment grid, then the analysis report: `python -m experiments.reproduce experiment=NAME`.

`plan=true` lists the grid's jobs, which are finished and an estimated time (from the models' FLOPs and
a short measured step) without training anything."""

import hydra
from omegaconf import DictConfig

from analysis.report.paper import write_report
from experiments.cli import user_errors
from growth.config import register_configs
from growth.distributed import hosts
from growth.experiment import grid, plan, runner
from growth.store import files
from growth.store.compile_cache import enable as enable_compile_cache
from growth.validate import to_config

register_configs()


@hydra.main(version_base=None, config_path="../configs", config_name="config")
def main(cfg: DictConfig) -> None:
    enable_compile_cache()
    with user_errors():
        config = to_config(cfg)
        hosts.initialize(config.mesh.distributed)  # before any other JAX call (a multi-process job)
        if config.plan:
            print(plan.show(config, [runner.prepare(cell) for cell in grid.cells(config)]))
            return
        results_dir = grid.reproduce(config)
        if not hosts.is_writer():  # a multi-process job: process 0 writes the report
            return
        with files.locked(results_dir / ".report.lock"):  # many workers finish together: one report at a time
            print(write_report(results_dir))


if __name__ == "__main__":
    main()
