"""Download jobs into the standard HF cache that survive real networks: progress, cancel, resume
across restarts, free-disk checks before and during, hash checks; nothing is visible until complete.

huggingface_hub resumes only within one call and deletes its partial file on failure, and reads in
10 MB chunks (coarse progress, slow cancel), so the transfer loop is ours; the cache layout (blobs,
snapshot symlinks, refs, locks) is huggingface_hub's own helpers, so transformers and `hf` see the files."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from localllm.hub.repos import (
    HubConfig,
    HubError,
    RemoteFile,
    RepoListing,
    Selection,
    hub_errors,
    human_size,
    offline_error,
)

log = logging.getLogger(__name__)

MIN_MARGIN = 64 * 1024 * 1024  # headroom left free on the disk; 2% of the download when that is more


class DownloadInterrupted(HubError):
    """The connection kept failing; the partial file is kept for the next run."""


class TruncatedDownload(HubError):
    """The server ended the body before the announced size; the partial file is kept."""


class HashMismatch(HubError):
    """The bytes did not match the Hub's hash twice; nothing is kept."""


class NotEnoughDiskSpace(HubError):
    """The free-space check before starting failed."""


class DiskFull(HubError):
    """The disk filled up while writing (ENOSPC); the partial file was removed."""


class DownloadCancelled(HubError):
    """Cancelled by the user; the partial file is kept for the next run."""


