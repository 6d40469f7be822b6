"""Hub access on huggingface_hub: where the shared HF cache is, what a repo holds, which files to
fetch, and one clear error per failure. Downloads are in download.py, the local library in models/library.py."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from localllm.config.paths import hf_hub_cache
from localllm.errors import LocalLLMError

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_QUANT = "Q4_K_M"  # the usual size/quality sweet spot, and what Ollama and LM Studio pick
LOGIN_HOW = ("set HF_TOKEN to a read token from https://huggingface.co/settings/tokens, "
             "or run `hf auth login`")


class HubError(LocalLLMError):
    """A Hub or download failure; str(err) is the whole message, with no token in it."""

    def __init__(self, message: str, token: str | None = None) -> None:
        if token:
            message = message.replace(token, "***")  # belt and braces: a server may echo it back
        super().__init__(message)


class HubUnreachable(HubError):
    """No connection to the endpoint (refused, DNS, timeout) or offline mode."""


class RepoNotFound(HubError):
    pass


class AccessDenied(HubError):
    """401/403: a gated or private repo, and no token or a token without access."""


class RevisionNotFound(HubError):
    pass


class RemoteFileNotFound(HubError):
    pass


class NoMatchingFiles(HubError):
    """The repo has nothing that matches what was asked (quant, file, safe weights)."""


@dataclass(frozen=True)
class HubConfig:
    """Where the Hub and the cache are, read from the environment at call time (huggingface_hub
    reads its constants once at import, so tests and long-lived apps would miss later changes)."""

    endpoint: str
    cache_dir: Path
    token: str | None = field(default=None, repr=False)  # repr=False: never in logs or tracebacks
    offline: bool = False
    timeout_s: float = 10.0

    @classmethod
    def from_env(cls, endpoint: str | None = None, cache_dir: str | os.PathLike | None = None,
                 token: str | None = None, offline: bool | None = None) -> HubConfig:
        from huggingface_hub import constants, get_token

        env = os.environ
        endpoint = (endpoint or env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        if offline is None:
            offline = _truthy(env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE")) \
                or constants.HF_HUB_OFFLINE
        timeout = float(env.get("HF_HUB_DOWNLOAD_TIMEOUT") or constants.HF_HUB_DOWNLOAD_TIMEOUT)
        return cls(endpoint=endpoint, cache_dir=Path(cache_dir) if cache_dir else hf_hub_cache(),
                   token=token or get_token(), offline=bool(offline), timeout_s=timeout)

    @property
    def token_arg(self) -> str | bool:
        """What to pass as `token=` to huggingface_hub: ours, or False so it never goes looking."""
        return self.token or False


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


# --- what a repo holds --------------------------------------------------------------------------

_QUANT_RE = re.compile(r"(?:^|[-._])((?:I|T)?Q\d+(?:_[A-Z0-9]+)*|MXFP4|BF16|FP16|F16|F32)(?=[-.])", re.I)
SPLIT_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.I)


def quant_of(filename: str) -> str | None:
    """The quant label in a GGUF file name (model-Q4_K_M.gguf, model.q8_0.gguf), upper-cased."""
    found = _QUANT_RE.findall(Path(filename).name)
    return found[-1].upper() if found else None


def split_base(path: str) -> str:
    """model-Q4_K_M-00001-of-00003.gguf -> model-Q4_K_M.gguf: the key that groups split parts."""
    return SPLIT_RE.sub(".gguf", path)


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int | None
    sha256: str | None = None  # the LFS oid: the content hash, and the blob's name in the cache
    blob_id: str | None = None  # the git object id, used for small non-LFS files

    @property
    def is_gguf(self) -> bool:
        return self.path.lower().endswith(".gguf")

    @property
    def quant(self) -> str | None:
        return quant_of(self.path) if self.is_gguf else None


@dataclass(frozen=True)
class RepoListing:
    repo_id: str
    revision: str  # as asked ("main", a tag, a commit)
    commit: str  # what it resolved to: every file is fetched from this one commit
    files: tuple[RemoteFile, ...]
    gated: bool = False

    def file(self, path: str) -> RemoteFile | None:
        return next((f for f in self.files if f.path == path), None)


@contextmanager
def hub_errors(cfg: HubConfig, repo_id: str, filename: str | None = None,
               revision: str | None = None) -> Iterator[None]:
    """Turn huggingface_hub and HTTP exceptions into HubErrors with a message that says what to do."""
    try:
        yield
    except HubError:
        raise
    except Exception as exc:
        err = translate(exc, cfg, repo_id, filename, revision)
        if err is None:
            raise
        raise err from None  # the chain adds nothing the message lacks


def translate(exc: BaseException, cfg: HubConfig, repo_id: str, filename: str | None = None,
              revision: str | None = None) -> HubError | None:
    import httpx2
    from huggingface_hub import errors as hf

    where = f"{cfg.endpoint}/{repo_id}"
    if isinstance(exc, hf.OfflineModeIsEnabled):
        return offline_error(cfg)
    if isinstance(exc, hf.HFValidationError):
        return HubError(f"{repo_id!r} is not a valid repo id: expected owner/name, "
                        "e.g. bartowski/SmolLM2-135M-Instruct-GGUF.")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, hf.GatedRepoError) or (isinstance(exc, hf.HfHubHTTPError) and status in (401, 403)):
        return access_denied(cfg, repo_id, status, gated=isinstance(exc, hf.GatedRepoError))
    if isinstance(exc, hf.RevisionNotFoundError):
        return RevisionNotFound(f"{repo_id} has no revision {revision!r} (no such branch, tag or commit). "
                                f"Leave out --revision to get main.")
    if isinstance(exc, hf.RepositoryNotFoundError):
        return RepoNotFound(f"There is no model repo {repo_id} on {cfg.endpoint} (HTTP {status or 404}). "
                            "Check the spelling: owner/name, as in the repo's address on the Hub.")
    if isinstance(exc, hf.RemoteEntryNotFoundError):
        return RemoteFileNotFound(f"{repo_id} has no file {filename!r} at revision {revision or 'main'}. "
                                  f"`localllm pull {repo_id} --list` shows its files.")
    if isinstance(exc, hf.FileMetadataError):
        return HubError(f"{cfg.endpoint} did not answer like the Hugging Face Hub for {repo_id}/{filename} "
                        "(no commit or ETag header). Check HF_ENDPOINT and any proxy in between.", cfg.token)
    if isinstance(exc, hf.HfHubHTTPError):
        return HubError(f"The Hub at {cfg.endpoint} answered HTTP {status} for {where}. "
                        "It may be down or rate-limiting: try again in a few minutes.", cfg.token)
    if isinstance(exc, httpx2.TimeoutException):
        return HubUnreachable(f"The Hub at {cfg.endpoint} did not answer in time ({type(exc).__name__}). "
                              "Check the network, then run the command again.")
    if isinstance(exc, httpx2.TransportError):
        return HubUnreachable(
            f"Cannot reach the Hub at {cfg.endpoint} ({_reason(exc)}). Check the network connection "
            "(and HF_ENDPOINT or proxy settings if you use them). Models already downloaded still work: "
            "`localllm models` lists them.", cfg.token)
    return None


def _reason(exc: BaseException) -> str:
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service" in text or "resolution" in text or "nodename" in text:
        return "the host name does not resolve"
    return type(exc).__name__


def offline_error(cfg: HubConfig) -> HubUnreachable:
    return HubUnreachable("Offline mode is on (HF_HUB_OFFLINE), so nothing can be downloaded. Unset "
                          "HF_HUB_OFFLINE to download; models already downloaded still work: `localllm models`.")


def access_denied(cfg: HubConfig, repo_id: str, status: int | None, gated: bool) -> AccessDenied:
    page = f"{cfg.endpoint}/{repo_id}"  # the licence page; a mirror shows it at the same path
    if cfg.token:
        why = (f"{repo_id} refused the token that was sent (HTTP {status}): it is gated or private and "
               "this account has no access yet.")
        todo = (f"Open {page} while logged in and accept the licence (some repos need an approval), "
                f"or use a token of an account with access: {LOGIN_HOW}.")
    else:
        # anonymous requests get 401 for private and missing repos alike: the Hub hides which
        kind = "is gated" if gated else "is private or gated (or does not exist: check the spelling)"
        why = f"{repo_id} {kind} and you are not logged in (HTTP {status})."
        todo = (f"1) Log in: {LOGIN_HOW}. 2) Accept the licence at {page} while logged in. "
                "Then run the command again.")
    return AccessDenied(f"{why} {todo}", cfg.token)


def list_repo(repo_id: str, revision: str | None = None, cfg: HubConfig | None = None) -> RepoListing:
    """Every file of a repo at one commit, with sizes and hashes (one API call)."""
    from huggingface_hub import HfApi

    cfg = cfg or HubConfig.from_env()
    if cfg.offline:
        raise offline_error(cfg)
    with hub_errors(cfg, repo_id, revision=revision):
        info = HfApi(endpoint=cfg.endpoint, token=cfg.token_arg).model_info(
            repo_id, revision=revision, files_metadata=True, timeout=cfg.timeout_s)
    files = tuple(RemoteFile(path=s.rfilename, size=s.size, sha256=s.lfs.sha256 if s.lfs else None,
                             blob_id=s.blob_id) for s in info.siblings or ())
    if not info.sha:
        raise HubError(f"{cfg.endpoint} sent no commit id for {repo_id}; check HF_ENDPOINT.")
    return RepoListing(repo_id, revision or "main", info.sha, files, gated=bool(info.gated))


# --- what to fetch ------------------------------------------------------------------------------

CHECKPOINT_FILES = frozenset({
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
    "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja",
    "chat_template.json", "quantize_config.json", "quant_config.json", "model.safetensors.index.json",
})


@dataclass(frozen=True)
class Selection:
    kind: str  # "gguf" | "checkpoint" | "files"
    files: tuple[RemoteFile, ...]
    quant: str | None = None
    note: str = ""  # said to the user, e.g. why this quant

    @property
    def total_size(self) -> int:
        return sum(f.size or 0 for f in self.files)


def gguf_groups(listing: RepoListing) -> dict[str, list[RemoteFile]]:
    """GGUF models in a repo: split parts grouped under one key; vision projectors left out."""
    groups: dict[str, list[RemoteFile]] = {}
    for f in listing.files:
        if f.is_gguf and not Path(f.path).name.lower().startswith("mmproj"):
            groups.setdefault(split_base(f.path), []).append(f)
    return {k: sorted(v, key=lambda f: f.path) for k, v in sorted(groups.items())}


def available_quants(listing: RepoListing) -> dict[str, int]:
    """Quant label -> total size for the repo's GGUF models, smallest first."""
    out: dict[str, int] = {}
    for key, parts in gguf_groups(listing).items():
        label = quant_of(key) or Path(key).name
        out[label] = out.get(label, 0) + sum(p.size or 0 for p in parts)
    return dict(sorted(out.items(), key=lambda kv: (kv[1], kv[0])))


