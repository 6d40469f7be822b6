"""The packaging check: build the sdist and wheel, install the wheel into a fresh venv, run it.

Takes 1-3 minutes (a fresh venv installs every dependency); deselect with -m "not wheel"."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "check_wheel.sh"

pytestmark = pytest.mark.wheel


@pytest.mark.skipif(shutil.which("bash") is None, reason="the check is a bash script")
def test_wheel_builds_installs_and_runs(tmp_path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    env.pop("LOCALLLM_HOME", None)  # the script sets its own, inside its temp folder
    env.pop("KEEP", None)
    result = subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "==> wheel check passed: localllm-" in output
    assert "localllm-dark, localllm-high-contrast, localllm-light" in output  # themes from the wheel
    assert "reply '" in output or 'reply "' in output
    assert not any(tmp_path.glob("localllm-wheel-check.*")), "the script left its temp folder behind"
