"""The set-up every entry point of experiments/ shares, and its one-line errors.

`hydra_command(body)` is the main of a Hydra command (grow, pretrain, reproduce): JAX's compilation
cache, the typed config of configs/ and the command line, the processes of a multi-process job, then
`body(config)`. `command(body)` is the main of an argument command (import_hf, export_hf): `body(argv)`.
In both a bad input ends as `error: <message>` with exit status 1: the library raises typed errors
whose message names the file or setting and the fix; a traceback would bury that line, so the entry
points turn these (and only these) into a plain exit.
"""

import contextlib
import functools
import logging
import sys
from collections.abc import Callable

import hydra
from omegaconf import DictConfig

from growth.config import Config, ConfigValueError, register_configs
from growth.data.pipeline import DataError
from growth.distributed import hosts
from growth.distributed.hosts import HostsError
from growth.distributed.mesh import MeshError
from growth.experiment.pool import PoolError
from growth.experiment.pretrain import PretrainDiverged
from growth.experiment.runner import RunnerError
from growth.interop.hf_import import HFImportError
from growth.interop.surgery import SurgeryError
from growth.models.gpt import ConfigError
from growth.store.checkpoint import CheckpointError
from growth.store.compile_cache import enable as enable_compile_cache
from growth.store.files import StorageError, storage_error
from growth.store.lease import GridUnfinished
from growth.validate import to_config

USER_ERRORS = (
    DataError,
    HFImportError,
    RunnerError,
    PoolError,
    ConfigError,
    ConfigValueError,
    CheckpointError,
    SurgeryError,
    StorageError,
    PretrainDiverged,
    HostsError,
    MeshError,
    GridUnfinished,
)


@contextlib.contextmanager
def user_errors():
    try:
        yield
    except USER_ERRORS as e:
        _quiet_shutdown()
        raise SystemExit(f"error: {e}") from None
    except Exception as e:  # a full disk or a read-only directory met outside the harness's own writes
        clean = storage_error(getattr(e, "filename", None) or "the output directory", e)
        if clean is None:
            raise
        _quiet_shutdown()
        raise SystemExit(f"error: {clean}") from None


def _quiet_shutdown() -> None:
    """After a failed orbax save its background event loops log tracebacks at exit: keep them out."""
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    logging.getLogger("absl").setLevel(logging.CRITICAL)


def hydra_command(body: Callable[[Config], None]) -> Callable[[], None]:
    """The main of a Hydra command: `main = hydra_command(body)` in experiments/NAME.py; Hydra names the
    job and finds configs/ from `body`'s file, as it would from a main written there."""
    register_configs()

    @hydra.main(version_base=None, config_path="../configs", config_name="config")
    @functools.wraps(body)  # Hydra unwraps to `body`: job name NAME, config path relative to its file
    def main(cfg: DictConfig) -> None:
        enable_compile_cache()
        with user_errors():
            config = to_config(cfg)
            hosts.initialize(config.mesh.distributed)  # before any other JAX call (a multi-process job)
            body(config)

    return main


def command(body: Callable[[list[str]], None]) -> Callable[..., None]:
    """The main of an argument command: `body(argv)`, argv the command line's unless given."""

    def main(argv: list[str] | None = None) -> None:
        with user_errors():
            body(sys.argv[1:] if argv is None else list(argv))

    return main
