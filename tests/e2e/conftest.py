"""Live studio servers for the end-to-end tests, on the taught tiny model (it plans the taught
prompt, and revises any picture when it reflects, so the whole loop does real work)."""

from __future__ import annotations

import pytest

from tests.e2e.server import start

QUEUE_SIZE = 4
MAX_UPLOAD_MB = 1
USERS = (("ann", "correct-horse"), ("bob", "battery-staple"))


@pytest.fixture(scope="session")
def live_studio(taught_model_dir, tmp_path_factory):
    server = start(
        taught_model_dir,
        tmp_path_factory.mktemp("live") / "data",
        "--queue-size",
        str(QUEUE_SIZE),
        "--max-upload-mb",
        str(MAX_UPLOAD_MB),
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def auth_studio(taught_model_dir, tmp_path_factory):
    server = start(
        taught_model_dir,
        tmp_path_factory.mktemp("auth") / "data",
        *[a for u, p in USERS for a in ("--auth", f"{u}:{p}")],
    )
    yield server
    server.stop()
