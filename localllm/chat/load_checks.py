"""What a load settles for this machine around starting its worker: llama.cpp's extra CPU buffers
('auto' resolved by the binding probe; 'off' remembered after a worker died of SIGILL with them on)
and the load plan (GPU layers where left on auto; a plan that cannot fit refused unless forced).
Apart from chat.session because none of it needs a session: options in, options and what to tell
the user out."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from localllm.config import LoadOptions
from localllm.config.options import SCRIPTED_BACKEND
from localllm.errors import ModelFileError, WorkerDied
from localllm.runtime import binding

if TYPE_CHECKING:
    from localllm.runtime.plan import LoadPlan


def with_kernels(options: LoadOptions) -> tuple[LoadOptions, str | None]:
    """auto -> on/off for this machine (probed once, in a child); learning 'off' now comes with a notice."""
    if options.extra_buffers in ("on", "off"):
        return options, None
    fresh = binding.cached() is None
    use, why = binding.extra_bufts_for(options.extra_buffers)
    notice = None
    if not use and fresh:
        notice = (f"llama.cpp's extra CPU buffer types are {why}. Kept for this machine "
                  "(setting extra_buffers; `localllm doctor`).")
    return dataclasses.replace(options, extra_buffers="on" if use else "off"), notice


def planned(path: str, options: LoadOptions, backend: str) -> tuple[LoadOptions, LoadPlan | None]:
    """Apply the load plan: GPU layers when left on auto; refuse what cannot fit unless forced. No plan
    for a server or a script, nor for a model the estimator cannot read."""
    if backend in ("remote", SCRIPTED_BACKEND):  # a server's own business; a script has no weights
        return options, None
    from localllm.runtime.plan import PlanRefused, plan_for

    try:
        plan = plan_for(path, options)
    except (ModelFileError, OSError, ValueError, KeyError):
        return options, None  # the estimator cannot read it: the backend still may, and says why if not
    if not plan.fits and not options.force:
        raise PlanRefused(plan)
    if backend == "llama_cpp":
        return dataclasses.replace(options, gpu_layers=plan.gpu_layers), plan
    return options, plan


def kernel_fallback(exc: WorkerDied, options: LoadOptions, backend: str) -> bool:
    """A SIGILL with extra buffers on: remember 'off' for this machine; the caller retries once."""
    if backend != "llama_cpp" or options.extra_buffers == "off" or not binding.is_sigill(exc):
        return False
    binding.record_extra_bufts(False, "a model worker died of SIGILL with them on")
    return True
