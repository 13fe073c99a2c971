"""Fixtures: fake HTTP hosts on 127.0.0.1 standing for Label Studio and for other servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.adapter.fakehttp import FakeHost


@pytest.fixture
def ls() -> Iterator[FakeHost]:
    """A host standing for Label Studio (the allowed one, which gets the API key)."""
    host = FakeHost()
    yield host
    host.stop()


@pytest.fixture
def other() -> Iterator[FakeHost]:
    """Another host on the same machine, which no allow-list names."""
    host = FakeHost()
    yield host
    host.stop()
