"""The private names of llama-cpp-python and huggingface_hub that localllm uses (issue 21, item 11), one
test each: a release that removes or changes one fails here with what to fix, not in a user's chat.
pyproject.toml pins both packages to the releases these pass on; move the pin only once they pass."""

from __future__ import annotations

import inspect
from importlib.metadata import version

import pytest

llama_cpp = pytest.importorskip("llama_cpp")


def _why(package: str, what: str, user: str) -> str:
    return (f"{package} {version(package)} changed {what}, which {user} relies on: adapt that code, then "
            "move the pin in pyproject.toml")


def _assigned_in(func, attr: str) -> bool:
    return f"self.{attr} =" in inspect.getsource(func) or f"self.{attr}: " in inspect.getsource(func)


# -- llama-cpp-python: Llama's private attributes and the internals reached through them ----------------
@pytest.mark.parametrize("attr,use", [
    ("_model", "the model handle: n_ctx_train(), vocab, and .model for llama_cpp_batch's context"),
    ("_ctx", "kv_cache_seq_rm, decode and get_logits for perplexity"),
    ("_batch", "set_batch for perplexity"),
])
def test_llama_sets_the_private_attribute(attr, use) -> None:
    assert _assigned_in(llama_cpp.Llama.__init__, attr), _why(
        "llama_cpp_python", f"Llama.__init__ (no longer sets self.{attr})",
        f"localllm/backends/llama_cpp.py ({use})")


def test_llama_input_ids_is_a_property() -> None:
    found = inspect.getattr_static(llama_cpp.Llama, "_input_ids", None)
    assert isinstance(found, property), _why(
        "llama_cpp_python", "Llama._input_ids (no longer a property)",
        "localllm/backends/llama_cpp.py (the KV-cache reuse count)")


@pytest.mark.parametrize("cls,method,params", [
    ("LlamaContext", "kv_cache_seq_rm", ["self", "seq_id", "p0", "p1"]),
    ("LlamaContext", "decode", ["self", "batch"]),
    ("LlamaContext", "get_logits", ["self"]),
    ("LlamaBatch", "set_batch", ["self", "batch", "n_past", "logits_all"]),
    ("LlamaModel", "n_ctx_train", ["self"]),
])
def test_internal_methods_keep_their_signatures(cls, method, params) -> None:
    from llama_cpp import _internals

    func = getattr(getattr(_internals, cls, None), method, None)
    assert func is not None and list(inspect.signature(func).parameters) == params, _why(
        "llama_cpp_python", f"_internals.{cls}.{method}({', '.join(params)})", "localllm/backends/llama_cpp.py")


@pytest.mark.parametrize("attr", ["model", "vocab"])
def test_llama_model_keeps_its_handles(attr) -> None:
    from llama_cpp import _internals

    assert _assigned_in(_internals.LlamaModel.__init__, attr), _why(
        "llama_cpp_python", f"_internals.LlamaModel (no longer sets self.{attr})", "localllm/backends/llama_cpp.py")


def test_model_default_params_can_still_be_patched() -> None:
    """backends.llama_cpp._model_params swaps llama_cpp.llama_cpp.llama_model_default_params for a
    function that sets use_extra_bufts: Llama() must look it up on the module when it runs, and the
    params must have the field."""
    module = llama_cpp.llama_cpp
    func = getattr(module, "llama_model_default_params", None)
    assert func is not None and not inspect.signature(func).parameters, _why(
        "llama_cpp_python", "llama_cpp.llama_model_default_params()", "backends.llama_cpp._model_params")
    assert "use_extra_bufts" in dict(module.llama_model_params._fields_), _why(
        "llama_cpp_python", "llama_model_params (no use_extra_bufts field)", "backends.llama_cpp._model_params")
    assert "llama_cpp.llama_model_default_params()" in inspect.getsource(llama_cpp.Llama.__init__), _why(
        "llama_cpp_python", "how Llama.__init__ gets its model params (the patch would do nothing)",
        "backends.llama_cpp._model_params (extra buffers off after a SIGILL)")


# -- huggingface_hub: file_download's private helpers ---------------------------------------------------
@pytest.mark.parametrize("name,params", [
    ("_get_pointer_path", ["storage_folder", "revision", "relative_filename"]),
    ("_chmod_and_move", ["src", "dst"]),
    ("_create_symlink", ["src", "dst", "new_blob"]),
    ("_cache_commit_hash_for_specific_revision", ["storage_folder", "revision", "commit_hash"]),
])
def test_hub_private_helper(name, params) -> None:
    from huggingface_hub import file_download

    func = getattr(file_download, name, None)
    assert func is not None, _why("huggingface_hub", f"file_download.{name} (removed)", "localllm/hub/download.py")
    assert list(inspect.signature(func).parameters) == params, _why(
        "huggingface_hub", f"file_download.{name}{inspect.signature(func)} (was {', '.join(params)})",
        "localllm/hub/download.py")


def test_context_keeps_its_native_handle() -> None:
    from llama_cpp import _internals

    assert _assigned_in(_internals.LlamaContext.__init__, "ctx"), _why(
        "llama_cpp_python", "_internals.LlamaContext (no longer sets self.ctx)",
        "backends.llama_cpp._abort_on (the abort callback that stops a prompt's evaluation)")


def test_abort_and_progress_callbacks_keep_their_c_types() -> None:
    """A stop during the prompt's evaluation (llama_set_abort_callback with a ggml_abort_callback) and
    the load's progress (llama_model_params.progress_callback, a llama_progress_callback)."""
    import ctypes

    set_abort = getattr(llama_cpp, "llama_set_abort_callback", None)
    assert set_abort is not None and len(set_abort.argtypes) == 3, _why(
        "llama_cpp_python", "llama_set_abort_callback(ctx, callback, data)", "backends.llama_cpp._abort_on")
    assert set_abort.argtypes[1] is llama_cpp.ggml_abort_callback, _why(
        "llama_cpp_python", "the type of llama_set_abort_callback's callback", "backends.llama_cpp._abort_on")
    assert llama_cpp.ggml_abort_callback._restype_ is ctypes.c_bool, _why(
        "llama_cpp_python", "ggml_abort_callback (no longer returns a bool)", "backends.llama_cpp._abort_on")
    fields = dict(llama_cpp.llama_cpp.llama_model_params._fields_)
    assert fields.get("progress_callback") is llama_cpp.llama_progress_callback, _why(
        "llama_cpp_python", "llama_model_params.progress_callback", "backends.llama_cpp._model_params")
    assert llama_cpp.llama_progress_callback._argtypes_ == (ctypes.c_float, ctypes.c_void_p), _why(
        "llama_cpp_python", "llama_progress_callback(progress, data)", "backends.llama_cpp._model_params")
