"""What the TUI may know of this machine, in one place: the ui package imports no localllm.machine module
(a contract in pyproject.toml), it reads these facts here. Names are re-exported; the probes are looked up
in their modules when called (so a test's patch of `localllm.machine.hardware.probe` holds) and import
their modules only then, as the screens did."""

from __future__ import annotations

from typing import TYPE_CHECKING

from localllm.machine.hardware import GiB, HardwareInfo, card_rows
from localllm.machine.recommend import USES, Pick, Recommendation, Wishes, recommend

if TYPE_CHECKING:
    from localllm.machine.cpu import CPUInfo
    from localllm.runtime.doctor import Check

__all__ = [
    "USES", "GiB", "HardwareInfo", "Pick", "Recommendation", "Wishes",
    "card_rows", "gpu_binding_mismatch", "measured_bandwidth", "probe", "recommend",
]


def probe() -> HardwareInfo:
    """CPU, RAM, disk and GPUs (machine.hardware.probe)."""
    from localllm.machine import hardware

    return hardware.probe()


def measured_bandwidth(refresh: bool = False, cpu: CPUInfo | None = None) -> float:
    """The CPU's memory bandwidth in GB/s, cached or measured now (machine.bandwidth)."""
    from localllm.machine import bandwidth

    return bandwidth.measured_bandwidth(refresh=refresh, cpu=cpu)


def gpu_binding_mismatch() -> Check | None:
    """A GPU here that the installed llama-cpp-python cannot use (runtime.doctor's Check, the same as
    `localllm doctor`), None when they agree or the binding was never probed."""
    from localllm.runtime import binding
    from localllm.runtime.doctor import gpu_binding_mismatch as mismatch

    caps = binding.cached()
    return None if caps is None else mismatch(probe(), caps)
