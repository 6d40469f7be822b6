"""Resume and verify: one file's bytes fetched into its partial blob in the HF cache, appended with
Range requests after a dropped connection or a restart, retried with backoff, fsynced as written, and
hashed against the Hub's sha256 or git blob id. DownloadJob (localllm.hub.download) mixes it in."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from localllm.hub.repos import HubConfig, HubError, RemoteFile, RepoListing, hub_errors, human_size

log = logging.getLogger(__name__)


class DownloadInterrupted(HubError):
    """The connection kept failing; the partial file is kept for the next run."""


class TruncatedDownload(HubError):
    """The server ended the body before the announced size; the partial file is kept."""


class HashMismatch(HubError):
    """The bytes did not match the Hub's hash twice; nothing is kept."""


class DownloadCancelled(HubError):
    """Cancelled by the user; the partial file is kept for the next run."""


@dataclass
class FilePlan:
    """One file of a job: where it goes in the cache, and its size, link and hash from the Hub."""

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


class Retry(Exception):
    """A failure worth another attempt with Range: transport error, short body, 5xx."""

    def __init__(self, reason: str, short: bool = False, refresh: bool = False) -> None:
        super().__init__(reason)
        self.short = short  # the body ended early: a truncated file, not a broken connection
        self.refresh = refresh  # ask the Hub for a new download link first


class NoSpace(Exception):
    pass


def same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


class ResumableTransfer:
    """The transfer half of a DownloadJob: what it needs of the job is declared here."""

    cfg: HubConfig
    listing: RepoListing
    cancel_event: threading.Event
    retries: int
    retry_wait_s: float
    transferred: int
    resumed: int
    _hashers: dict[Path, tuple[Any, int]]
    _head: Callable[[FilePlan], None]  # a new size, hash and download link from the Hub
    _emit: Callable[..., None]  # progress

    def _download(self, plan: FilePlan, index: int, count: int) -> None:
        """Resume or start the partial file until it is complete and its hash matches."""
        refetched, failures = False, 0
        while True:
            if self.cancel_event.is_set():
                raise self._cancelled(plan)
            have = size_on_disk(plan.partial)
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
            except Retry as exc:
                failures = 0 if size_on_disk(plan.partial) > have else failures + 1
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

    def _hasher(self, plan: FilePlan, have: int):
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

    def _stream(self, plan: FilePlan, start: int, hasher, index: int, count: int) -> None:
        """One GET from `start` to the end, appended to the partial file and fsynced."""
        # the token goes to the Hub only, never to the CDN a large file redirects to
        on_hub = same_origin(plan.url, self.cfg.endpoint)
        headers = build_hf_headers(token=self.cfg.token_arg if on_hub else False)
        headers["Accept-Encoding"] = "identity"  # Range offsets and sizes are of the raw bytes
        if start:
            headers["Range"] = f"bytes={start}-"
        try:
            with get_session().stream("GET", plan.url, headers=headers, timeout=self.cfg.timeout_s) as resp:
                if resp.status_code == 416 and plan.size is not None and start >= plan.size:
                    return  # the partial already holds every byte
                if resp.status_code == 416:
                    raise Retry(f"the server has only {resp.headers.get('Content-Range', '?')} bytes", True)
                if resp.status_code >= 500 or resp.status_code == 429:
                    raise Retry(f"HTTP {resp.status_code}")
                if resp.status_code in (401, 403) and not on_hub:  # the CDN link expired, not our access
                    raise Retry(f"the download link was refused (HTTP {resp.status_code})", refresh=True)
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
            raise Retry(transport_reason(exc)) from None
        got = size_on_disk(plan.partial)
        if plan.size is not None and got < plan.size:
            raise Retry(f"the body ended at {got} of {plan.size} bytes", short=True)

    def _write_body(self, plan: FilePlan, resp, start: int, hasher, index: int, count: int) -> None:
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
                raise NoSpace(os.strerror(exc.errno)) from None
            raise
    def _cancelled(self, plan: FilePlan) -> DownloadCancelled:
        kept = size_on_disk(plan.partial) if plan.blob is not None else 0
        return DownloadCancelled(
            f"Download cancelled: {human_size(kept)} of {plan.file.path} ({human_size(plan.size or 0)}) are "
            "kept; run the same command again to resume from there.")

    def _gave_up(self, plan: FilePlan, exc: Retry) -> HubError:
        kept, size = size_on_disk(plan.partial), plan.size or 0
        where = f"{human_size(kept)} of {human_size(size)} are kept in the HF cache"
        if exc.short:
            return TruncatedDownload(
                f"The server sent fewer bytes than announced for {plan.file.path} ({exc}). {where}; run the "
                "command again later to resume.")
        return DownloadInterrupted(
            f"The connection kept failing while downloading {plan.file.path} ({exc}; {self.retries + 1} "
            f"attempts without progress). {where}; run the same command again to resume from there.")

def size_on_disk(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def transport_reason(exc: BaseException) -> str:
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "timed out" in text or "timeout" in type(exc).__name__.lower():
        return "timed out"
    if "peer closed" in text or "incomplete" in text or "reset" in text or "closed" in text:
        return "connection dropped"
    return type(exc).__name__
