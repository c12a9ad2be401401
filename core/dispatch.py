"""Prefect's sync-or-async functions, as the sync code of this project calls them.

Prefect types functions such as ``run_deployment`` and ``Block.load`` as returning either their
result or a coroutine: they dispatch on whether an event loop is running. Called from sync code
they return the result; :func:`sync_result` says so to the type checker and checks it at run time.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def sync_result(value: T | Coroutine[Any, Any, T]) -> T:
    """``value``, the result of a call made outside an event loop; a coroutine means it was made inside one."""
    if isinstance(value, Coroutine):
        value.close()
        raise TypeError("a Prefect call dispatched to its async variant: this code runs in an event loop, call the async variant instead")
    return value
