"""Download jobs against the loopback Hub: the cache layout other tools read, resume after drops,
kills and restarts, hash checks, short bodies, full disks and cancel."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import namedtuple
from pathlib import Path

import pytest

from localllm.hub import download, transfer
from localllm.hub.download import DiskFull, DownloadJob, NotEnoughDiskSpace
from localllm.hub.repos import HubUnreachable, list_repo, select_files
from localllm.hub.transfer import DownloadCancelled, DownloadInterrupted, HashMismatch, TruncatedDownload
from localllm.models.gguf_check import inspect_gguf
from tests.hubserver import checkpoint_files, gguf_data, hub_config, hub_server  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
REPO, FILE = "acme/Tiny-GGUF", "tiny-Q4_K_M.gguf"


@pytest.fixture
def hub(hub_server, gguf_data, tmp_path):  # noqa: F811
    hub_server.add_repo(REPO, {"README.md": b"# tiny", FILE: gguf_data, "tiny-Q8_0.gguf": gguf_data[::-1]})
    hub_server.add_repo("acme/tiny-ckpt", checkpoint_files())
    return hub_server, hub_config(hub_server, tmp_path / "hub")


def job(cfg, repo=REPO, quant="Q4_K_M", **kw) -> DownloadJob:
    listing = list_repo(repo, cfg=cfg)
    return DownloadJob(listing, select_files(listing, quant=quant if repo == REPO else None), cfg,
                       retry_wait_s=0, **kw)


def blobs(cfg, repo=REPO) -> Path:
    return cfg.cache_dir / f"models--{repo.replace('/', '--')}" / "blobs"


def sha(server, path=FILE, repo=REPO) -> str:
    import hashlib

    return hashlib.sha256(server.repos[repo].files[path]).hexdigest()


def test_download_lands_in_the_hf_cache_where_huggingface_hub_finds_it(hub, gguf_data) -> None:  # noqa: F811
    from huggingface_hub import hf_hub_download, scan_cache_dir, try_to_load_from_cache

    server, cfg = hub
    seen = []
    result = job(cfg, progress=seen.append).run()
    path = result.paths[0]
    assert result.model_path == path and path.read_bytes() == gguf_data
    assert result.downloaded == len(gguf_data) and result.resumed == 0
    assert hf_hub_download(REPO, FILE, cache_dir=cfg.cache_dir, local_files_only=True) == str(path)
    assert try_to_load_from_cache(REPO, FILE, cache_dir=cfg.cache_dir) == str(path)
    assert path.is_symlink() and Path(os.path.realpath(path)).name == sha(server)  # blobs/<sha256>
    repo = next(iter(scan_cache_dir(cfg.cache_dir).repos))
    assert repo.repo_id == REPO and {r.refs for r in repo.revisions} == {frozenset({"main"})}
    assert inspect_gguf(path).quant == "Q4_K_M"
    assert not list(blobs(cfg).glob("*.incomplete"))
    assert [p.done for p in seen] == sorted(p.done for p in seen) and seen[-1].phase == "done"
    assert seen[-1].done == seen[-1].total == len(gguf_data) and seen[-1].fraction == 1.0
    again = job(cfg).run()  # a second pull finds it complete and sends no GET
    assert again.cached == 1 and again.downloaded == 0 and server.ranges(FILE) == [None]


def test_checkpoint_appears_only_once_every_file_is_complete(hub) -> None:
    from localllm.models.library import cache_entries

    server, cfg = hub
    server.fault("acme/tiny-ckpt", "model-00002-of-00002.safetensors", status=503)
    with pytest.raises(DownloadInterrupted, match=r"HTTP 503; 6 attempts without progress"):
        job(cfg, repo="acme/tiny-ckpt").run()
    assert not (cfg.cache_dir / "models--acme--tiny-ckpt" / "snapshots").exists()
    assert cache_entries(cfg.cache_dir) == []  # the finished files are blobs nobody links to yet
    config_gets = server.ranges("config.json")
    del server.faults[("acme/tiny-ckpt", "model-00002-of-00002.safetensors")]
    result = job(cfg, repo="acme/tiny-ckpt").run()
    assert server.ranges("config.json") == config_gets  # complete blobs are not fetched again
    assert sorted(p.name for p in result.model_path.iterdir()) == sorted(p.path for p in job(
        cfg, repo="acme/tiny-ckpt").selection.files)
    assert [e.format for e in cache_entries(cfg.cache_dir)] == ["safetensors"]


def test_interrupted_checkpoint_pull_is_reported_and_can_be_dropped(hub) -> None:
    from localllm.models import library

    server, cfg = hub
    server.fault("acme/tiny-ckpt", "model-00002-of-00002.safetensors", drop_at=8000, status=503, status_times=1)
    with pytest.raises(DownloadInterrupted):
        job(cfg, repo="acme/tiny-ckpt", retries=0).run()
    left = library.partial_downloads(cfg.cache_dir)
    assert [repo for repo, _ in left] == ["acme/tiny-ckpt"] and left[0][1] > 16_000  # shard 1 and small files
    removed = library.remove("acme/tiny-ckpt", cache_dir=cfg.cache_dir)
    assert removed.freed_bytes == left[0][1] and library.partial_downloads(cfg.cache_dir) == []


def test_dropped_connection_resumes_with_range_from_the_partial_size(hub, gguf_data) -> None:  # noqa: F811
    server, cfg = hub
    server.fault(REPO, FILE, drop_at=500_000)
    result = job(cfg).run()
    assert server.ranges(FILE) == [None, "bytes=500000-"]
    assert server.sent(FILE) == len(gguf_data)  # not one byte fetched twice
    assert result.paths[0].read_bytes() == gguf_data


def test_expired_cdn_link_is_renewed_and_the_download_resumes(hub, gguf_data) -> None:  # noqa: F811
    server, cfg = hub
    server.fault(REPO, FILE, drop_at=500_000, status=403, status_times=0)
    fault, armed = server.faults[(REPO, FILE)], []

    def expire_once(p) -> None:  # the link expires while the connection is down
        if p.file_done >= 500_000 and not armed:
            armed.append(fault)
            fault.status_times = 1

    result = job(cfg, progress=expire_once).run()
    assert result.paths[0].read_bytes() == gguf_data
    assert server.ranges(FILE) == [None, "bytes=500000-", "bytes=500000-"]  # 403, new HEAD, resumed
    assert [r.method for r in server.requests if "/resolve/" in r.path] == ["HEAD", "HEAD"]


def test_partial_left_by_a_killed_run_is_resumed(hub, gguf_data) -> None:  # noqa: F811
    server, cfg = hub
    blobs(cfg).mkdir(parents=True)
    (blobs(cfg) / f"{sha(server)}.incomplete").write_bytes(gguf_data[:400_000])
    result = job(cfg).run()
    assert server.ranges(FILE) == ["bytes=400000-"]
    assert server.sent(FILE) == len(gguf_data) - 400_000
    assert result.resumed == 400_000 and result.paths[0].read_bytes() == gguf_data


def test_killed_pull_process_then_rerun_transfers_only_the_rest(hub, gguf_data, tmp_path) -> None:  # noqa: F811
    server, cfg = hub
    server.fault(REPO, FILE, delay_s=0.02)  # ~800 kB/s: time to kill it halfway
    env = {**os.environ, "HF_ENDPOINT": server.url, "HF_HUB_CACHE": str(cfg.cache_dir), "HF_TOKEN": "",
           "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1", "LOCALLLM_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "localllm", "pull", REPO, "--quant", "Q4_K_M"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = blobs(cfg) / f"{sha(server)}.incomplete"
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and transfer.size_on_disk(partial) < 300_000:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = partial.stat().st_size
    assert 0 < kept < len(gguf_data)
    server.faults.clear()
    mark = len(server.requests)
    result = job(cfg).run()
    assert server.ranges(FILE, mark) == [f"bytes={kept}-"]
    assert server.sent(FILE, mark) == len(gguf_data) - kept  # counted on the server side
    assert result.paths[0].read_bytes() == gguf_data and not partial.exists()


def test_hash_mismatch_is_fetched_again_once(hub, gguf_data) -> None:  # noqa: F811
    server, cfg = hub
    server.fault(REPO, FILE, corrupt_times=1)
    assert job(cfg).run().paths[0].read_bytes() == gguf_data
    assert server.ranges(FILE) == [None, None]  # the whole file again, not a resume


def test_hash_mismatch_twice_keeps_nothing(hub) -> None:
    server, cfg = hub
    server.fault(REPO, FILE, corrupt_times=2)
    with pytest.raises(HashMismatch, match=r"did not match the Hub's sha256 twice .* Nothing was kept"):
        job(cfg).run()
    assert not list(blobs(cfg).iterdir()) and not (blobs(cfg).parent / "snapshots").exists()


def test_corrupt_partial_from_an_earlier_run_is_replaced(hub, gguf_data) -> None:  # noqa: F811
    server, cfg = hub
    blobs(cfg).mkdir(parents=True)
    (blobs(cfg) / f"{sha(server)}.incomplete").write_bytes(b"\0" * 400_000)
    assert job(cfg).run().paths[0].read_bytes() == gguf_data
    assert server.ranges(FILE) == ["bytes=400000-", None]


def test_short_body_is_reported_and_kept_for_later(hub) -> None:
    server, cfg = hub
    server.fault(REPO, FILE, truncate_to=300_000)
    with pytest.raises(TruncatedDownload, match=r"fewer bytes than announced for tiny-Q4_K_M.gguf") as err:
        job(cfg, retries=2).run()
    assert "300.0 kB of 1.2 MB are kept" in str(err.value)
    assert (blobs(cfg) / f"{sha(server)}.incomplete").stat().st_size == 300_000


def test_hub_gone_after_the_listing(hub) -> None:
    from huggingface_hub.utils import close_session

    server, cfg = hub
    ready = job(cfg)
    server.__exit__()
    # the pooled keep-alive connection still answers the HEAD; the new one to the CDN is refused
    with pytest.raises(DownloadInterrupted, match=r"\(connection refused; 6 attempts without progress\)"):
        ready.run()
    close_session()  # no pooled connection left: the first request is refused
    with pytest.raises(HubUnreachable, match=r"Cannot reach the Hub at .* \(connection refused\)"):
        ready.run()


def test_cancel_mid_file_keeps_a_resumable_partial(hub, gguf_data) -> None:  # noqa: F811
    server, cfg = hub
    server.fault(REPO, FILE, delay_s=0.005)
    stop = threading.Event()
    with pytest.raises(DownloadCancelled, match=r"Download cancelled: .* are kept; run the same command"):
        job(cfg, cancel=stop, progress=lambda p: p.file_done > 200_000 and stop.set()).run()
    kept = (blobs(cfg) / f"{sha(server)}.incomplete").stat().st_size
    assert 200_000 < kept < len(gguf_data)
    assert not (blobs(cfg).parent / "snapshots").exists()
    mark = len(server.requests)
    assert job(cfg).run().paths[0].read_bytes() == gguf_data
    assert server.ranges(FILE, mark) == [f"bytes={kept}-"] and server.sent(FILE, mark) == len(gguf_data) - kept


def test_not_enough_free_space_is_refused_before_any_byte(hub, monkeypatch) -> None:
    server, cfg = hub
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(download.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 500_000, 500_000))
    with pytest.raises(NotEnoughDiskSpace, match=r"needs 1.2 MB plus 67.1 MB headroom, and .* has 500.0 kB free"):
        job(cfg).run()
    assert server.ranges(FILE) == []


class _QuotaFile:
    """A file whose writes fail with ENOSPC past a quota: a full disk, enforced at the write layer."""

    def __init__(self, fh, quota: int) -> None:
        self.fh, self.quota = fh, quota

    def write(self, data: bytes) -> int:
        if self.fh.tell() + len(data) > self.quota:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.fh.close()


def test_disk_full_while_writing_removes_the_partial(hub, monkeypatch) -> None:
    server, cfg = hub
    monkeypatch.setattr(transfer, "open", lambda *a, **kw: _QuotaFile(open(*a, **kw), 300_000), raising=False)
    with pytest.raises(DiskFull, match=r"disk filled up while downloading tiny-Q4_K_M.gguf .*partial file was "
                                       r"removed to give the space back"):
        job(cfg).run()
    assert not list(blobs(cfg).iterdir())


TMPFS_SCRIPT = textwrap.dedent("""
    import json, os, shutil, sys
    from pathlib import Path
    from localllm.hub.download import DiskFull, DownloadJob, NotEnoughDiskSpace
    from localllm.hub.repos import HubConfig, list_repo, select_files

    endpoint, mnt = sys.argv[1], Path(sys.argv[2])
    if os.system(f"mount -t tmpfs -o size=2m tmpfs {mnt}") or shutil.disk_usage(mnt).total > 4 << 20:
        print(json.dumps({"mounted": False}))  # never fill a real disk
        sys.exit(0)
    cfg = HubConfig(endpoint=endpoint, cache_dir=mnt / "hub")
    listing = list_repo("acme/Tiny-GGUF", cfg=cfg)
    sel = select_files(listing, quant="Q4_K_M")
    out = {"mounted": True, "free0": shutil.disk_usage(mnt).free}
    ballast = mnt / "ballast"
    ballast.write_bytes(b"x" * 1_500_000)
    try:
        DownloadJob(listing, sel, cfg, margin_bytes=0).run()
    except NotEnoughDiskSpace as exc:
        out["before"] = str(exc)
    ballast.unlink()

    def fill(p):  # another program fills the disk once the download is under way
        if p.phase == "downloading" and p.file_done and not ballast.exists():
            ballast.write_bytes(b"x" * (shutil.disk_usage(mnt).free - 200_000))
    try:
        DownloadJob(listing, sel, cfg, margin_bytes=0, progress=fill, retry_wait_s=0).run()
    except DiskFull as exc:
        out["during"] = str(exc)
    out["left"] = sorted(p.name for p in (cfg.cache_dir / "models--acme--Tiny-GGUF" / "blobs").iterdir())
    out["free_after"] = shutil.disk_usage(mnt).free + ballast.stat().st_size
    ballast.unlink()
    out["path"] = str(DownloadJob(listing, sel, cfg, margin_bytes=0).run().paths[0])
    out["size"] = Path(out["path"]).stat().st_size
    print(json.dumps(out))
