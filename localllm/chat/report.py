"""Plain-text views of the meter's numbers, shared by the CLI and the TUI (the figures themselves,
seconds, rates and MiB, are runtime.figures', re-exported here)."""

from __future__ import annotations

from localllm.runtime.figures import mib, rate, seconds
from localllm.runtime.metrics import ReplyStats


def percent_or_dash(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def time_view(s: ReplyStats) -> str:
    """Seed 004's %%time lines."""
    text = (f"CPU times: user {seconds(s.cpu_user_s)}, sys {seconds(s.cpu_sys_s)}, "
            f"total {seconds(s.cpu_total_s)}\nWall time: {seconds(s.wall_s)} "
            f"(CPU/wall {percent_or_dash(s.cpu_per_wall)})")
    if s.client_cpu_s is not None:
        text += f"\nClient CPU (localllm's side): {seconds(s.client_cpu_s)}"
    return text


def limit_view(s: ReplyStats) -> str | None:
    """Decode against its memory-bandwidth roofline (F7), e.g. "39% of 279 tok/s"; None when unknown."""
    pct = s.percent_of_limit  # None unless both the decode and its limit are known
    return None if pct is None else f"{pct:.0f}% of {s.limit_tok_s:.0f} tok/s"


def stats_line(s: ReplyStats) -> str:
    """One line under each reply."""
    parts = [
        f"{s.completion_tokens} tok",
        f"decode {rate(s.decode_tok_s)}" + (f" ({limit} BW limit)" if (limit := limit_view(s)) else ""),
        f"TTFT {seconds(s.ttft_s)}",
        f"prefill {rate(s.prefill_tok_s)} ({s.prompt_tokens} tok"
        + (f", reused {s.cached_tokens} of {s.prompt_tokens})" if s.cached_tokens else ")")
        + (f" ({s.cache_note})" if s.cache_note else ""),
        f"wall {seconds(s.wall_s)}",
        f"CPU {seconds(s.cpu_user_s)} user + {seconds(s.cpu_sys_s)} sys",
        f"RSS {mib(s.rss_peak_mib)} peak",
    ]
    if s.vram_peak_mib is not None:
        parts.append(f"VRAM {mib(s.vram_peak_mib)} peak")
    if s.gpu_util_pct is not None:
        parts.append(f"GPU {s.gpu_util_pct:.0f}% busy")
    return " · ".join(parts)


def full_report(s: ReplyStats) -> str:
    lines = [
        time_view(s),
        f"Tokens: prompt {s.prompt_tokens}" + (f" (reused {s.cached_tokens} from the KV cache)" if s.cached_tokens else "")
        + (f" (not all reused: {s.cache_note})" if s.cache_note else "")
        + f", completion {s.completion_tokens} (finish: {s.finish_reason})",
        f"TTFT {seconds(s.ttft_s)} · prefill {rate(s.prefill_tok_s)} · decode {rate(s.decode_tok_s)}"
        + (f" ({s.percent_of_limit:.0f}% of the {s.limit_tok_s:.0f} tok/s memory-bandwidth limit)"
           if limit_view(s) else ""),
        "Per-token latency: p50 " + ("-" if s.latency_p50_ms is None else f"{s.latency_p50_ms:.1f} ms")
        + " · p90 " + ("-" if s.latency_p90_ms is None else f"{s.latency_p90_ms:.1f} ms"),
        f"RSS now {mib(s.rss_now_mib)} · peak {mib(s.rss_peak_mib)}",
    ]
    if s.vram_peak_mib is not None:
        lines.append(f"VRAM now {mib(s.vram_now_mib)} · peak {mib(s.vram_peak_mib)}"
                     + (f" · GPU utilization {s.gpu_util_pct:.0f}% (mean)" if s.gpu_util_pct is not None else ""))
    return "\n".join(lines)
