"""What the command line asks for, over the saved settings: the settings (their warnings printed), the
load options and sampling request of this run, the model or server it names, and a session with that model
loaded. `localllm chat`, the TUI and the commands that load or plan a model share these."""

from __future__ import annotations

import sys


def settings_warned():
    from localllm.config.settings import load_settings_lenient

    settings, warnings = load_settings_lenient()
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return settings


def run_options(args, settings):
    """Saved settings, overridden by whatever was given on the command line. The sampling comes back as
    a request: each model resolves it with its own defaults when it loads
    (localllm.models.sampling_defaults: flags, then the model's saved table, the settings, the model's
    metadata, its catalog entry, the app's defaults)."""
    from localllm.config.settings import MODEL_KNOBS, sampling_seed, to_load_options, to_sampling
    from localllm.models.sampling_defaults import SamplingRequest

    load, sampling = to_load_options(settings), to_sampling(settings)
    given = {k: v for k, v in vars(args).items() if v is not None}
    for knob in ("context", "threads", "gpu_layers", "kv_type"):  # one name: the flag's dest is the field
        if knob in given:
            setattr(load, knob, given[knob])
    # one name per knob: each flag's dest is the knob's own name
    run = {knob: given[knob] for knob in (*MODEL_KNOBS, "system_prompt") if knob in given}
    if "seed" in given:  # -1 (`--seed random`): a fresh seed each reply, as in the settings
        sampling.seed = sampling_seed(given["seed"])
        load.seed = max(given["seed"], 0)
    request = SamplingRequest(run=run, settings=settings, base=sampling, ctx_given="context" in given)
    load.force = bool(given.get("force"))
    load.api_key_env = args.api_key_env or settings.api_key_env
    load.quantization, load.dtype = args.load_in, args.dtype
    if endpoint_of(args):
        load.remote_model = args.model or ""
    return load, request


def endpoint_of(args) -> str | None:
    import os

    from localllm.models.endpoints import ENDPOINT_ENV

    return args.endpoint or os.environ.get(ENDPOINT_ENV) or None


def model_of(args, settings=None) -> str:
    if endpoint := endpoint_of(args):
        return endpoint
    if args.model:
        return args.model
    if settings is not None and settings.model:
        return settings.model
    from localllm.models.embedded import EMBEDDED

    return EMBEDDED  # ModelRef (in the session) finds its file


def new_session(args):
    from localllm.chat.session import ChatSession

    settings = settings_warned()
    load, request = run_options(args, settings)
    session = ChatSession(sampling=request.base, system_prompt=settings.system_prompt, sampling_request=request)
    bar = None
    if not getattr(args, "quiet", False):
        from localllm.cli.progress import ProgressBar

        bar = ProgressBar(unit="percent")
    try:
        session.load(model_of(args, settings), load, on_progress=bar and (
            lambda f: bar.update(round(f * 100), 100, "loading model", final=f >= 1.0)))
    finally:
        if bar is not None:
            bar.close()
    if bar is not None and session.model.load_s is not None:
        print(f"[loaded in {session.model.load_s:.1f} s]", file=sys.stderr)
    for notice in session.notices:
        print(f"[notice] {notice}", file=sys.stderr)
    return session
