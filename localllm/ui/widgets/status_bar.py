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
        where = f"GPU {m.n_gpu_layers} layers" if m.n_gpu_layers else "CPU"
        return (f"{m.name} · {m.backend} · {m.quant} · ctx {m.n_ctx} · {m.n_threads} threads · "
                f"{where} · {self.state}")