""")


def test_full_disk_on_a_real_small_filesystem(hub, gguf_data, tmp_path) -> None:  # noqa: F811
    """A 2 MiB tmpfs in a private mount namespace: full before (precheck) and during (ENOSPC)."""
    server, _ = hub
    unshare = shutil.which("unshare")
    if not unshare or subprocess.run([unshare, "-rm", "true"], capture_output=True).returncode:
        pytest.skip("cannot create a mount namespace here; test_disk_full_while_writing covers ENOSPC")
    server.fault(REPO, FILE, delay_s=0.005)  # slow enough for progress reports mid-file
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run([unshare, "-rm", sys.executable, "-c", TMPFS_SCRIPT, server.url, str(mnt)],
                          capture_output=True, text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if not out["mounted"]:
        pytest.skip("tmpfs mounts are not permitted here")
    assert "Not enough free disk space" in out["before"]
    assert "disk filled up while downloading" in out["during"] and "No space left" in out["during"]
    assert out["left"] == []  # the partial file is gone
    assert out["free_after"] >= out["free0"] - 64 * 1024  # the space came back (tmpfs rounds to pages)
    assert out["size"] == len(gguf_data)


# --- the CLI ------------------------------------------------------------------------------------

@pytest.fixture
def cli_env(hub, monkeypatch, tmp_path):
    import huggingface_hub

    server, cfg = hub
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(cfg.cache_dir))
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: os.environ.get("HF_TOKEN") or None)
    return server, cfg


def test_cli_pull_prints_progress_then_the_path(cli_env, capsys, gguf_data) -> None:  # noqa: F811
    from localllm.cli.main import main

    server, cfg = cli_env
    assert main(["pull", REPO, "--quant", "q4_k_m"]) == 0
    out, err = capsys.readouterr()
    path = Path(out.strip())
    assert path.read_bytes() == gguf_data
    assert f"Pulling {REPO} @ {server.repos[REPO].commit[:12]}: 1 file(s), 1.2 MB" in err
    assert "[1/1] tiny-Q4_K_M.gguf  1.2 MB / 1.2 MB  100%" in err and "Done in 0:0" in err
    assert main(["pull", REPO, "--quant", "Q4_K_M"]) == 0
    assert "1 file(s) were already in the cache" in capsys.readouterr().err
    assert main(["pull", REPO, "--list"]) == 0
    listing = capsys.readouterr().out
    assert "1.2 MB  tiny-Q4_K_M.gguf  [Q4_K_M]" in listing and "GGUF quants: " in listing


def test_cli_pull_errors_are_one_clear_line(cli_env, capsys, monkeypatch) -> None:
    from localllm.cli.main import main

    server, _ = cli_env
    server.repos[REPO].gated = True
    secret = "hf_cliSecretToken42"
    monkeypatch.setenv("HF_TOKEN", secret)
    assert main(["pull", REPO]) == 1
    out, err = capsys.readouterr()
    assert err.splitlines()[-1].startswith("error: acme/Tiny-GGUF refused the token that was sent (HTTP 403)")
    assert "hf auth login" in err and f"{server.url}/{REPO}" in err and secret not in out + err
    monkeypatch.delenv("HF_TOKEN")
    assert main(["pull", "acme/missing"]) == 1
    assert "There is no model repo acme/missing" in capsys.readouterr().err