def select_files(listing: RepoListing, quant: str | None = None, filename: str | None = None,
                 allow_pickle: bool = False) -> Selection:
    """One GGUF (a quant, all its split parts) or a whole checkpoint's needed files; raise NoMatchingFiles."""
    if filename:
        return _select_file(listing, filename)
    groups = gguf_groups(listing)
    has_checkpoint = listing.file("config.json") is not None
    if quant or (groups and not has_checkpoint):
        return _select_quant(listing, groups, quant)
    return _select_checkpoint(listing, allow_pickle)


def human_size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _quant_list(listing: RepoListing) -> str:
    return ", ".join(f"{q} ({human_size(s)})" for q, s in available_quants(listing).items()) or "none"


def _select_quant(listing: RepoListing, groups: dict[str, list[RemoteFile]], quant: str | None) -> Selection:
    repo = listing.repo_id
    if not groups:
        raise NoMatchingFiles(f"{repo} has no GGUF files, so --quant does not apply. "
                              f"`localllm pull {repo}` fetches its checkpoint instead.")
    note = ""
    if quant is None:
        if len(groups) == 1:
            return _gguf_selection(next(iter(groups.values())), "")
        quant, note = DEFAULT_QUANT, f"picked the default quant {DEFAULT_QUANT}; --quant chooses another"
        if not any(quant_of(k) == quant for k in groups):
            raise NoMatchingFiles(f"{repo} has GGUF files in several quants; pick one with --quant: "
                                  f"{_quant_list(listing)}.")
    wanted = quant.upper()
    matches = [parts for key, parts in groups.items() if quant_of(key) == wanted]
    if not matches:
        raise NoMatchingFiles(f"{repo} has no {wanted} GGUF file. Available quants: {_quant_list(listing)}.")
    if len(matches) > 1:
        names = ", ".join(m[0].path for m in matches)
        raise NoMatchingFiles(f"{repo} has several {wanted} GGUF models ({names}); pick one with --file.")
    return _gguf_selection(matches[0], note)


