"""Start-up of the command-line entry points (``interformer serve``, ``interformer worker``):
the errors a user can fix become one line on stderr and exit code 2, not a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

EXIT_BAD_SETUP = 2


def start_or_report(make: Callable[[], T]) -> T | None:
    """``make()``, or None after printing why it failed: no exported model in the model folder,
    a bad option value, or a database that cannot be used."""
    from sqlalchemy.exc import SQLAlchemyError

    from .pyramid_service import ModelNotExportedError

    try:
        return make()
    except (ModelNotExportedError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
    except SQLAlchemyError as e:
        print(f"error: the database is not usable: {e}", file=sys.stderr)
    return None
