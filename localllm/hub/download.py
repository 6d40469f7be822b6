"""Download jobs into the standard HF cache that survive real networks: progress, cancel, resume
across restarts, free-disk checks before and during, hash checks; nothing is visible until complete.

huggingface_hub resumes only within one call and deletes its partial file on failure, and reads in
10 MB chunks (coarse progress, slow cancel), so the transfer loop is ours (localllm.hub.transfer: resume
and verify); the cache layout (blobs, snapshot symlinks, refs, locks) is huggingface_hub's own helpers,
so transformers and `hf` see the files."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
from localllm.hub.transfer import FilePlan, NoSpace, ResumableTransfer, size_on_disk

MIN_MARGIN = 64 * 1024 * 1024  # headroom left free on the disk; 2% of the download when that is more


class NotEnoughDiskSpace(HubError):
    """The free-space check before starting failed."""


class DiskFull(HubError):
    """The disk filled up while writing (ENOSPC); the partial file was removed."""


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

class DownloadJob(ResumableTransfer):
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

    def _plan(self, f: RemoteFile) -> FilePlan:
        """Where the file goes, and its size and hash from a HEAD on the pinned commit."""
        from huggingface_hub.file_download import _get_pointer_path

        commit = self.listing.commit
        pointer = Path(_get_pointer_path(str(self.storage), commit, os.path.join(*f.path.split("/"))))
        plan = FilePlan(f, pointer, size=f.size)
        if not pointer.exists():  # already in this snapshot: no request needed
            self._head(plan)
        return plan

    def _head(self, plan: FilePlan) -> None:
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

    def _check_disk(self, plans: list[FilePlan]) -> None:
        need = sum(max((p.size or 0) - size_on_disk(p.partial), 0) for p in plans if not p.cached)
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

    def _fetch(self, plan: FilePlan, index: int, count: int) -> None:
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
            except NoSpace as exc:
                kept = size_on_disk(plan.partial)
                plan.partial.unlink(missing_ok=True)  # free what we took: a full disk breaks everything else
                self._hashers.pop(plan.partial, None)
                raise DiskFull(
                    f"The disk filled up while downloading {plan.file.path} ({human_size(kept)} of "
                    f"{human_size(plan.size or 0)} written; {exc}). The partial file was removed to give the "
                    f"space back. Free at least {human_size(plan.size or 0)} on {self.cfg.cache_dir}, or set "
                    "HF_HUB_CACHE to a bigger disk, then run the command again.") from None
            _chmod_and_move(plan.partial, plan.blob)  # atomic rename on the same disk
            self._hashers.pop(plan.partial, None)
    def _publish(self, plans: list[FilePlan]) -> list[Path]:
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
    def _emit(self, plan: FilePlan, index: int, count: int, file_done: int, phase: str,
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

