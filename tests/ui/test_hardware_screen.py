"""The hardware + recommendations screen on fixed fake machines (a 24 GB GPU, a GPU-less 8 GiB box, one
where nothing fits) and on this machine, driven by a pilot through a minimal host app."""

from __future__ import annotations

import io

import psutil
import pytest
from rich.console import Console
from textual.app import App
from textual.widgets import Checkbox, DataTable, Input, Static

from localllm.machine import bandwidth
from localllm.machine.hardware import HardwareInfo
from localllm.machine.recommend import Wishes, recommend
from localllm.models import catalog
from localllm.ui.screens.hardware_screen import HardwareScreen, download_target, pull_command
from tests.waits import wait_for

GiB = 1024**3
SIZE = (120, 36)
CPU = {"model": "AMD Ryzen 9 7950X", "arch": "x86_64", "physical_cores": 16, "logical_cores": 32,
       "usable_cores": 32, "flags": ["avx", "avx2", "fma", "f16c", "avx512f"]}
RTX_4090 = {"index": 0, "name": "NVIDIA GeForce RTX 4090", "vendor": "nvidia", "total_bytes": int(23.99 * GiB),
            "free_bytes": int(23.3 * GiB), "used_bytes": int(0.69 * GiB), "utilization_pct": 0,
            "compute_capability": "8.9", "bus_width_bits": 384, "mem_clock_mhz": 10501, "bandwidth_gb_s": 1008.1,
            "unified_memory": False, "processes": [], "notes": []}
NO_GPU = "No NVIDIA GPU: no NVIDIA driver here (the NVML library is not installed)"


def machine(gpu: bool, ram: float, available: float, bandwidth_gb_s: float | None = 50.0) -> HardwareInfo:
    """What `localllm hw --json` records, as tests/unit/test_recommend.py builds it."""
    return HardwareInfo.from_dict({
        "cpu": CPU, "disk": {"path": "/models", "free_bytes": int(500e9), "total_bytes": int(1000e9)},
        "memory": {"total_bytes": int(ram * GiB), "available_bytes": int(available * GiB),
                   "swap_total_bytes": 0, "swap_free_bytes": 0, "limit_note": ""},
        "gpus": [RTX_4090] if gpu else [], "gpu_reason": None if gpu else NO_GPU,
        "driver_version": "550.54.14" if gpu else None, "cuda_version": "12.4" if gpu else None,
        "cpu_bandwidth_gb_s": bandwidth_gb_s})


class Host(App):
    """Pushes the screen and keeps what it dismisses with and what it notifies."""

    def __init__(self, screen: HardwareScreen) -> None:
        super().__init__()
        self.hw_screen, self.results = screen, []
        self.notices: list[str] = []

    def on_mount(self) -> None:
        self.push_screen(self.hw_screen, self.results.append)

    def notify(self, message, **kwargs) -> None:
        self.notices.append(str(message))
        super().notify(message, **kwargs)


def text_of(screen: HardwareScreen, selector: str) -> str:
    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(screen.query_one(selector, Static).content)
    return console.export_text()


def same(a, b) -> bool:
    return (a.model, a.format, a.quant, a.verdict) == (b.model, b.format, b.quant, b.verdict)


def fitting_rows(screen: HardwareScreen) -> int:
    return sum(p.fits for p in screen.rows)


async def test_24gb_gpu_card_and_the_first_row_is_recommends_first_pick() -> None:
    hw = machine(gpu=True, ram=62.5, available=50.0)
    screen = HardwareScreen(hw)
    async with Host(screen).run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen.rows)
        card = text_of(screen, "#hw-card")
        assert "NVIDIA GeForce RTX 4090" in card and "compute 8.9" in card and "1008 GB/s" in card
        assert "16 physical / 32 logical cores" in card and "avx512f" in card and "CUDA 12.4" in card
        assert "50.0 GB/s measured" in card and "465.7 GiB free at /models" in card
        best = recommend(hw, catalog.load_catalog(), Wishes()).picks[0]
        assert same(screen.rows[0], best) and best.verdict == "full GPU"
        table = screen.query_one(DataTable)
        assert str(table.get_row_at(0)[1]) == best.name and "full GPU" in str(table.get_row_at(0)[4])
        assert f"{best.name} {best.quant}" in text_of(screen, "#hw-why")
        assert "options fit 8192 tokens" in text_of(screen, "#hw-summary")
        shown = len(screen.rows)
        await pilot.press("a")  # every quant of every model, not the best two
        assert len(screen.rows) > shown and same(screen.rows[0], best)


