"""Measured runs kept on this machine (calibration.json) and what the estimates learn from them: the
ratio of measured to predicted decode speed, the offset of measured to predicted memory."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from localllm import config
from localllm.config import state
from localllm.machine.weights import runtime_of

MiB = 1024**2
UNCALIBRATED_BAND_PCT = 30.0  # before any run here: the model's error over the machines it was fitted on


def model_key(name: str, quant: str) -> str:
    """One name for a model wherever it was measured: a GGUF's own name carries its quant
    ("SmolLM2-135M-Instruct.Q4_1"), the catalog's does not."""
    return name.removesuffix(f".{quant}").removesuffix(f"-{quant}").lower()


def measured_here(model: str, fmt: str, quant: str, device: str, max_fill: int = 1024) -> float | None:
    """The median decode tok/s measured on this machine for exactly this model, format and quant, in
    the first `max_fill` tokens of a context (a deep run measures something else)."""
    want = (model_key(model, quant), fmt, quant.upper(), device)
    rates = [r["measured_tok_s"] for r in load_measurements()
             if (model_key(str(r.get("model")), str(r.get("quant"))), r.get("format"), str(r.get("quant")).upper(),
                 r.get("device")) == want and r.get("measured_tok_s") and (r.get("fill") or 0) <= max_fill]
    return statistics.median(rates) if rates else None


def calibration_path() -> Path:
    return config.home() / "calibration.json"


_MEASUREMENTS: dict[str, tuple[tuple[int, int, int], list[dict[str, Any]]]] = {}  # path -> (its stat, its runs)


def load_measurements() -> list[dict[str, Any]]:
    """The kept runs; parsed once per version of the file (a recommendation asks for every pick, and
    each record_measurement replaces the file, so a changed stat means a new version)."""
    path = calibration_path()
    try:
        st = path.stat()
    except OSError:
        return []
    version = (st.st_ino, st.st_mtime_ns, st.st_size)
    cached = _MEASUREMENTS.get(str(path))
    if cached is not None and cached[0] == version:
        return list(cached[1])
    runs = _runs(state.read_json(path))
    _MEASUREMENTS[str(path)] = (version, runs)
    return list(runs)


def _runs(data: dict[str, Any]) -> list[dict[str, Any]]:
    runs = data.get("runs")
    return [r for r in runs if isinstance(r, dict)] if isinstance(runs, list) else []


def record_measurement(*, model: str, fmt: str, quant: str, device: str, context: int,
                       predicted_tok_s: float | None = None, measured_tok_s: float | None = None,
                       predicted_ram_bytes: int | None = None, measured_ram_bytes: int | None = None,
                       predicted_vram_bytes: int | None = None, measured_vram_bytes: int | None = None,
                       fill: int | None = None, keep: int = 200) -> None:
    """Keep one measured run (after a model load or a reply) so later estimates learn from it."""
    run = {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "model": model, "format": fmt, "quant": quant,
           "runtime": runtime_of(fmt), "device": device, "context": context,
           "predicted_tok_s": predicted_tok_s, "measured_tok_s": measured_tok_s,
           "predicted_ram_bytes": predicted_ram_bytes, "measured_ram_bytes": measured_ram_bytes,
           "predicted_vram_bytes": predicted_vram_bytes, "measured_vram_bytes": measured_vram_bytes,
           "fill": fill}
    # under the file's lock: another app instance recording at the same time keeps its run too
    state.update(calibration_path(), lambda data: {**data, "runs": (_runs(data) + [run])[-keep:]}, indent=1)


def speed_ratio(device: str, runtime: str) -> tuple[float | None, int, float]:
    """Median measured/predicted decode speed of this device and runtime, clamped to [0.2, 3]; how many
    runs it comes from; and the band around it: twice the median deviation of the runs from it (at
    least 10%; 20% with fewer than 3 runs)."""
    ratios = [r["measured_tok_s"] / r["predicted_tok_s"] for r in load_measurements()
              if r.get("device") == device and r.get("runtime") == runtime
              and r.get("measured_tok_s") and r.get("predicted_tok_s")]
    if not ratios:
        return None, 0, UNCALIBRATED_BAND_PCT
    mid = statistics.median(ratios)
    spread = 200 * statistics.median(abs(r / mid - 1) for r in ratios)
    band = max(10.0 if len(ratios) >= 3 else 20.0, min(UNCALIBRATED_BAND_PCT, spread))
    return min(3.0, max(0.2, mid)), len(ratios), round(band, 1)


def memory_offset(kind: str, runtime: str) -> float:
    """Median measured - predicted bytes ("ram" or "vram") of earlier loads, within +-512 MiB: a
    mismatch is a runtime overhead we got wrong, not something that scales with the model."""
    diffs = [r[f"measured_{kind}_bytes"] - r[f"predicted_{kind}_bytes"] for r in load_measurements()
             if r.get("runtime") == runtime and r.get(f"measured_{kind}_bytes")
             and r.get(f"predicted_{kind}_bytes")]
    return max(-512 * MiB, min(512 * MiB, statistics.median(diffs))) if diffs else 0.0
