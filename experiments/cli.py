"""One-line errors for the entry points: a bad input ends as `error: <message>` with exit status 1.

The library raises typed errors whose message names the file or setting and the fix; a traceback
would bury that line, so the entry points turn these (and only these) into a plain exit.
"""

import contextlib
import logging

from growth.checkpoint import CheckpointError
from growth.config import ConfigValueError
from growth.data import DataError
from growth.files import StorageError, storage_error
from growth.hosts import HostsError
from growth.interop.hf_import import HFImportError
from growth.interop.surgery import SurgeryError
from growth.lease import GridUnfinished
from growth.mesh import MeshError
from growth.model import ConfigError
from growth.pool import PoolError
from growth.pretrain import PretrainDiverged
from growth.runner import RunnerError

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