async def test_no_gpu_8gib_says_why_and_ranks_cpu_picks() -> None:
    hw = machine(gpu=False, ram=8.0, available=6.5)
    screen = HardwareScreen(hw)
    async with Host(screen).run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen.rows)
        card = text_of(screen, "#hw-card")
        assert NO_GPU in card and "6.5 GiB available of 8.0 GiB" in card
        best = recommend(hw, catalog.load_catalog(), Wishes()).picks[0]
        assert same(screen.rows[0], best) and best.verdict == "CPU only"
        assert all(p.verdict in ("CPU only", "does not fit") for p in screen.rows)
        # rows that do not fit come after every row that fits
        verdicts = [p.fits for p in screen.rows]
        assert False in verdicts and verdicts == sorted(verdicts, reverse=True)
        assert "no CUDA GPU" in text_of(screen, "#hw-summary")


async def test_a_huge_context_typed_in_reranks_and_a_bad_one_names_the_field() -> None:
    hw = machine(gpu=True, ram=62.5, available=50.0)
    screen = HardwareScreen(hw)
    async with Host(screen).run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen.rows)
        before = fitting_rows(screen)
        box = screen.query_one("#hw-context", Input)
        box.focus()
        box.value = ""
        await pilot.press(*"128k", "enter")
        await wait_for(pilot, lambda: screen.recommendation.wishes.context == 131072)
        assert fitting_rows(screen) < before
        assert all(catalog.get(p.model).max_context >= 131072 for p in screen.rows)
        best = recommend(hw, catalog.load_catalog(), Wishes(context=131072)).picks[0]
        assert same(screen.rows[0], best)

        box.value = "lots"
        await wait_for(pilot, lambda: "Context" in text_of(screen, "#hw-message"))
        message = text_of(screen, "#hw-message")
        assert "number of tokens" in message and "'lots'" in message and box.has_class("-invalid")
        # the message is written by the rerank that would have started a ranking: shown, it decided not to
        assert "Ranking" not in text_of(screen, "#hw-summary")
        assert not any(w.group == "hw-rank" and w.is_running for w in screen.workers)
        assert screen.recommendation.wishes.context == 131072  # nothing ranked for a bad value
        box.value = "4096"
        await wait_for(pilot, lambda: screen.recommendation.wishes.context == 4096)
        assert not box.has_class("-invalid") and not text_of(screen, "#hw-message").strip()


async def test_format_toggles_rerank_and_none_ticked_is_said() -> None:
    screen = HardwareScreen(machine(gpu=True, ram=62.5, available=50.0))
    async with Host(screen).run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen.rows)
        screen.query_one("#hw-fmt-gguf", Checkbox).value = False
        await wait_for(pilot, lambda: "gguf" not in screen.recommendation.wishes.formats)
        assert screen.rows and all(p.format != "gguf" for p in screen.rows)
        for name in ("gptq", "bnb", "fp16"):
            screen.query_one(f"#hw-fmt-{name}", Checkbox).value = False
        await wait_for(pilot, lambda: "Formats" in text_of(screen, "#hw-message"))


async def test_enter_dismisses_with_the_highlighted_pick_and_escape_with_none() -> None:
    hw = machine(gpu=True, ram=62.5, available=50.0)
    screen = HardwareScreen(hw)
    host = Host(screen)
    async with host.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen.rows)
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: host.results)
        chosen = host.results[0]
        assert chosen is screen.rows[1] and chosen.fits
        repo, file = download_target(chosen)
        assert chosen.source == f"{repo}/{file}" and file.endswith(".gguf")
        assert pull_command(chosen) == f"localllm pull {repo} --file {file}"
    again = HardwareScreen(hw)
    host = Host(again)
    async with host.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: again.rows)
        await pilot.press("escape")
        await wait_for(pilot, lambda: host.results)
        assert host.results == [None]


