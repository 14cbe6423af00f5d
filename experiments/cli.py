"""One-line errors for the entry points: a bad input ends as `error: <message>` with exit status 1.

The library raises typed errors whose message names the file or setting and the fix; a traceback
would bury that line, so the entry points turn these (and only these) into a plain exit.
"""

import contextlib
import logging

from growth.config import ConfigValueError
from growth.data.pipeline import DataError
from growth.distributed.hosts import HostsError
from growth.distributed.mesh import MeshError
from growth.experiment.pool import PoolError
from growth.experiment.pretrain import PretrainDiverged
from growth.experiment.runner import RunnerError
from growth.interop.hf_import import HFImportError
from growth.interop.surgery import SurgeryError
from growth.models.gpt import ConfigError
from growth.store.checkpoint import CheckpointError
from growth.store.files import StorageError, storage_error
from growth.store.lease import GridUnfinished

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
