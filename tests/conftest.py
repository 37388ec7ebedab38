"""Test setup: the tests folder is importable (random_plans, oracle helpers)."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
