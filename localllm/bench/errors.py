"""The one error of timing runs and sweeps, apart so that every bench module can raise it."""

from __future__ import annotations

from localllm.errors import LocalLLMError


class BenchError(LocalLLMError):
    """A plan that cannot run; the message says what to change."""
