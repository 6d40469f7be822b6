"""localllm.machine.procfs: RAM, swap and cores from /proc and /sys, read as psutil reads them, and
the hub cache found as huggingface_hub finds it, without importing either."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from localllm.config.paths import hf_hub_cache
from localllm.machine import cpu as cpu_probe
from localllm.machine import hardware, procfs

linux_only = pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="reads Linux's /proc")

MEMINFO = """MemTotal:       24576000 kB
MemFree:         1000000 kB
MemAvailable:   20480000 kB
Buffers:          123456 kB
SwapTotal:       2097148 kB
SwapFree:        1048576 kB
HugePages_Total:       0
"""


@linux_only
def test_this_machine_reads_as_psutil_reads_it() -> None:
    import psutil

    total, available, swap_total, swap_free = procfs.memory() or (0, 0, 0, 0)
    vm, sw = psutil.virtual_memory(), psutil.swap_memory()
    assert (total, swap_total) == (vm.total, sw.total)
    assert abs(available - vm.available) <= 0.05 * vm.total  # read a moment apart: other processes move it
    assert abs(swap_free - sw.free) <= 0.05 * max(sw.total, 1)
    assert procfs.physical_cores() == psutil.cpu_count(logical=False)
    probed = cpu_probe.probe_cpu()
    assert (probed.physical_cores, probed.logical_cores) == (psutil.cpu_count(logical=False), psutil.cpu_count())


def test_meminfo_fields_are_bytes(tmp_path) -> None:
    path = tmp_path / "meminfo"
    path.write_text(MEMINFO)
    assert procfs.memory(str(path)) == (24576000 * 1024, 20480000 * 1024, 2097148 * 1024, 1048576 * 1024)
    assert procfs.meminfo(str(path))["HugePages_Total"] == 0  # a count, not kB


@pytest.mark.parametrize("text", ["", "garbage\n", MEMINFO.replace("MemAvailable", "MemAvail")],
                         ids=["empty", "garbage", "kernel-before-3.14"])
def test_a_meminfo_that_lacks_a_field_is_none_and_psutil_answers(tmp_path, monkeypatch, text) -> None:
    path = tmp_path / "meminfo"
    path.write_text(text)
    assert procfs.memory(str(path)) is None
    assert procfs.memory(str(tmp_path / "missing")) is None
    import psutil

    read = procfs.memory
    monkeypatch.setattr(procfs, "memory", lambda: read(str(path)))
    mem = hardware.probe_memory()  # psutil's figures then
    assert mem.total_bytes == psutil.virtual_memory().total or mem.limit_note
    assert 0 < mem.available_bytes <= mem.total_bytes


def _cpu(root: Path, index: int, siblings: str, leaf: str = "core_cpus_list") -> None:
    topology = root / f"cpu{index}" / "topology"
    topology.mkdir(parents=True)
    (topology / leaf).write_text(siblings + "\n")


def test_smt_siblings_count_as_one_core(tmp_path) -> None:
    for index, siblings in enumerate(["0,2", "1,3", "0,2", "1,3"]):
        _cpu(tmp_path, index, siblings)
    (tmp_path / "cpufreq").mkdir()  # not a CPU
    (tmp_path / "cpuidle").mkdir()
    assert procfs.physical_cores(str(tmp_path)) == 2


def test_an_older_kernel_names_the_siblings_file_otherwise(tmp_path) -> None:
    for index in range(3):
        _cpu(tmp_path, index, str(index), leaf="thread_siblings_list")
    assert procfs.physical_cores(str(tmp_path)) == 3


def test_no_topology_is_none(tmp_path) -> None:
    assert procfs.physical_cores(str(tmp_path / "missing")) is None
    (tmp_path / "cpu0").mkdir()
    assert procfs.physical_cores(str(tmp_path)) is None


@pytest.mark.parametrize("env", [
    {},
    {"HF_HOME": "{tmp}/hfhome"},
    {"XDG_CACHE_HOME": "{tmp}/xdg"},
    {"HF_HOME": "{tmp}/hfhome", "HUGGINGFACE_HUB_CACHE": "{tmp}/legacy"},
    {"HF_HUB_CACHE": "{tmp}/hub", "HUGGINGFACE_HUB_CACHE": "{tmp}/legacy"},
], ids=["default", "hf-home", "xdg", "legacy", "hf-hub-cache"])
def test_the_hub_cache_is_where_huggingface_hub_puts_it(tmp_path, env) -> None:
    names = ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME")
    child_env = {k: v for k, v in os.environ.items() if k not in names}
    child_env.update({k: v.format(tmp=tmp_path) for k, v in env.items()})
    code = ("from huggingface_hub import constants\nfrom localllm.config.paths import hf_hub_cache\n"
            "print(constants.HF_HUB_CACHE)\nprint(hf_hub_cache())")
    out = subprocess.run([sys.executable, "-c", code], env=child_env, capture_output=True, text=True, check=True)
    theirs, ours = out.stdout.splitlines()
    assert Path(ours) == Path(theirs)


def test_the_hub_cache_follows_the_environment_at_call_time(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "a"))
    assert hf_hub_cache() == tmp_path / "a" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "b"))
    assert hf_hub_cache() == tmp_path / "b" / "hub"


GiB = 2**30


def _cgroup_tree(tmp_path: Path, self_cgroup: str, files: dict[str, str]) -> tuple[str, str]:
    """A /proc/self/cgroup and a /sys/fs/cgroup of our own: {"memory/a/memory.limit_in_bytes": "..."}."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "self_cgroup").write_text(self_cgroup)
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    root.mkdir(exist_ok=True)
    return str(tmp_path / "self_cgroup"), str(root)


