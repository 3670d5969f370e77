"""Serving processes freeze the heap start-up leaves (``gc.freeze``), so the cyclic collector
never walks it again; apps built for tests do not."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway import serve
from gateway.app import create_app
from gateway.config import Config
from gateway.storage import Storage
from tests.support.app import ISSUER


@pytest.fixture
def unfrozen() -> Any:
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen")
def test_a_serving_app_freezes_its_start_up_heap(config: Config, storage: Storage) -> None:
    with TestClient(create_app(config, freeze_heap=True), base_url=ISSUER):
        assert gc.get_freeze_count() > 0
    gc.unfreeze()
    with TestClient(create_app(config), base_url=ISSUER):
        assert gc.get_freeze_count() == 0


def test_every_serving_worker_asks_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[bool] = []
    monkeypatch.setattr(serve, "load_config", lambda: None)
    monkeypatch.setattr(
        serve, "create_app", lambda config, freeze_heap=False: asked.append(freeze_heap)
    )
    serve.app_factory()
    assert asked == [True]
