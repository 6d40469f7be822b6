"""The estimator's memory figure for the loaded model, checked against what its replies measure: every
load and every reply checks the estimates that recommendations are made from, and after a reply the
uncalibrated prediction and the measured peak (and decode speed) are kept to calibrate later estimates
(machine.estimate). llama.cpp GGUFs only; information only: a failure here never breaks a chat."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from localllm.backends.base import ModelInfo
from localllm.runtime.metrics import ReplyStats

if TYPE_CHECKING:
    from localllm.machine.cpu import CPUInfo
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
        from localllm.machine.estimate import gguf_as_loaded

        info = self.info
        return gguf_as_loaded(self.spec, info.n_ctx, info.n_gpu_layers, info.extra.get("kv_type", "f16"),
                              info.extra.get("extra_bufts", True), fill, calibrate)

    def estimate_mib(self, fill: int = 1) -> float | None:
        """The estimated RSS in MiB at this context fill, as calibrated so far; None if it cannot be made."""
        try:
            return float(self._estimate(fill).rss_bytes / 2**20)
        except Exception:
            return None

    @cached_property
    def _cpu(self) -> CPUInfo:
        from localllm.machine.cpu import probe_cpu

        return probe_cpu()

    @cached_property
    def _gpu_gb_s(self) -> float | None:
        """The first NVIDIA GPU's bandwidth from NVML (bus width x clock), asked once per load."""
        if not self.info.n_gpu_layers:
            return None
        from localllm.machine.hardware import probe

        gpus = [g for g in probe().gpus if g.vendor == "nvidia"]
        return gpus[0].bandwidth_gb_s if gpus else None

    def limit_tok_s(self, stats: ReplyStats) -> float | None:
        """The memory-bandwidth roofline of this reply's decode: bandwidth / bytes each token reads
        (the weights once, and the KV cache at the reply's mid-point fill). The CPU's bandwidth is the
        cached probe's, read each time (`localllm hw`, F4 and `recommend` measure it, mid-chat too; a
        chat never does, as that would load the memory it times). None where a bandwidth the model's
        layers need is not known."""
        from localllm.machine.bandwidth import cached_bandwidth
        from localllm.machine.estimate import decode_roofline

        fill = stats.prompt_tokens + stats.completion_tokens // 2
        try:
            cpu_gb_s, gpu_gb_s = cached_bandwidth(self._cpu), self._gpu_gb_s
            if (gpu_gb_s if self.info.n_gpu_layers else cpu_gb_s) is None:  # the device its layers read from
                return None
            limit = decode_roofline(self.spec, self._estimate(fill, calibrate=False), cpu_gb_s or 0.0,
                                    gpu_gb_s, fill)
        except Exception:  # information only, as the memory estimate (no CPU figure for a split: 0 GB/s)
            return None
        return limit or None

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