def test_a_v2_container_limit_less_its_reclaimable_page_cache(tmp_path) -> None:
    paths = _cgroup_tree(tmp_path, "0::/\n", {
        "memory.max": f"{8 * GiB}\n", "memory.current": f"{3 * GiB}\n",
        "memory.stat": f"anon {GiB}\nfile {2 * GiB}\ninactive_file {GiB}\nactive_file {GiB}\n"})
    assert procfs.cgroup_memory(*paths) == (8 * GiB, 2 * GiB)


def test_a_v2_limit_set_on_an_ancestor_binds_the_process(tmp_path) -> None:
    """A desktop's systemd slice (MemoryMax=) or a nested container: the tightest limit on the way up."""
    paths = _cgroup_tree(tmp_path, "0::/user.slice/app.scope\n", {
        "user.slice/memory.max": f"{4 * GiB}\n", "user.slice/memory.current": f"{GiB}\n",
        "user.slice/app.scope/memory.max": "max\n", "user.slice/app.scope/memory.current": "5\n"})
    assert procfs.cgroup_memory(*paths) == (4 * GiB, GiB)


def test_v1_as_on_a_docker_host_of_before_cgroup_v2(tmp_path) -> None:
    """This session's own host had this shape: memory:/process_api/<id>, no limit anywhere."""
    unlimited = "9223372036854771712\n"
    files = {"memory/memory.limit_in_bytes": unlimited, "memory/process_api/memory.limit_in_bytes": unlimited,
             "memory/process_api/d2048/memory.limit_in_bytes": unlimited,
             "memory/process_api/d2048/memory.usage_in_bytes": f"{GiB}\n"}
    lines = "9:name=systemd:/\n4:memory:/process_api/d2048\n3:cpuset:/\n0::/\n"
    assert procfs.cgroup_memory(*_cgroup_tree(tmp_path / "free", lines, files)) is None
    files["memory/process_api/d2048/memory.limit_in_bytes"] = f"{6 * GiB}\n"
    files["memory/process_api/d2048/memory.stat"] = f"cache 5\ntotal_inactive_file {GiB // 4}\n"
    got = procfs.cgroup_memory(*_cgroup_tree(tmp_path / "limited", lines, files))
    assert got == (6 * GiB, GiB - GiB // 4)
    combined = lines.replace("4:memory:", "4:cpuset,memory:")  # controllers mounted together
    assert procfs.cgroup_memory(*_cgroup_tree(tmp_path / "combined", combined, files)) == got


def test_a_container_that_sees_only_its_own_cgroup_reads_the_root(tmp_path) -> None:
    """Without a cgroup namespace the listed path (/docker/<id>) is not under the mount: root it is."""
    paths = _cgroup_tree(tmp_path, "4:memory:/docker/abc\n", {
        "memory/memory.limit_in_bytes": f"{2 * GiB}\n", "memory/memory.usage_in_bytes": f"{GiB}\n"})
    assert procfs.cgroup_memory(*paths) == (2 * GiB, GiB)
    assert procfs.cgroup_memory(str(tmp_path / "missing"), str(tmp_path / "nothing")) is None


def test_the_machine_card_shows_the_container_not_the_host(monkeypatch) -> None:
    host = procfs.memory()
    if host is None:
        pytest.skip("reads Linux's /proc")
    monkeypatch.setattr(procfs, "cgroup_memory", lambda: (2 * GiB, GiB + GiB // 2))
    mem = hardware.probe_memory()
    assert mem.total_bytes == 2 * GiB and mem.available_bytes <= GiB // 2
    assert mem.limit_note == "container (cgroup) memory limit 2.0 GiB"