def _gguf_selection(parts: list[RemoteFile], note: str) -> Selection:
    return Selection("gguf", tuple(parts), quant_of(split_base(parts[0].path)), note)


def _select_file(listing: RepoListing, filename: str) -> Selection:
    match = listing.file(filename)
    if match is None:
        same_name = [f for f in listing.files if Path(f.path).name == filename]
        if len(same_name) != 1:
            raise RemoteFileNotFound(f"{listing.repo_id} has no file {filename!r} at revision "
                                     f"{listing.revision}. `localllm pull {listing.repo_id} --list` shows its files.")
        match = same_name[0]
    if match.is_gguf and SPLIT_RE.search(match.path):  # one part alone is useless: take them all
        parts = gguf_groups(listing).get(split_base(match.path)) or [match]
        return _gguf_selection(parts, "")
    return Selection("gguf" if match.is_gguf else "files", (match,), match.quant)


def _select_checkpoint(listing: RepoListing, allow_pickle: bool) -> Selection:
    repo = listing.repo_id
    top = [f for f in listing.files if "/" not in f.path]
    weights = [f for f in top if f.path.endswith(".safetensors")]
    if len(weights) > 1:  # Mistral-style repos carry the same weights twice; the HF shards are enough
        weights = [f for f in weights if not f.path.startswith("consolidated")] or weights
    note = ""
    if not weights:
        pickles = [f for f in top if f.path.endswith(".bin") and "model" in f.path]
        if not pickles:
            raise NoMatchingFiles(f"{repo} holds no GGUF and no safetensors weights, so there is nothing "
                                  "localllm can load. Its files: " + ", ".join(f.path for f in top[:12]))
        if not allow_pickle:
            raise NoMatchingFiles(f"{repo} only has pickle .bin weights, which can run code when loaded. "
                                  "Look for a safetensors copy of this model, or pass --allow-pickle.")
        weights, note = pickles, "pickle .bin weights, as asked"
    extras = [f for f in top if f.path in CHECKPOINT_FILES]
    if not any(f.path == "config.json" for f in extras):
        raise NoMatchingFiles(f"{repo} has weights but no config.json, so it is not a transformers "
                              "checkpoint localllm can load.")
    quant = "gptq" if any(f.path in ("quantize_config.json", "quant_config.json") for f in extras) else None
    return Selection("checkpoint", tuple(sorted(extras + weights, key=lambda f: f.path)), quant, note)
