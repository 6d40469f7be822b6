"""The estimator's memory figure for the loaded model, checked against what its replies measure: every
load and every reply checks the estimates that recommendations are made from, and after a reply the
uncalibrated prediction and the measured peak (and decode speed) are kept to calibrate later estimates
(machine.estimate). llama.cpp GGUFs only; information only: a failure here never breaks a chat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from localllm.backends.base import ModelInfo
from localllm.runtime.metrics import ReplyStats

if TYPE_CHECKING:
    from localllm.machine.estimate import MemoryEstimate
    from localllm.models.catalog import ModelSpec


@dataclass(frozen=True)
class Calibration:
    spec: ModelSpec  # read from the GGUF's header, once per load
    info: ModelInfo

    @classmethod
    def for_model(cls, info: ModelInfo | None) -> Calibration | None:
        if info is None or info.backend != "llama_cpp":  # a server's memory is the server's business
            return None
        from localllm.models.catalog import ModelSpec

        try:
            return cls(ModelSpec.from_gguf(info.path), info)
        except Exception:  # an estimate is information; a file the estimator cannot read still chats
            return None

    def _estimate(self, fill: int, calibrate: bool = True) -> MemoryEstimate:
        from localllm.machine.estimate import estimate_memory

        spec, info = self.spec, self.info
        flags = None if info.extra.get("extra_bufts", True) else ()  # off: nothing is repacked
        return estimate_memory(spec, "gguf", spec.gguf_quant, info.n_ctx, gpu_layers=info.n_gpu_layers,
                               fill=max(1, fill), calibrate=calibrate, cpu_flags=flags)

    def estimate_mib(self, fill: int = 1) -> float | None:
        """The estimated RSS in MiB at this context fill, as calibrated so far; None if it cannot be made."""
        try:
            return float(self._estimate(fill).rss_bytes / 2**20)
        except Exception:
            return None

    def record(self, stats: ReplyStats) -> float | None:
        """After a reply: the estimate for its fill (before this reply calibrates it), then the measured
        peak (and, on the CPU with a known bandwidth, the decode speed) kept beside the uncalibrated
        prediction. None when nothing could be estimated or kept (a full disk must not break the chat)."""
        from localllm.machine.bandwidth import cached_bandwidth
        from localllm.machine.calibration import record_measurement
        from localllm.machine.estimate import record_decode

        spec, info = self.spec, self.info
        fill = stats.prompt_tokens
        try:
            est = self._estimate(fill)
            if stats.rss_peak_mib:
                raw = self._estimate(fill, calibrate=False)
                record_measurement(model=spec.name, fmt="gguf", quant=spec.gguf_quant, device="cpu",
                                   context=info.n_ctx, predicted_ram_bytes=raw.rss_bytes,
                                   measured_ram_bytes=int(stats.rss_peak_mib * 2**20))
                gb_s = cached_bandwidth()
                if stats.decode_tok_s and gb_s and info.n_gpu_layers == 0:  # GPU bandwidth is not cached
                    record_decode(spec, raw, stats.decode_tok_s, gb_s,
                                  fill=stats.prompt_tokens + stats.completion_tokens // 2)
        except Exception:
            return None
        return float(est.rss_bytes / 2**20)
