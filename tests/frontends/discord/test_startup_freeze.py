"""What start-up built is frozen out of the garbage collector's full collections."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from bot.frontends.discord.app.runner import freeze_startup_objects


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """The test process's objects go back to the collector afterwards (frozen cycles would never be freed)."""
    yield
    gc.unfreeze()


def test_the_objects_alive_at_start_up_are_frozen(unfrozen: None) -> None:
    """Every object alive at the call goes to the permanent generation; a full collection then skips them."""
    kept = [[] for _ in range(1000)]  # what start-up built (containers: the collector tracks them)
    frozen = freeze_startup_objects()
    assert frozen == gc.get_freeze_count() >= len(kept)
    assert len(gc.get_objects()) < frozen