async def test_nothing_fits_shows_the_fixes_and_enter_does_not_pick() -> None:
    hw = machine(gpu=False, ram=4.0, available=1.2)
    screen = HardwareScreen(hw, wishes=Wishes(context=32768))
    host = Host(screen)
    async with host.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen.recommendation is not None)
        assert screen.recommendation.picks == [] and screen.rows and not any(p.fits for p in screen.rows)
        summary = text_of(screen, "#hw-summary")
        assert "Nothing fits 32768 tokens" in summary and "KV cache" in summary and "shorten the context" in summary
        await pilot.press("enter")
        await wait_for(pilot, lambda: any("does not fit here" in n for n in host.notices), timeout=30)
        assert host.results == [] and host.screen is screen


async def test_measuring_bandwidth_updates_the_card(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path))
    monkeypatch.setattr(bandwidth, "probe", lambda *a, **k: (42.0, 2))  # the real probe copies GBs
    screen = HardwareScreen(machine(gpu=False, ram=8.0, available=6.5, bandwidth_gb_s=None))
    async with Host(screen).run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen.rows)
        assert "not measured" in text_of(screen, "#hw-card")
        assert "not measured yet" in text_of(screen, "#hw-summary")
        await pilot.press("b")
        await wait_for(pilot, lambda: "42.0 GB/s measured" in text_of(screen, "#hw-card"))
        await wait_for(pilot, lambda: "not measured" not in text_of(screen, "#hw-summary"))
    assert bandwidth.cached_bandwidth(screen.hardware.cpu) == 42.0


async def test_a_fresh_machine_is_measured_before_it_is_ranked_as_the_cli_does(tmp_path, monkeypatch) -> None:
    """On a fresh home the screen used to rank with an assumed 20 GB/s while `localllm recommend` measured,
    so the two could name different picks. Now the first inspection measures once, and both read the cache."""
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path))
    calls = []
    monkeypatch.setattr(bandwidth, "probe", lambda *a, **k: calls.append(1) or (42.0, 2))  # the real one copies GBs
    screen = HardwareScreen()
    async with Host(screen).run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen.rows and screen.hardware is not None
                       and not any(w.is_running and w.group.startswith("hw-") for w in screen.workers))
        assert screen.hardware.cpu_bandwidth_gb_s == 42.0
        assert "42.0 GB/s measured" in text_of(screen, "#hw-card")
        assert "not measured" not in text_of(screen, "#hw-summary")
    assert calls == [1] and bandwidth.cached_bandwidth(screen.hardware.cpu) == 42.0
    again = HardwareScreen()  # cached now: not measured again
    async with Host(again).run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: again.rows and again.hardware is not None)
        assert again.hardware.cpu_bandwidth_gb_s == 42.0 and calls == [1]


async def test_this_machine_is_inspected_when_nothing_is_injected() -> None:
    screen = HardwareScreen()
    async with Host(screen).run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen.hardware is not None)
        physical, logical = psutil.cpu_count(logical=False), psutil.cpu_count(logical=True)
        assert f"{physical} physical / {logical} logical cores" in text_of(screen, "#hw-card")
        await wait_for(pilot, lambda: screen.recommendation is not None)


