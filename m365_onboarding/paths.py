"""Where the project keeps local state (sandbox CA and credentials, a local Prefect home)."""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """``$M365_ONBOARD_STATE_DIR``, or ``.state/`` in the current directory."""
    configured = os.environ.get("M365_ONBOARD_STATE_DIR")
    return Path(configured).expanduser().resolve() if configured else (Path.cwd() / ".state").resolve()
