"""The SIGILL simulation's switch and folder (see tests/sigill_sim/sitecustomize.py)."""

from __future__ import annotations

import os
from pathlib import Path

FAKE_SIGILL_ENV = "LOCALLLM_TEST_SIGILL"
SIM_DIR = str(Path(__file__).parent / "sigill_sim")


def on_pythonpath() -> None:
    """Every process the tests start reads the simulation (it acts only with FAKE_SIGILL_ENV set)."""
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if SIM_DIR not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([SIM_DIR, *parts])
