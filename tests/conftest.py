"""Shared fixtures and hypothesis profiles (docs/contributing.md, *Tests and tolerances*).

No module-level seeding and no global default dtype: tests take the ``generator``
fixture (seeded from the test's node id) and the ``float64`` fixture.
"""

from __future__ import annotations

import zlib

import pytest
import torch
from hypothesis import HealthCheck, settings


settings.register_profile("dev", max_examples=50, deadline=None)  # timings never go into tests
settings.register_profile(
    "ci",
    max_examples=50,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", max_examples=500, deadline=None)
# Fresh random examples on every run (the ci profile's fixed ones can hide failures);
# tests/test_property_random.py runs every property test under it in the slow tier.
settings.register_profile(
    "random",
    max_examples=50,
    deadline=None,
    derandomize=False,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("dev")


def pytest_collection_modifyitems(config, items):
    """Mark every hypothesis test ``property`` (``-m property`` selects them)."""
    for item in items:
        if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
            item.add_marker(pytest.mark.property)


@pytest.fixture
def generator(request) -> torch.Generator:
    """A CPU generator seeded from the test's node id: reproducible, distinct per test."""
    return torch.Generator().manual_seed(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def float64():
    """Run the test with float64 as torch's default dtype, restoring it afterwards."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield torch.float64
    finally:
        torch.set_default_dtype(old)


@pytest.fixture
def single_thread():
    """Run the test with one intra-op thread, restoring the count afterwards.

    Small training runs gain nothing from threads, and on a loaded machine two
    OpenMP threads made them ~30x slower (measured for the training tests).
    """
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)
