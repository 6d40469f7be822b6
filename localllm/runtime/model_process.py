"""The process that runs a model, as chats and timing runs alike start and measure it: which Python
and environment its worker starts with, and the meter of the process that does the work."""

from __future__ import annotations

from localllm.backends.base import ModelInfo
from localllm.runtime.metrics import Meter, ProcessSampler


def meter_for(model: ModelInfo | None, worker_pid: int) -> Meter:
    """Measure the process that runs the model: the worker, or a server on this machine (found by
    its port); a server elsewhere leaves CPU and memory absent. The worker is then the client."""
    if model is None or model.backend != "remote":
        return Meter(ProcessSampler(worker_pid))
    pid = model.extra.get("server_pid")
    try:
        server = ProcessSampler(pid) if pid else None
    except Exception:  # the server went away since it was found
        server = None
    return Meter(server, client=ProcessSampler(worker_pid))


def worker_runtime(path: str, backend: str) -> tuple[str | None, dict[str, str] | None]:
    """(python, env) for the model's worker: None for this environment; GPTQ checkpoints run in
    GPTQModel's own (see gptq_env). Checkpoint folders are validated here, before any process starts."""
    if backend != "transformers":
        return None, None
    from localllm.models.checkpoint_check import inspect_checkpoint

    if not inspect_checkpoint(path).quant.startswith("gptq"):
        return None, None
    from localllm.runtime.gptq_env import worker_python

    return worker_python()
