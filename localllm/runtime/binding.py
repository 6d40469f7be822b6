"""What the installed llama-cpp-python can do on this machine, learned once in a child process (a model
worker) and cached per machine: its version, whether it was built with GPU offload, its CPU build
features, and whether llama.cpp's extra buffer types (the AMX and repack kernels) survive a decode here.

Why a child: on an Intel Xeon with AMX, a native llama.cpp build dies of SIGILL at the first decode
through its AMX buffer type. Learning that in a throwaway worker keeps the app (and a test run that
loads llama.cpp in-process) alive; every later load then uses `use_extra_bufts = False`.
Never imports llama_cpp itself: the worker does (see worker_main's "caps" op)."""

from __future__ import annotations

import hashlib
import signal
import time
from dataclasses import asdict, dataclass
from importlib import metadata, util
from pathlib import Path
from typing import Any

from localllm.config import home, state

CACHE_FILE = "binding.json"


@dataclass
class BindingCaps:
    version: str = ""
    gpu_offload: bool = False
    system_info: str = ""
    extra_bufts_ok: bool | None = None  # None: not probed (no embedded model, or the probe failed)
    extra_bufts_note: str = ""  # how the answer was learned, for doctor and the notices
    probed_at: str = ""
    error: str = ""  # the binding could not be imported at all

    @property
    def build_features(self) -> dict[str, bool]:
        """{"AVX2": True, "AMX_INT8": False, ...} from llama_print_system_info's "NAME = 1" pairs."""
        out: dict[str, bool] = {}
        for part in self.system_info.split("|"):
            name, sep, value = part.rpartition(":")[2].strip().partition(" = ")  # "CPU : SSE3 = 1"
            if sep and name.isupper() and value.strip() in ("0", "1"):
                out[name] = value.strip() == "1"
        return out


def installed_version() -> str | None:
    try:
        return metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        return None


def _library_stamp() -> str:
    """Changes when the native library is rebuilt (a reinstall with other CMAKE_ARGS)."""
    spec = util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return ""
    lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
    try:
        return ",".join(f"{p.name}:{p.stat().st_mtime_ns}" for p in sorted(lib.iterdir()))
    except OSError:
        return ""


def machine_key() -> str:
    """This CPU (model and every flag) and this build of the binding."""
    from localllm.machine.cpu import read_cpuinfo

    info = read_cpuinfo()
    raw = "|".join([info.get("model name", ""), info.get("flags", info.get("Features", "")),
                    installed_version() or "", _library_stamp()])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def cache_path() -> Path:
    return home() / "machine" / CACHE_FILE


def _read_cache() -> dict[str, Any]:
    return state.read_json(cache_path())


def _write_cache(key: str, caps: BindingCaps) -> None:
    try:  # under the file's lock: another instance's entry (another build, another machine) is kept
        state.update(cache_path(), lambda data: {**data, key: asdict(caps)}, indent=2)
    except OSError:
        pass  # a read-only home: the probe runs again next time, nothing breaks


def cached() -> BindingCaps | None:
    entry = _read_cache().get(machine_key())
    if not isinstance(entry, dict):
        return None
    try:
        return BindingCaps(**entry)
    except TypeError:
        return None


_retried: set[bool] = set()


def capabilities(refresh: bool = False, probe_kernels: bool = True) -> BindingCaps:
    """The cached answer for this machine, or a fresh probe (about 1-2 s, once per machine and build)."""
    caps = None if refresh else cached()
    retry = caps is not None and caps.error and not _retried  # a failed probe is tried again once per run
    if caps is None or retry or (probe_kernels and caps.extra_bufts_ok is None and not caps.error):
        _retried.add(True)
        caps = probe(probe_kernels=probe_kernels)
        _write_cache(machine_key(), caps)
    return caps


def record_extra_bufts(ok: bool, note: str) -> BindingCaps:
    """Keep what a real load learned (a worker died of SIGILL with extra buffers on) for this machine."""
    caps = cached() or BindingCaps(version=installed_version() or "")
    caps.extra_bufts_ok, caps.extra_bufts_note = ok, note
    caps.probed_at = caps.probed_at or time.strftime("%Y-%m-%d %H:%M:%S")
    _write_cache(machine_key(), caps)
    return caps


def extra_bufts_for(setting: str) -> tuple[bool, str]:
    """(use extra buffer types?, why) for the extra_buffers setting: on/off as told; auto follows
    what this machine showed (probed once in a child process)."""
    if setting == "on":
        return True, "on (setting extra_buffers = on)"
    if setting == "off":
        return False, "off (setting extra_buffers = off)"
    caps = capabilities()
    if caps.extra_bufts_ok is False:
        return False, f"off on this machine: {caps.extra_bufts_note}"
    return True, "on (a test decode with them ran on this CPU)" if caps.extra_bufts_ok else "on"


def probe(probe_kernels: bool = True, timeout: float = 120.0) -> BindingCaps:
    """Ask a fresh worker what its llama-cpp-python can do, then (probe_kernels) load the embedded model
    with extra buffer types on and decode two tokens: a SIGILL there means they must stay off."""
    from localllm.config import LoadOptions, SamplingParams
    from localllm.errors import LocalLLMError, WorkerDied
    from localllm.runtime.worker import WorkerClient

    caps = BindingCaps(version=installed_version() or "", probed_at=time.strftime("%Y-%m-%d %H:%M:%S"))
    if caps.version == "":
        caps.error = "llama-cpp-python is not installed"
        return caps
    client = WorkerClient()
    try:
        client.start(timeout=timeout)
        answer = client.request({"op": "caps"}, "caps", timeout=timeout)
        caps.gpu_offload = bool(answer.get("gpu_offload"))
        caps.system_info = str(answer.get("system_info", ""))
        if not probe_kernels:
            return caps
        from localllm.models.embedded import embedded_model_path

        model = str(embedded_model_path())
        client.load(model, LoadOptions(context=256, threads=1, gpu_layers=0, extra_buffers="on"))
        for event in client.chat([{"role": "user", "content": "Hi"}],
                                 SamplingParams(temperature=0.0, max_tokens=2)):
            if event["ev"] == "error":
                raise LocalLLMError(event["message"])
        caps.extra_bufts_ok, caps.extra_bufts_note = True, "a test decode with them ran"
    except WorkerDied as exc:
        if exc.returncode == -signal.SIGILL:
            caps.extra_bufts_ok = False
            caps.extra_bufts_note = ("llama.cpp's extra CPU buffer types (AMX/repack kernels) died of SIGILL "
                                     "in a test decode")
        else:
            caps.error = f"the probe worker died: {exc.explanation}"
    except (LocalLLMError, TimeoutError, OSError) as exc:
        caps.error = f"the probe could not run: {exc}"
    finally:
        client.close()
    return caps


def is_sigill(exc: BaseException) -> bool:
    return getattr(exc, "returncode", None) == -signal.SIGILL


SIGILL_NOTICE = ("The model worker died of SIGILL (an instruction this CPU refuses, llama.cpp's AMX/repack "
                 "kernels): retrying with llama.cpp's extra buffer types off, kept for this machine "
                 "(setting extra_buffers; `localllm doctor` shows it).")
