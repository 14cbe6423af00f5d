"""One-line errors for the entry points: a bad input ends as `error: <message>` with exit status 1.

The library raises typed errors whose message names the file or setting and the fix; a traceback
would bury that line, so the entry points turn these (and only these) into a plain exit.
"""

import contextlib

from growth.checkpoint import CheckpointError
from growth.config import ConfigValueError
from growth.data import DataError
from growth.interop.hf_import import HFImportError
from growth.interop.surgery import SurgeryError
from growth.model import ConfigError
from growth.pool import PoolError
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
)


@contextlib.contextmanager
def user_errors():
    try:
        yield
    except USER_ERRORS as e:
        raise SystemExit(f"error: {e}") from None
