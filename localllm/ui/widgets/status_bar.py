"""One line naming the model, backend, quant, context and what is happening."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from localllm.backends.base import ModelInfo


class StatusBar(Static):
    model: reactive[ModelInfo | None] = reactive(None)
    state: reactive[str] = reactive("starting")
    warning: reactive[str] = reactive("")  # e.g. a GPU the installed llama-cpp-python cannot use

    def render(self) -> Text:
        text = Text(self._text())  # model names and server paths, as they are (localllm.ui.plain)
        if self.warning:
            text.append(" · ").append(self.warning, style="bold")
        return text

    def _text(self) -> str:
        if self.model is None:
            return f"localllm · {self.state}"
        m = self.model
        if m.backend == "remote":  # what we know of a server's model
            parts = [m.name, f"server {m.path}", f"ctx {m.n_ctx} (client budget)"]
        else:
            layers = "all" if m.n_gpu_layers < 0 else m.n_gpu_layers
            where = f"GPU {layers} layers" if m.n_gpu_layers and m.extra.get("gpu_offload", True) else "CPU"
            parts = [m.name, m.backend, m.quant, f"ctx {m.n_ctx}", f"{m.n_threads} threads", where]
        return " · ".join([*parts, self.state])