def human_duration(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


@dataclass(frozen=True)
class Progress:
    filename: str
    file_index: int  # 1-based
    file_count: int
    file_done: int
    file_total: int | None
    done: int  # bytes on disk for the whole job, resumed ones included
    total: int
    rate: float  # bytes/s over the last few seconds
    eta_s: float | None
    phase: str  # "checking" | "downloading" | "cached" | "done"

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


@dataclass
class DownloadResult:
    repo_id: str
    commit: str
    kind: str
    paths: list[Path]  # snapshot paths, in the order of the selection
    downloaded: int  # bytes transferred by this run
    resumed: int  # bytes reused from partial files of earlier runs
    cached: int  # files that were already complete in the cache
    seconds: float

    @property
    def model_path(self) -> Path:
        """What to load: the GGUF (its first part), or the checkpoint's snapshot folder."""
        return self.paths[0].parent if self.kind == "checkpoint" else self.paths[0]


@dataclass
class _Plan:
    file: RemoteFile
    pointer: Path
    url: str = ""
    size: int | None = None
    blob: Path | None = None
    algo: str = ""  # "sha256" | "git-sha1" | "" (nothing to check against)
    expected: str = ""

    @property
    def partial(self) -> Path:
        # huggingface_hub's own name for a partial blob: `hf cache` lists and prunes these
        assert self.blob is not None
        return self.blob.with_name(self.blob.name + ".incomplete")

    @property
    def cached(self) -> bool:
        return self.pointer.exists() or (self.blob is not None and self.blob.exists())


class _Retry(Exception):
    """A failure worth another attempt with Range: transport error, short body, 5xx."""

    def __init__(self, reason: str, short: bool = False, refresh: bool = False) -> None:
        super().__init__(reason)
        self.short = short  # the body ended early: a truncated file, not a broken connection
        self.refresh = refresh  # ask the Hub for a new download link first


class _NoSpace(Exception):
    pass


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


class DownloadJob:
    """Fetch a Selection into the HF cache; run() blocks, so the TUI runs it in a thread worker."""

    def __init__(self, listing: RepoListing, selection: Selection, cfg: HubConfig | None = None, *,
                 progress: Callable[[Progress], None] | None = None, cancel: threading.Event | None = None,
                 margin_bytes: int | None = None, retries: int = 5, retry_wait_s: float = 1.0) -> None:
        self.listing, self.selection = listing, selection
        self.cfg = cfg or HubConfig.from_env()
        self.progress = progress
        self.cancel_event = cancel or threading.Event()
        self.margin_bytes, self.retries, self.retry_wait_s = margin_bytes, retries, retry_wait_s
        from huggingface_hub.file_download import repo_folder_name

        self.storage = self.cfg.cache_dir / repo_folder_name(repo_id=listing.repo_id, repo_type="model")
        self.transferred = self.resumed = self._done_before = 0
        self._total = 0
        self._samples: deque[tuple[float, int]] = deque()
        self._last_emit = 0.0
        self._hashers: dict[Path, tuple[hashlib._Hash, int]] = {}

    def cancel(self) -> None:
        self.cancel_event.set()

    # --- the job ----------------------------------------------------------------------------
    def run(self) -> DownloadResult:
        if self.cfg.offline:
            raise offline_error(self.cfg)
        started = time.monotonic()
        plans = [self._plan(f) for f in self.selection.files]
        self._total = sum(p.size or 0 for p in plans)
        self._check_disk(plans)
        cached = 0
        for index, plan in enumerate(plans, 1):
            if plan.cached:
                cached += 1
                self._done_before += plan.size or 0
                self._emit(plan, index, len(plans), plan.size or 0, "cached", force=True)
                continue
            try:
                self._fetch(plan, index, len(plans))
            except KeyboardInterrupt:  # Ctrl-C in the CLI: the same clean stop as a cancel
                raise self._cancelled(plan) from None
            self._done_before += plan.size or 0
        paths = self._publish(plans)
        last = plans[-1]
        self._emit(last, len(plans), len(plans), last.size or 0, "done", force=True)
        return DownloadResult(self.listing.repo_id, self.listing.commit, self.selection.kind, paths,
                              self.transferred, self.resumed, cached, time.monotonic() - started)

    def _plan(self, f: RemoteFile) -> _Plan:
        """Where the file goes, and its size and hash from a HEAD on the pinned commit."""
        from huggingface_hub.file_download import _get_pointer_path

        commit = self.listing.commit
        pointer = Path(_get_pointer_path(str(self.storage), commit, os.path.join(*f.path.split("/"))))
        plan = _Plan(f, pointer, size=f.size)
        if not pointer.exists():  # already in this snapshot: no request needed
            self._head(plan)
        return plan

    def _head(self, plan: _Plan) -> None:
        """Size, hash and the download URL (a signed CDN link for large files, which can expire)."""
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        f = plan.file
        url = hf_hub_url(self.listing.repo_id, f.path, revision=self.listing.commit, endpoint=self.cfg.endpoint)
        with hub_errors(self.cfg, self.listing.repo_id, f.path, self.listing.revision):
            meta = get_hf_file_metadata(url, token=self.cfg.token_arg, timeout=self.cfg.timeout_s,
                                        endpoint=self.cfg.endpoint)
        if not meta.etag:
            raise HubError(f"{self.cfg.endpoint} sent no ETag for {f.path}; check HF_ENDPOINT.")
        plan.url, plan.blob = meta.location, self.storage / "blobs" / meta.etag
        plan.size = meta.size if meta.size is not None else f.size
        if f.sha256 or len(meta.etag) == 64:  # an LFS file: its ETag is the sha256 of the content
            plan.algo, plan.expected = "sha256", f.sha256 or meta.etag
        elif plan.size is not None and len(meta.etag) == 40:  # a git file: its ETag is the git blob id
            plan.algo, plan.expected = "git-sha1", meta.etag

    def _check_disk(self, plans: list[_Plan]) -> None:
        need = sum(max((p.size or 0) - _size(p.partial), 0) for p in plans if not p.cached)
        if not need:
            return
        margin = self.margin_bytes if self.margin_bytes is not None else max(MIN_MARGIN, need // 50)
        where = self.storage
        while not where.exists() and where != where.parent:
            where = where.parent
        free = shutil.disk_usage(where).free
        if free < need + margin:
            raise NotEnoughDiskSpace(
                f"Not enough free disk space to download {self.listing.repo_id}: it needs {human_size(need)} "
                f"plus {human_size(margin)} headroom, and {where} has {human_size(free)} free. Free some "
                "space (`localllm models rm ID` deletes a model) or set HF_HUB_CACHE to a bigger disk.")

    def _fetch(self, plan: _Plan, index: int, count: int) -> None:
        from huggingface_hub.file_download import _chmod_and_move
        from huggingface_hub.file_download import repo_folder_name as folder
        from huggingface_hub.utils import WeakFileLock

        assert plan.blob is not None
        plan.blob.parent.mkdir(parents=True, exist_ok=True)
        lock = self.cfg.cache_dir / ".locks" / folder(repo_id=self.listing.repo_id, repo_type="model")
        lock.mkdir(parents=True, exist_ok=True)
        # huggingface_hub's lock for this blob: a concurrent hf_hub_download of it waits for us
        with WeakFileLock(lock / f"{plan.blob.name}.lock"):
            if plan.blob.exists():
                return
            try:
                self._download(plan, index, count)
            except _NoSpace as exc:
                kept = _size(plan.partial)
                plan.partial.unlink(missing_ok=True)  # free what we took: a full disk breaks everything else
                self._hashers.pop(plan.partial, None)
                raise DiskFull(
                    f"The disk filled up while downloading {plan.file.path} ({human_size(kept)} of "
                    f"{human_size(plan.size or 0)} written; {exc}). The partial file was removed to give the "
                    f"space back. Free at least {human_size(plan.size or 0)} on {self.cfg.cache_dir}, or set "
                    "HF_HUB_CACHE to a bigger disk, then run the command again.") from None
            _chmod_and_move(plan.partial, plan.blob)  # atomic rename on the same disk
            self._hashers.pop(plan.partial, None)

    def _download(self, plan: _Plan, index: int, count: int) -> None:
        """Resume or start the partial file until it is complete and its hash matches."""
        refetched, failures = False, 0
        while True:
            if self.cancel_event.is_set():
                raise self._cancelled(plan)
            have = _size(plan.partial)
            if plan.size is not None and have > plan.size:  # longer than the file can be: not ours
                plan.partial.unlink()
                have = 0
            if have and not self._hashers.get(plan.partial):  # left by an earlier run
                self.resumed += have
                self._emit(plan, index, count, have, "checking", force=True)
            hasher = self._hasher(plan, have)
            self._emit(plan, index, count, have, "downloading", force=True)
            try:
                with hub_errors(self.cfg, self.listing.repo_id, plan.file.path, self.listing.revision):
                    self._stream(plan, have, hasher, index, count)
            except _Retry as exc:
                failures = 0 if _size(plan.partial) > have else failures + 1
                if failures > self.retries:
                    raise self._gave_up(plan, exc) from None
                log.info("download of %s interrupted (%s); resuming", plan.file.path, exc)
                self.cancel_event.wait(min(self.retry_wait_s * 2 ** max(failures - 1, 0), 8.0))  # backoff
                if exc.refresh:
                    self._head(plan)
                continue
            got = self._hashers[plan.partial][0].hexdigest()  # the stream may have restarted from 0
            if not plan.algo or got == plan.expected:
                return
            plan.partial.unlink(missing_ok=True)
            self._hashers.pop(plan.partial, None)
            if refetched:
                raise HashMismatch(
                    f"{plan.file.path} from {self.listing.repo_id} did not match the Hub's {plan.algo} twice "
                    f"(expected {plan.expected[:16]}…, got {got[:16]}…). Nothing was kept. Try again later; if "
                    "it persists, a proxy or mirror between you and the Hub may be altering files.")
            log.warning("%s: %s mismatch (got %s); fetching it again", plan.file.path, plan.algo, got[:16])
            refetched = True

    def _hasher(self, plan: _Plan, have: int):
        kept = self._hashers.get(plan.partial)
        if kept and kept[1] == have:
            return kept[0]
        hasher = hashlib.sha256() if plan.algo != "git-sha1" else hashlib.sha1(b"blob %d\0" % (plan.size or 0))
        if have:  # a partial from an earlier run: hash what is there, then continue
            with plan.partial.open("rb") as fh:
                while block := fh.read(1 << 20):
                    hasher.update(block)
        self._hashers[plan.partial] = (hasher, have)
        return hasher

    def _stream(self, plan: _Plan, start: int, hasher, index: int, count: int) -> None:
        """One GET from `start` to the end, appended to the partial file and fsynced."""
        import httpx2
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        # the token goes to the Hub only, never to the CDN a large file redirects to
        on_hub = _same_origin(plan.url, self.cfg.endpoint)
        headers = build_hf_headers(token=self.cfg.token_arg if on_hub else False)
        headers["Accept-Encoding"] = "identity"  # Range offsets and sizes are of the raw bytes
        if start:
            headers["Range"] = f"bytes={start}-"
        try:
            with get_session().stream("GET", plan.url, headers=headers, timeout=self.cfg.timeout_s) as resp:
                if resp.status_code == 416 and plan.size is not None and start >= plan.size:
                    return  # the partial already holds every byte
                if resp.status_code == 416:
                    raise _Retry(f"the server has only {resp.headers.get('Content-Range', '?')} bytes", True)
                if resp.status_code >= 500 or resp.status_code == 429:
                    raise _Retry(f"HTTP {resp.status_code}")
                if resp.status_code in (401, 403) and not on_hub:  # the CDN link expired, not our access
                    raise _Retry(f"the download link was refused (HTTP {resp.status_code})", refresh=True)
                if resp.status_code >= 400:
                    resp.read()
                    hf_raise_for_status(resp)
                if start and not (resp.status_code == 206 and (resp.headers.get("Content-Range") or "")
                                  .startswith(f"bytes {start}-")):
                    log.info("%s: the server ignored Range; starting over", plan.file.path)
                    self.resumed -= start
                    start = 0
                    hasher = self._hasher(plan, 0)
                    self._hashers[plan.partial] = (hasher, 0)
                self._write_body(plan, resp, start, hasher, index, count)
        except httpx2.TransportError as exc:
            raise _Retry(_transport_reason(exc)) from None
        got = _size(plan.partial)
        if plan.size is not None and got < plan.size:
            raise _Retry(f"the body ended at {got} of {plan.size} bytes", short=True)

    def _write_body(self, plan: _Plan, resp, start: int, hasher, index: int, count: int) -> None:
        written = start
        try:
            with open(plan.partial, "r+b" if plan.partial.exists() else "wb") as fh:
                fh.seek(start)
                fh.truncate()
                try:
                    for chunk in resp.iter_bytes():
                        if self.cancel_event.is_set():
                            raise self._cancelled(plan)
                        fh.write(chunk)
                        hasher.update(chunk)
                        written += len(chunk)
                        self._hashers[plan.partial] = (hasher, written)
                        self.transferred += len(chunk)
                        self._emit(plan, index, count, written, "downloading")
                finally:
                    fh.flush()
                    os.fsync(fh.fileno())  # what the next run resumes from is really on disk
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _NoSpace(os.strerror(exc.errno)) from None
            raise

    def _publish(self, plans: list[_Plan]) -> list[Path]:
        """Snapshot symlinks, then the ref: the files appear together, once all are complete."""
        from huggingface_hub.file_download import _cache_commit_hash_for_specific_revision, _create_symlink

        for plan in plans:
            if not plan.pointer.exists():
                assert plan.blob is not None
                plan.pointer.parent.mkdir(parents=True, exist_ok=True)
                _create_symlink(str(plan.blob), str(plan.pointer), new_blob=False)
        _cache_commit_hash_for_specific_revision(str(self.storage), self.listing.revision, self.listing.commit)
        return [p.pointer for p in plans]

    # --- messages and progress --------------------------------------------------------------
    def _cancelled(self, plan: _Plan) -> DownloadCancelled:
        kept = _size(plan.partial) if plan.blob is not None else 0
        return DownloadCancelled(
            f"Download cancelled: {human_size(kept)} of {plan.file.path} ({human_size(plan.size or 0)}) are "
            "kept; run the same command again to resume from there.")

    def _gave_up(self, plan: _Plan, exc: _Retry) -> HubError:
        kept, size = _size(plan.partial), plan.size or 0
        where = f"{human_size(kept)} of {human_size(size)} are kept in the HF cache"
        if exc.short:
            return TruncatedDownload(
                f"The server sent fewer bytes than announced for {plan.file.path} ({exc}). {where}; run the "
                "command again later to resume.")
        return DownloadInterrupted(
            f"The connection kept failing while downloading {plan.file.path} ({exc}; {self.retries + 1} "
            f"attempts without progress). {where}; run the same command again to resume from there.")

    def _emit(self, plan: _Plan, index: int, count: int, file_done: int, phase: str,
              force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if not force and now - self._last_emit < 0.1:
            return
        self._last_emit = now
        self._samples.append((now, self.transferred))
        while len(self._samples) > 2 and now - self._samples[0][0] > 5.0:
            self._samples.popleft()
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        rate = (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
        done = self._done_before + (file_done if phase in ("downloading", "checking") else 0)
        if phase == "done":
            done = self._total
        eta = (self._total - done) / rate if rate > 0 else None
        self.progress(Progress(plan.file.path, index, count, file_done, plan.size, done, self._total, rate,
                               eta, phase))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _transport_reason(exc: BaseException) -> str:
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "timed out" in text or "timeout" in type(exc).__name__.lower():
        return "timed out"
    if "peer closed" in text or "incomplete" in text or "reset" in text or "closed" in text:
        return "connection dropped"
    return type(exc).__name__
