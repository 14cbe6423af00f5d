"""Every numeric field is range-checked when the config is composed: one line naming the key and a valid
value, before any compute."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from growth.config import Config, ConfigValueError, register_configs
from growth.experiment import pretrain, runner
from growth.experiment.grid import reproduce
from growth.validate import to_config
from tests.conftest import REPO

CONFIGS = REPO / "configs"
register_configs()

# (override, the start of the one-line error)
BAD = [
    ("optim.lr=-1", "optim.lr=-1.0 is invalid: it must be a finite number > 0; e.g. optim.lr=0.003"),
    ("optim.lr=nan", "optim.lr=nan is invalid: it must be a finite number > 0"),
    ("optim.lr=inf", "optim.lr=inf is invalid: it must be a finite number > 0"),
    ("optim.eps=0", "optim.eps=0.0 is invalid: it must be a finite number > 0; e.g. optim.eps=1e-08"),
    ("data.context=0", "data.context=0 is invalid: it must be an integer >= 1; e.g. data.context=128"),
    ("model.dropout=1.0", "model.dropout=1.0 is invalid: it must be in [0, 1); e.g. model.dropout=0.0"),
    ("runner.stochastic_dropout=-0.1", "runner.stochastic_dropout=-0.1 is invalid: it must be in [0, 1)"),
    ("pretrain.steps=0", "pretrain.steps=0 is invalid: it must be an integer >= 1"),
    ("pretrain.eval_every=0", "pretrain.eval_every=0 is invalid: it must be an integer >= 1"),
    ("runner.eval_every=0", "runner.eval_every=0 is invalid: it must be an integer >= 1"),
    ("probe_lag=32", "probe_lag=32 is invalid: it must be <= continuation_lag=16"),
    ("probe_lag=0", "probe_lag=0 is invalid: it must be an integer >= 1"),
    ("optim.b2=1.0", "optim.b2=1.0 is invalid: it must be in [0, 1)"),
    ("growth.k=1", "growth.k=1 is invalid: it must be an integer >= 2"),
    ("optim.weight_decay=-0.1", "optim.weight_decay=-0.1 is invalid: it must be a finite number >= 0"),
    ("pool=[exact_copy,scratch_wide,exact_copy]", "pool names 'exact_copy' twice; each entry must appear once"),
    ("workers.stale_s=10", "workers.stale_s=10.0 is invalid: it must be > 2 * workers.heartbeat_s=30.0"),
]


def _compose(overrides: list[str]) -> Config:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return to_config(compose(config_name="config", overrides=overrides))


@pytest.mark.parametrize(("override", "message"), BAD)
def test_bad_value_is_refused_at_compose_time_naming_the_key(override, message):
    with pytest.raises(ConfigValueError) as e:
        _compose(["experiment=smoke", override])
    assert str(e.value).startswith(message), str(e.value)
    assert "\n" not in str(e.value)


def test_every_preset_passes_the_range_checks():
    for path in sorted((CONFIGS / "experiment").glob("*.yaml")):
        _compose([f"experiment={path.stem}"])


def test_a_config_built_in_code_is_checked_too(tiny_cfg):
    bad = dataclasses.replace(tiny_cfg, optim=dataclasses.replace(tiny_cfg.optim, lr=-1.0))
    with pytest.raises(ConfigValueError, match="optim.lr=-1.0 is invalid"):
        to_config(bad)  # where a config built in code is typed, once, before runner.run


def test_a_byte_level_vocabulary_below_257_names_data_vocab_size(tmp_path):
    cfg = dataclasses.replace(_compose(["experiment=smoke", "data.vocab_size=10"]), out_dir=str(tmp_path), grid=[])
    message = "data.vocab_size=10 is invalid: it must be an integer >= 257; e.g. data.vocab_size=4096"
    with pytest.raises(ConfigValueError, match=message):
        runner.run(dataclasses.replace(cfg, growth_step=40))
    with pytest.raises(ConfigValueError, match=message):
        pretrain.run(cfg)
    assert not list(Path(tmp_path).rglob("*"))


def test_a_growth_step_past_the_preset_pretraining_is_refused_before_any_compute(tmp_path):
    cfg = dataclasses.replace(_compose(["experiment=smoke"]), out_dir=str(tmp_path), grid=[])
    assert cfg.growth_step == 1000 and cfg.pretrain.steps == 60
    with pytest.raises(ConfigValueError, match=r"growth_step=1000 is past pretrain.steps=60.*set pretrain.steps=1000"):
        runner.run(cfg)
    bad_grid = _compose(["experiment=smoke", "grid=[{seed: 0, growth_step: 40}, {seed: 0, growth_step: 80}]"])
    with pytest.raises(ConfigValueError, match="growth_step=80 is past pretrain.steps=60"):
        reproduce(dataclasses.replace(bad_grid, out_dir=str(tmp_path)))
    assert not list(Path(tmp_path).rglob("*"))  # refused before anything was written
    on_purpose = _compose(["experiment=smoke", "growth_step=80", "pretrain.steps=80"])
    runner.validate(on_purpose)  # extending the pretraining on purpose is accepted


def _cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "experiments.grow", "experiment=smoke", f"out_dir={tmp_path}", *args]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_a_bad_value_is_one_line_from_the_command_line(tmp_path):
    proc = _cli(["optim.lr=-1"], tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: {BAD[0][1]}"]
    assert not (tmp_path / "pretrain").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "message"),
    [
        *BAD,
        ("growth_step=1000", "growth_step=1000 is past"),
        ("growth_step=40 data.vocab_size=10", "data.vocab_size=10 is invalid: it must be an integer >= 257"),
    ],
)
def test_each_bad_value_is_one_line_from_the_command_line(tmp_path, override, message):
    proc = _cli(override.split(), tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), proc.stderr[-2000:]


def test_to_config_runs_once_at_the_entry_point_and_never_in_the_runner(monkeypatch, tmp_path):
    import sys

    from growth import presets, validate
    from growth.experiment import grid, pool

    real, calls = validate.to_config, []

    def counting(cfg):
        calls.append(cfg)
        return real(cfg)

    for module in [m for n, m in sys.modules.items() if n.startswith(("growth", "experiments"))]:
        if getattr(module, "to_config", None) is real:
            monkeypatch.setattr(module, "to_config", counting)
    checked = []
    real_check = pool.check_pool
    monkeypatch.setattr(pool, "check_pool", lambda cfg: (checked.append(cfg.seed), real_check(cfg))[1])
    cfg = presets.tiny(tmp_path, ["grid=[{seed:0},{seed:1}]", "pool=[exact_copy,continue_small]"])
    assert len(calls) == 1  # the entry point converts once
    prepared = [runner.prepare(cell) for cell in grid.cells(cfg)]
    assert len(calls) == 1 and [c.seed for c in prepared] == [0, 1]  # the runner passes the typed Config down
    assert checked == [0, 1]  # the pool is checked once per cell
