"""GPTQModel's own Python environment.

GPTQModel (the maintained successor of auto-gptq, and what transformers uses for GPTQ) needs
torch >= 2.14.1, while the transformers/bitsandbytes side of localllm runs on the CPU build of
torch 2.13. Two torches cannot share one environment, so GPTQ jobs and GPTQ chats run in a child
process under the Python of a separate venv: `localllm quantize --setup-gptq` makes it under
<home>/envs/gptq, or LOCALLLM_GPTQ_PYTHON names an existing one. Where gptqmodel imports in this
environment already (a GPU machine with a recent torch, the CUDA container), this Python is used.
"""

from __future__ import annotations

import os
import sys
import venv
from pathlib import Path
from typing import TextIO

from localllm import config
from localllm.errors import QuantizeError
from localllm.runtime.children import kill_group, spawn

ENV_VAR = "LOCALLLM_GPTQ_PYTHON"
# torch 2.14.1 is the first release GPTQModel 7.x accepts; pinned so pip never picks a newer multi-GB build
REQUIREMENTS = ("torch==2.14.1", "gptqmodel>=7.7", "psutil>=5.9")


def env_dir() -> Path:
    return config.home() / "envs" / "gptq"


def _python_in(folder: Path) -> Path:
    return folder / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def setup_command() -> str:
    return f"localllm quantize --setup-gptq   (or set {ENV_VAR} to a Python with {', '.join(REQUIREMENTS)})"


def gptq_python() -> str:
    """The Python that runs GPTQModel; QuantizeError with the command that makes one when there is none."""
    named = os.environ.get(ENV_VAR)
    if named:
        if not Path(named).exists():
            raise QuantizeError(f"{ENV_VAR} names {named}, which does not exist. Fix it or unset it.")
        return named
    import importlib.util

    if importlib.util.find_spec("gptqmodel") is not None:
        return sys.executable  # installed here already (e.g. the CUDA container): no second environment
    python = _python_in(env_dir())
    if python.exists():
        return str(python)
    raise QuantizeError("GPTQ needs GPTQModel, which needs torch >= 2.14.1 in an environment of its own "
                        f"(several GB). Make it with: {setup_command()}")


def setup(log: TextIO | None = None, folder: Path | None = None) -> str:
    """Create the environment (or bring it up to date) and return its Python."""
    folder = folder or env_dir()
    python = _python_in(folder)
    if not python.exists():
        venv.EnvBuilder(with_pip=True, clear=False).create(folder)
    cmd = [str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS]
    print("running: " + " ".join(cmd), file=log or sys.stderr, flush=True)
    pip = spawn(cmd, stdout=log or sys.stderr, stderr=log or sys.stderr)
    try:
        rc = pip.wait()
    except BaseException:  # Ctrl-C reaches only us (the child has a process group of its own)
        kill_group(pip)  # pip's build steps too
        raise
    if rc != 0:
        raise QuantizeError(f"Installing GPTQModel's environment failed (pip exited {rc}); see the output above.")
    return str(python)


def package_path() -> Path:
    """A folder holding only a link to this localllm package, for the GPTQ environment's PYTHONPATH
    (the site-packages this package sits in would bring this environment's torch along)."""
    folder = config.home() / "envs" / "localllm-only"
    link = folder / "localllm"
    target = Path(__file__).resolve().parents[1]  # localllm/
    if not (link.is_symlink() and link.resolve() == target):
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".localllm.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target, target_is_directory=True)
        os.replace(tmp, link)  # atomic: a second app starting at once sees the old link or the new
    return folder


def worker_python() -> tuple[str, dict[str, str]]:
    """(python, env) that run localllm's model worker inside GPTQModel's environment."""
    from localllm.errors import ModelLoadError

    try:
        python = gptq_python()
    except QuantizeError as exc:
        raise ModelLoadError(f"This is a GPTQ checkpoint. {exc}") from None
    path = os.pathsep.join(filter(None, [str(package_path()), os.environ.get("PYTHONPATH", "")]))
    return python, {"PYTHONPATH": path}
