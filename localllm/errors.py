"""The errors users see; each message says what happened and what to do."""

from __future__ import annotations


class LocalLLMError(Exception):
    """Base class: str(err) is a complete, user-facing message."""


class ModelFileError(LocalLLMError):
    """A model file is missing, unreadable or not a valid model."""

    def __init__(self, path: str, reason: str, hint: str = "") -> None:
        self.path = path
        self.reason = reason
        msg = f"Cannot use model file {path}: {reason}."
        if hint:
            msg += f" {hint}"
        super().__init__(msg)


class BackendNotInstalled(LocalLLMError):
    """A backend's optional dependency is missing."""

    def __init__(self, backend: str, install: str) -> None:
        super().__init__(f"The {backend} backend is not installed. Install it with: {install}")


class WorkerDied(LocalLLMError):
    """The model's worker process ended unexpectedly; the app itself is fine."""

    def __init__(self, returncode: int | None, explanation: str, log_tail: str, log_path: str) -> None:
        self.returncode = returncode
        self.explanation = explanation
        self.log_tail = log_tail
        self.log_path = log_path
        msg = f"The model worker stopped: {explanation}"
        if log_tail:
            msg += f"\nLast lines of its log ({log_path}):\n{log_tail}"
        else:
            msg += f"\nIts log: {log_path}"
        super().__init__(msg)


class ModelLoadError(LocalLLMError):
    """The backend raised while loading a model (the worker is still alive)."""


class PromptTooLong(LocalLLMError):
    """Even after trimming old turns the prompt does not fit the context."""

    def __init__(self, prompt_tokens: int, n_ctx: int, reserve: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx
        super().__init__(
            f"The prompt needs {prompt_tokens} tokens but the context holds {n_ctx} "
            f"(with {reserve} kept free for the reply). Shorten the message, or load the "
            f"model with a larger context (--context)."
        )


class NoModelLoaded(LocalLLMError):
    def __init__(self) -> None:
        super().__init__("No model is loaded. Load one first (--model PATH, or the embedded model).")


class QuantizeError(LocalLLMError):
    """A quantization job could not run or did not finish; the message says why."""


class LoadCancelled(LocalLLMError):
    def __init__(self) -> None:
        super().__init__("Loading was cancelled (Esc). Ctrl+O loads a model.")
