"""Test setup: the tests folder is importable (random_plans, oracle helpers), and every test starts from
the same global torch seed, so a test's random data does not depend on which tests ran before it."""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
