"""Run a whole experiment grid, then the analysis report: `python -m experiments.reproduce experiment=NAME`.

`plan=true` lists the grid's jobs, which are finished and an estimated time (from the models' FLOPs and
a short measured step) without training anything."""

from analysis.report.paper import write_report
from experiments.cli import hydra_command
from growth.config import Config
from growth.distributed import hosts
from growth.experiment import grid, plan, runner
from growth.store import files


def reproduce(config: Config) -> None:
    if config.plan:
        print(plan.show(config, [runner.prepare(cell) for cell in grid.cells(config)]))
        return
    results_dir = grid.reproduce(config)
    if not hosts.is_writer():  # a multi-process job: process 0 writes the report
        return
    with files.locked(results_dir / ".report.lock"):  # many workers finish together: one report at a time
        print(write_report(results_dir))


main = hydra_command(reproduce)

if __name__ == "__main__":
    main()