@pytest.mark.slow
async def test_f4_in_the_app_then_enter_downloads_the_pick_from_the_hub_and_loads_it(tmp_path, monkeypatch,
                                                                                    model_path) -> None:
    """The whole path on this machine: F4, a GGUF pick that fits, Enter; the models screen downloads it
    (from a loopback Hub serving the embedded file under the pick's name) and the app loads it.

    Each wait tracks the work (the status line, the screen, the bytes in the HF cache): a host that is
    slow to probe its kernels, rank or download is waited for while it moves. The models screen can come
    and go within one poll (98 MB over loopback), so the pull it was opened with is recorded, not polled."""
    from localllm.config import LoadOptions
    from localllm.ui.app import LocalLLMApp
    from localllm.ui.screens.open_model import OpenModelScreen
    from localllm.ui.widgets.status_bar import StatusBar
    from tests.hubserver import HubServer

    pulls = []
    opened = OpenModelScreen.__init__

    def record(self, *args, **kwargs):
        pulls.append(kwargs.get("pull", args[2] if len(args) > 2 else None))
        opened(self, *args, **kwargs)

    monkeypatch.setattr(OpenModelScreen, "__init__", record)
    cache = tmp_path / "hub"
    with open(model_path, "rb") as fh:  # the embedded weights stand in for the pick's file
        weights = fh.read()
    with HubServer() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(cache))
        app = LocalLLMApp(load_options=LoadOptions(context=512))

        def progress():
            size = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) if cache.exists() else 0
            return (type(app.screen).__name__, str(app.query_one(StatusBar).render()), size)

        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.session.model is not None, 120, progress)
            first = app.session.model.path
            await pilot.press("f4")
            screen = app.screen
            # the ranking settles once the inspect/measure/rank workers are done (a measured bandwidth
            # re-ranks and refills the table)
            await wait_for(pilot, lambda: isinstance(screen, HardwareScreen) and screen.rows and not any(
                w.is_running and w.group.startswith("hw-") for w in screen.workers), 60, progress)
            index = next(i for i, p in enumerate(screen.rows)
                         if p.fits and p.format == "gguf" and (download_target(p) or (0, None))[1])
            repo, filename = download_target(screen.rows[index])
            hub.add_repo(repo, {filename: weights})
            table = screen.query_one(DataTable)
            table.focus()
            table.move_cursor(row=index)
            await pilot.press("enter")
            await wait_for(pilot, lambda: getattr(app.session.model, "path", first) != first, 120, progress)
            assert pulls == [(repo, filename)]
            assert app.session.model.path.endswith(filename.rsplit("/", 1)[-1])
            assert str(cache) in app.session.model.path and hub.gets(filename.rsplit("/", 1)[-1])


async def test_a_header_click_sorts_within_fitting_and_not_fitting_rows() -> None:
    screen = HardwareScreen(machine(gpu=False, ram=8.0, available=6.0))
    host = Host(screen)
    async with host.run_test(size=SIZE) as pilot:
        # the ranking is settled once the inspect/measure/rank workers are done (a measured bandwidth re-ranks)
        await wait_for(pilot, lambda: screen.rows and not any(
            w.is_running and w.group.startswith("hw-") for w in host.workers))
        ranked = list(screen.rows)
        await click_header(pilot, screen, "tok/s")
        assert screen._sort == ("tok/s", False)
        # the sorted order, not "a different order": with some measured bandwidths they are the same
        await wait_for(pilot, lambda: screen.rows == by_speed(ranked))
        fits = [p for p in screen.rows if p.fits]
        assert [p.tok_s for p in fits] == sorted((p.tok_s for p in fits), reverse=True)
        assert all(p.fits for p in screen.rows[:len(fits)])  # what fits stays on top
        assert {id(p) for p in screen.rows} == {id(p) for p in ranked}  # same picks, other order
        await pilot.click(DataTable, offset=(1, 0))  # '#': back to the ranking
        await wait_for(pilot, lambda: screen.rows == ranked)


@pytest.mark.slow
async def test_picking_the_embedded_model_in_the_app_goes_straight_to_chat() -> None:
    from localllm.config import LoadOptions
    from localllm.models.embedded import embedded_model_path
    from localllm.ui.app import LocalLLMApp

    app = LocalLLMApp(model_path="/nonexistent/model.gguf", load_options=LoadOptions(context=512))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.query_one("#prompt", Input).disabled is not None
                       and "no model loaded" in str(app.query_one("StatusBar").render()), 60)
        await pilot.press("f4")
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.rows, 60)
        screen = app.screen
        table = screen.query_one(DataTable)
        table.focus()
        await pilot.press("a")  # every quant of every model: the embedded Q4_1 is one of SmolLM2's
        await wait_for(pilot, lambda: any(p.source.startswith("embedded") for p in screen.rows), 30)
        index = next(i for i, p in enumerate(screen.rows) if p.fits and p.source.startswith("embedded"))
        table.move_cursor(row=index)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.session.model is not None, 120)
        assert app.session.model.path == str(embedded_model_path()) and not isinstance(app.screen, HardwareScreen)


