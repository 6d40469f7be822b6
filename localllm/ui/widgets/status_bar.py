"""One line naming the model, backend, quant, context and what is happening."""

from __future__ import annotations

from textual.reactive import reactive
from textual.widgets import Static

from localllm.backends.base import ModelInfo


class StatusBar(Static):
    model: reactive[ModelInfo | None] = reactive(None)
    state: reactive[str] = reactive("starting")

    def render(self) -> str:
        if self.model is None:
            return f"localllm · {self.state}"
        m = self.model
        if m.backend == "remote":  # what we know of a server's model
            parts = [m.name, f"server {m.path}", f"ctx {m.n_ctx} (client budget)"]
        else:
            where = f"GPU {m.n_gpu_layers} layers" if m.n_gpu_layers else "CPU"
            parts = [m.name, m.backend, m.quant, f"ctx {m.n_ctx}", f"{m.n_threads} threads", where]
        return " · ".join([*parts, self.state])
