"""ARCHITECTURE.md's import rules: checked by import-linter and by what really gets imported."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ["torch", "transformers", "llama_cpp", "bitsandbytes", "gptqmodel"]


def modules_after(code: str) -> set[str]:
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_help_imports_no_heavy_library_and_no_textual() -> None:
    loaded = modules_after(
        "import contextlib, io\nfrom localllm.cli import main as cli\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    cli.main(['--help'])")
    assert not {m for m in loaded if m.split(".")[0] in HEAVY + ["textual"]}


def test_headless_core_imports_no_textual_and_no_backend() -> None:
    loaded = modules_after("import localllm.chat.session, localllm.runtime.metrics, localllm.runtime.worker, localllm.chat.report")
    assert not {m for m in loaded if m.split(".")[0] in HEAVY + ["textual"]}
    assert "localllm.ui" not in loaded


def test_import_linter_contracts_hold() -> None:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    out = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_hw_builds_only_its_own_parser_and_imports_nothing_heavy() -> None:
    loaded = modules_after(
        "import contextlib, io\nfrom localllm.cli import main as cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    cli.main(['hw', '--json'])")
    assert not {m for m in loaded if m.split(".")[0] in HEAVY + ["textual"]}
    assert "localllm.cli.commands.hw" in loaded
    assert not {"localllm.cli.commands.bench", "localllm.cli.commands.pull", "localllm.cli.commands.recommend"} & loaded


def test_hw_on_a_machine_already_measured_leaves_out_what_costs_start_up(tmp_path) -> None:
    """Each of these cost 1-20 ms of `localllm hw` (PRODUCT.md: within 2x a bare python -c pass;
    benchmarks/startup_ratio.py times it). The bandwidth is cached, as on every run after the first."""
    loaded = modules_after(
        f"import contextlib, io, os\nos.environ['LOCALLLM_HOME'] = {str(tmp_path)!r}\n"
        "from localllm.config import state\nfrom localllm.machine import bandwidth\n"
        "state.write_json(bandwidth.cache_path(), {bandwidth.cpu_key(): {'gb_s': 42.0}})\n"
        "from localllm.cli import main as cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    cli.main(['hw'])")
    if sys.platform == "linux":  # elsewhere psutil is how RAM and cores are read
        assert "psutil" not in loaded
    assert not {"numpy", "huggingface_hub", "typing", "threading", "platform", "localllm.hub.repos"} & loaded


def test_the_full_parser_still_lists_every_command(capsys) -> None:
    import contextlib

    from localllm.cli import main as cli
    from localllm.cli.commands import MODULES, command_name

    with contextlib.suppress(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert all(command_name(m) in out for m in MODULES)
    assert cli._wanted_module(["-m", "x.gguf", "bench", "--reps", "1"]) == "localllm.cli.commands.bench"
    assert cli._wanted_module(["chat", "-p", "hw"]) is None  # a prompt that names a command is a prompt


def test_help_lists_the_commands_without_importing_them_or_the_option_dataclasses() -> None:
    """What keeps `localllm --help` within 2x a bare `python -c pass` (PRODUCT.md; benchmarks time it):
    the commands are listed by their one-line summaries, the defaults come from config.defaults."""
    loaded = modules_after(
        "import contextlib, io\nfrom localllm.cli import main as cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    cli.main(['--help'])")
    assert not {m for m in loaded if m.startswith("localllm.cli.commands.")}
    assert not {"dataclasses", "localllm.config.options", "localllm.config.paths", "platformdirs"} & loaded


def test_the_config_package_resolves_every_name_it_exports() -> None:
    import localllm.config as config
    from localllm.config import options, paths

    assert sorted(config.__all__) == sorted(config._WHERE)
    assert all(getattr(config, name) is not None for name in config.__all__)
    assert config.LoadOptions is options.LoadOptions and config.home is paths.home
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        config.nothing  # noqa: B018


# The only modules outside each forbidden contract's sources: the entry point (it runs the CLI).
# Every other module under localllm/ must sit in a package (or be a module) the contracts name, and in a
# layer, or this test fails.
ENTRY_POINTS = ("localllm.__main__",)


def _under(module: str, names) -> bool:
    return any(module == n or module.startswith(n + ".") for n in names)


def _contracts() -> dict:
    import tomllib

    return {c["type"] + ":" + c["name"].split(" ")[1]: c for c in
            tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]}


def test_every_module_falls_under_the_contracts() -> None:
    import pkgutil

    import localllm

    contracts = _contracts()
    textual = contracts["forbidden:cli"]["source_modules"] + ["localllm.cli", "localllm.ui"]
    heavy = contracts["forbidden:backends"]["source_modules"]
    layers = [name.strip() for layer in contracts["layers:cli"]["layers"] for name in layer.split("|")]
    modules = [m.name for m in pkgutil.walk_packages(localllm.__path__, "localllm.")]
    assert len(modules) > 60
    for rule, names in (("no-textual", textual), ("heavy-library", heavy), ("layers", layers)):
        loose = [m for m in modules if not _under(m, names) and m not in ENTRY_POINTS]
        assert loose == [], f"put these in a package of the {rule} contract: {loose}"


def test_a_new_module_outside_the_contracts_is_caught(monkeypatch) -> None:
    """The check above can fail: a module dropped into localllm/ unnamed is reported."""
    import pkgutil

    import pytest

    real = pkgutil.walk_packages
    extra = pkgutil.ModuleInfo(None, "localllm.brand_new", False)
    monkeypatch.setattr(pkgutil, "walk_packages", lambda *a, **k: [*real(*a, **k), extra])
    with pytest.raises(AssertionError, match="localllm.brand_new"):
        test_every_module_falls_under_the_contracts()