@pytest.mark.slow
async def test_a_pick_loads_with_its_plans_placement(monkeypatch) -> None:
    """A faked NVIDIA host (NVML's view) and a binding that says it can offload: the pick's GPU layers
    and context reach the worker (this CPU build of llama.cpp then runs them on the CPU, and says so)."""
    from localllm.config import LoadOptions
    from localllm.machine import hardware
    from localllm.runtime import binding
    from localllm.ui.app import LocalLLMApp

    monkeypatch.setattr(hardware, "probe", lambda *a, **k: machine(gpu=True, ram=64.0, available=50.0))
    monkeypatch.setattr(binding, "capabilities", lambda *a, **k: binding.BindingCaps(
        version="0.3.36", gpu_offload=True, extra_bufts_ok=True))
    app = LocalLLMApp(model_path="/nonexistent/model.gguf", load_options=LoadOptions(context=512))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "no model loaded" in str(app.query_one("StatusBar").render()), 60)
        await pilot.press("f4")
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.rows, 60)
        screen = app.screen
        table = screen.query_one(DataTable)
        table.focus()
        await pilot.press("a")
        await wait_for(pilot, lambda: any(p.source.startswith("embedded") for p in screen.rows), 30)
        index = next(i for i, p in enumerate(screen.rows) if p.source.startswith("embedded"))
        pick = screen.rows[index]
        assert pick.verdict == "full GPU" and pick.gpu_layers > 0
        table.move_cursor(row=index)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.session.model is not None, 120)
        model = app.session.model
        assert model.n_gpu_layers == pick.gpu_layers and model.n_ctx == pick.estimate.context
        assert app.session.plan.placement == "full GPU" and app.session.plan.devices()["gpu0"]["weights"] > 0
        assert app.query_one("MetricsPanel").rows["VRAM plan"].endswith("MiB")


async def test_a_rerank_keeps_the_highlight_on_the_same_pick() -> None:
    """A measured bandwidth or a changed wish re-ranks and refills the table: the pick the user had
    highlighted stays highlighted, so Enter takes what was on screen."""
    screen = HardwareScreen(machine(gpu=False, ram=8.0, available=6.0))
    host = Host(screen)
    async with host.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen.rows and not any(
            w.is_running and w.group.startswith("hw-") for w in host.workers))
        table = screen.query_one(DataTable)
        ranked = list(screen.rows)
        expected = by_speed(ranked)
        row = next((i for i, p in enumerate(ranked) if expected[i] is not p), 3)  # one the sort moves
        table.move_cursor(row=row)
        held = screen.current
        await pilot.pause()  # the messages the move posted (highlight, scroll) are handled before the click
        await click_header(pilot, screen, "tok/s")  # sort by tok/s
        # on a timeout, say where it stood: 2 runs of the quick tier in ~10 timed out here, not reproduced
        await wait_for(pilot, lambda: screen.rows == expected, progress=lambda: (
            row, len(ranked), screen._sort, screen.rows == ranked, table.scroll_offset, screen.current is held))
        assert screen.current is held and expected.index(held) == table.cursor_row


async def click_header(pilot, screen: HardwareScreen, column: str) -> None:
    """Click a column's header, as a user does. A pilot's click now and then never reaches the header (seen
    under load, and once in a full run on an idle host: the test then waited 180 s for a sort): click again
    only while none has registered, as a second registered click would sort the other way."""
    table = screen.query_one(DataTable)
    index = list(table.columns).index(column)
    offset = (sum(c.get_render_width(table) for c in list(table.columns.values())[:index]) + 1, 0)
    before = screen._sort
    for _ in range(5):
        await pilot.click(DataTable, offset=offset)
        try:
            await wait_for(pilot, lambda: screen._sort != before, 10)
            return
        except AssertionError:
            continue
    raise AssertionError(f"5 clicks on the {column!r} header never registered (sort still {screen._sort!r})")


def by_speed(rows: list) -> list:
    """A click on tok/s: the fastest first, within the picks that fit and within those that do not."""
    return (sorted((p for p in rows if p.fits), key=lambda p: -p.tok_s)
            + sorted((p for p in rows if not p.fits), key=lambda p: -p.tok_s))
