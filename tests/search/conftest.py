"""Fixtures of the search tests: a real Ray cluster on loopback, one per test module."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def ray_head():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}})
    yield ray
    ray.shutdown()
