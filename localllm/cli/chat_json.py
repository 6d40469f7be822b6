"""What `localllm chat -p ... --json` prints for each turn: the reply with every number, the model's
knobs, each sampling value's source, the load plan beside what was measured, and what the server
itself counted over the turn. Apart from cli.main, which runs the chat: these only shape its record.
Imports stay inside the functions, as in main, so `localllm --help` loads none of them."""

from __future__ import annotations


def server_reader(session):
    """A reader of the server's own figures (models.server_stats) for a model behind a server, else None."""
    model = session.model
    if model is None or model.backend != "remote":
        return None
    from localllm.models.server_stats import ServerStatsReader

    return ServerStatsReader(model.path, key_env=(model.extra or {}).get("api_key_env"), model=model.name)


def server_record(server, stats) -> dict:
    """The server's figures over the turn, and the client's TTFT beside the server's own prompt time."""
    from localllm.models.server_stats import client_vs_server

    sample = server.sample()
    record = sample.to_dict()
    ttft = client_vs_server(stats.ttft_s, stats.server_timings, sample)
    if ttft is not None:
        record["ttft"] = ttft
    return record


def turn_record(session, turn: int, prompt: str, done) -> dict:
    """What `chat -p ... --json` prints for one turn: the reply, every number, and at the top level the
    ones a multi-turn run compares (how much of the prompt came from the KV cache, and what it cost)."""
    stats = done.stats
    return {"turn": turn, "model": _model_record(session.model), "prompt": prompt, "reply": done.turn.content,
            "status": done.turn.status, "load_s": round(session.model.load_s or 0, 3),
            "prompt_tokens": stats.prompt_tokens,
            "cached_tokens": stats.cached_tokens,
            "ttft_ms": round(stats.ttft_s * 1000, 1) if stats.ttft_s is not None else None,
            "decode_tok_s": round(stats.decode_tok_s, 2) if stats.decode_tok_s else None,
            "sampling": _sampling_record(session), "context": _context_record(session),
            "stats": stats.to_dict(), "plan": _plan_vs_measured(session, stats), "notices": session.notices}


def _model_record(model) -> dict:
    """The loaded model's fields, with its knobs under their one name as well (context, threads,
    gpu_layers; docs/ARCHITECTURE.md): the old n_ctx, n_threads, n_gpu_layers stay for old readers."""
    info = vars(model)
    return {**info, "context": info["n_ctx"], "threads": info["n_threads"], "gpu_layers": info["n_gpu_layers"]}


def _sampling_record(session) -> dict:
    """Each sampling value with where it came from: {"temperature": {"value": 0.2, "from": "catalog"}}."""
    if session.resolved_sampling is not None:
        return session.resolved_sampling.to_dict()
    return {k: {"value": v, "from": "user"} for k, v in vars(session.sampling).items()
            if k not in ("seed", "ignore_eos")}


def _context_record(session) -> dict | None:
    """The context the model was loaded with and where it came from: {"value": 4096, "from": "ollama"}
    (user | settings | ollama | default; sampling_defaults.context_for)."""
    if session.context is None:
        return None
    return {"value": session.context[0], "from": session.context[1]}


def _plan_vs_measured(session, stats) -> dict | None:
    """The load plan beside what was measured, per device: RSS of the worker, its own VRAM (NVML)."""
    plan = session.plan
    if plan is None:
        return None
    data = plan.to_dict()
    devices = data["devices"]
    mib = 2**20
    if stats.rss_peak_mib is not None and plan.at_fill is not None:  # at the fill this reply reached
        fill = (stats.prompt_tokens or 0) + (stats.completion_tokens or 0)
        planned = plan.at_fill(fill).rss_bytes / mib
        devices["cpu"].update(rss_planned_at_fill_mib=round(planned, 1), fill_tokens=fill,
                              measured_peak_mib=round(stats.rss_peak_mib, 1),
                              error_pct=round(100 * (planned - stats.rss_peak_mib) / stats.rss_peak_mib, 1))
    if "gpu0" in devices or stats.vram_peak_mib:  # the worker's own VRAM, through NVML
        gpu = devices.setdefault("gpu0", {"total": 0})
        gpu["measured_peak_mib"] = stats.vram_peak_mib
        if stats.vram_peak_mib:
            gpu["error_pct"] = round(100 * (gpu["total"] / mib - stats.vram_peak_mib) / stats.vram_peak_mib, 1)
    return data
