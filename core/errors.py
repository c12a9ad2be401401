"""The root of every error this project raises on purpose.

Each layer keeps its own errors in one module (``clients/errors.py``, ``tasks/errors.py``,
``flows/errors.py``), all subclasses of :class:`OnboardingError`: a message that names the tenant
and what happened, and ``next_action``, what a person should do about it.
"""

from __future__ import annotations

from typing import Any


class OnboardingError(Exception):
    """Base of every error this project raises on purpose."""

    next_action: str = ""

    def __init__(self, message: str, *, next_action: str | None = None) -> None:
        self.message = message
        if next_action is not None:
            self.next_action = next_action
        super().__init__(self._text())

    def _text(self) -> str:
        return f"{self.message} Next: {self.next_action}" if self.next_action else self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Prefect persists exceptions in task states; the stored attributes are text and numbers only.
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[OnboardingError], state: dict[str, Any]) -> OnboardingError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, error._text())
    return error
