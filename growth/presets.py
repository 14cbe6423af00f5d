"""Compose the typed Config of a Hydra preset from code: the `tiny` preset of the tests and `benchmarks.run --tiny`."""

from __future__ import annotations

from pathlib import Path

from growth.config import Config, register_configs
from growth.validate import to_config

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def compose(overrides: list[str]) -> Config:
    """The typed, validated Config that `python -m experiments.reproduce <overrides>` would run."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return to_config(hydra_compose(config_name="config", overrides=list(overrides)))


def tiny(root: Path | str, overrides: list[str] | None = None) -> Config:
    """configs/experiment/tiny.yaml with its runs and token cache under `root`, then `overrides`."""
    root = Path(root)
    where = [f"out_dir={root / 'runs'}", f"data.cache_dir={root / 'cache'}"]
    return compose(["experiment=tiny", *where, *(overrides or [])])
