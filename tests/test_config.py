"""The config is the single source of truth: every preset composes, choices are validated at compose
time, and the YAML groups hold only what differs from the schema's defaults."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from growth.config import (
    Config,
    ConfigValueError,
    DataConfig,
    GrowthConfig,
    LoggerConfig,
    ModelConfig,
    OptimConfig,
    register_configs,
)
from growth.experiment.grid import cells
from growth.validate import to_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))
register_configs()


def _compose(overrides: list[str]) -> Config:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return to_config(compose(config_name="config", overrides=overrides))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_preset_composes(name):
    cfg = _compose([f"experiment={name}"])
    assert cfg.name == name
    assert cfg.model.vocab_size == cfg.data.vocab_size and cfg.model.context == cfg.data.context
    for cell in cells(cfg):  # every grid cell is a valid config of its own
        assert to_config(cell).seed == cell.seed and cell.replicates >= 1


def test_paper_presets_differ_only_in_the_learning_rate_policy():
    base, fanin = _compose(["experiment=paper_cpu"]), _compose(["experiment=paper_cpu_fanin"])
    assert (base.growth.lr_correction, base.optim.clip_mode) == ("none", "global")
    assert (fanin.growth.lr_correction, fanin.optim.clip_mode) == ("fan_in", "clone_consistent")
    assert base.replicates == fanin.replicates == 3 and base.data.eval_sequences >= 256
    same = dataclasses.replace(
        fanin,
        name=base.name,
        growth=dataclasses.replace(fanin.growth, lr_correction=base.growth.lr_correction),
        optim=dataclasses.replace(fanin.optim, clip_mode=base.optim.clip_mode),
    )
    assert same == base


def test_grid_cells_override_the_policy_and_replicates():
    cfg = to_config(
        OmegaConf.create(
            {"grid": [{"seed": 1, "replicates": 4, "lr_correction": "fan_in", "clip_mode": "clone_consistent"}, {}]}
        )
    )
    first, second = cells(cfg)
    assert (first.seed, first.replicates, first.growth.lr_correction, first.optim.clip_mode) == (
        1, 4, "fan_in", "clone_consistent"
    )  # fmt: skip
    assert (second.seed, second.replicates, second.growth.lr_correction) == (cfg.seed, cfg.replicates, "none")


@pytest.mark.parametrize(
    "override, key",
    [
        ("model.norm=batchnorm", "model.norm"),
        ("optim.clip_mode=local", "optim.clip_mode"),
        ("growth.schedule=later", "growth.schedule"),
    ],
)
def test_unknown_choice_fails_at_compose_time_naming_the_key(override, key):
    with pytest.raises(Exception, match=key.split(".")[-1]):
        _compose([override])
    with pytest.raises(ConfigValueError, match=key.replace(".", r"\.")):
        section, field = key.split(".")
        cfg = Config()
        setattr(getattr(cfg, section), field, "bogus")
        to_config(cfg)


@pytest.mark.parametrize(
    "group, schema",
    [
        ("data", DataConfig),
        ("optim", OptimConfig),
        ("growth", GrowthConfig),
        ("logger", LoggerConfig),
        ("model", ModelConfig),
    ],
)
def test_yaml_groups_do_not_restate_schema_defaults(group, schema):
    defaults = dataclasses.asdict(schema())

    def restated(values: dict, reference: dict, prefix: str) -> list[str]:
        out = []
        for key, value in values.items():
            # `source` names what a data option is, even where it equals the schema's default.
            if key in ("defaults", "source") or key not in reference:
                continue
            if isinstance(value, dict):
                out += restated(value, reference[key], f"{prefix}{key}.")
            elif value == reference[key]:
                out.append(f"{prefix}{key}")
        return out

    for path in sorted((CONFIGS / group).glob("*.yaml")):
        values = yaml.safe_load(path.read_text()) or {}
        assert not restated(values, defaults, ""), f"{path.name} restates schema defaults"


def test_unknown_candidate_is_one_line_from_the_command_line(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "experiments.grow",
        "experiment=smoke",
        "pool=[exact_copy,bogus]",
        f"out_dir={tmp_path}",
    ]
    proc = subprocess.run(cmd, cwd=CONFIGS.parent, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: pool has unknown candidates ['bogus']; valid:")
    assert "Traceback" not in proc.stderr


def test_the_tiny_preset_grows_from_its_own_pretraining_under_the_given_root(tmp_path):
    """configs/experiment/tiny.yaml: the one tiny config of the tests and `benchmarks.run --tiny`."""
    from benchmarks.common import TINY
    from growth import presets
    from growth.experiment import runner
    from tests.conftest import tiny_config

    cfg = presets.tiny(tmp_path, ["pool=[exact_copy,continue_small]"])
    runner.validate(cfg)  # a grow from it is accepted before any compute
    assert cfg.growth_step in cfg.pretrain.checkpoint_steps and cfg.probe_lag <= cfg.continuation_lag
    assert cfg.data.source == "synthetic" and cfg.logger.wandb.mode == "disabled"  # no files, no network
    assert Path(cfg.out_dir).parent == tmp_path and Path(cfg.data.cache_dir).parent == tmp_path
    longer = tiny_config(tmp_path)  # the pretraining tests' variant differs only where its comment says
    assert longer.model.n_layers == 2 and longer.pretrain.steps == 30 and longer.model.d_model == cfg.model.d_model
    assert TINY.overrides == ["experiment=tiny"] and TINY.e2e_under == "tiny"
