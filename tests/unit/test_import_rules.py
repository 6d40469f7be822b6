"""ARCHITECTURE.md's import rules: checked by import-linter and by what really gets imported."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ["torch", "transformers", "llama_cpp", "bitsandbytes", "gptqmodel"]


def modules_after(code: str) -> set[str]:
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_help_imports_no_heavy_library_and_no_textual() -> None:
    loaded = modules_after(
        "import contextlib, io\nfrom localllm import cli\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    cli.main(['--help'])")
    assert not {m for m in loaded if m.split(".")[0] in HEAVY + ["textual"]}


def test_headless_core_imports_no_textual_and_no_backend() -> None:
    loaded = modules_after("import localllm.session, localllm.metrics, localllm.worker, localllm.report")
    assert not {m for m in loaded if m.split(".")[0] in HEAVY + ["textual"]}
    assert "localllm.ui" not in loaded


def test_import_linter_contracts_hold() -> None:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    out = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_hw_builds_only_its_own_parser_and_imports_nothing_heavy() -> None:
    loaded = modules_after(
        "import contextlib, io\nfrom localllm import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    cli.main(['hw', '--json'])")
    assert not {m for m in loaded if m.split(".")[0] in HEAVY + ["textual"]}
    assert "localllm.commands.hw" in loaded
    assert not {"localllm.commands.bench", "localllm.commands.pull", "localllm.commands.recommend"} & loaded


def test_the_full_parser_still_lists_every_command(capsys) -> None:
    import contextlib

    from localllm import cli
    from localllm.commands import MODULES, command_name

    with contextlib.suppress(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert all(command_name(m) in out for m in MODULES)
    assert cli._wanted_module(["-m", "x.gguf", "bench", "--reps", "1"]) == "localllm.commands.bench"
    assert cli._wanted_module(["chat", "-p", "hw"]) is None  # a prompt that names a command is a prompt


# The only modules allowed outside each rule. A module added anywhere else under localllm/ must be named in
# the contract's source_modules (or sit in a package that is), or this test fails.
MAY_IMPORT_TEXTUAL = ("localllm.cli", "localllm.ui")
MAY_IMPORT_HEAVY = ("localllm.backends.llama_cpp", "localllm.backends.transformers_backend",
                    "localllm.backends.hf_convert", "localllm.backends", "localllm.bench_worker",
                    "localllm.quantize", "localllm.gptq_job", "localllm.dequantize_job")


def _under(module: str, names) -> bool:
    return any(module == n or module.startswith(n + ".") for n in names)


def test_every_module_falls_under_the_contracts() -> None:
    import pkgutil
    import tomllib

    import localllm

    contracts = {c["name"]: c for c in
                 tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]}
    textual = contracts["The headless core never imports textual"]["source_modules"]
    heavy = contracts["Only backend implementations import the heavy ML libraries"]["source_modules"]
    modules = [m.name for m in pkgutil.walk_packages(localllm.__path__, "localllm.")]
    assert len(modules) > 60
    loose = [m for m in modules if not _under(m, textual) and not _under(m, MAY_IMPORT_TEXTUAL)]
    assert loose == [], f"name these in the no-textual contract: {loose}"
    exact_heavy = [m for m in MAY_IMPORT_HEAVY if m != "localllm.backends"]
    loose = [m for m in modules if not _under(m, heavy) and not _under(m, exact_heavy)
             and m != "localllm.backends"]
    assert loose == [], f"name these in the heavy-library contract: {loose}"


def test_a_new_module_outside_the_contracts_is_caught(monkeypatch) -> None:
    """The check above can fail: a module dropped into localllm/ unnamed is reported."""
    import pkgutil

    import pytest

    real = pkgutil.walk_packages
    extra = pkgutil.ModuleInfo(None, "localllm.brand_new", False)
    monkeypatch.setattr(pkgutil, "walk_packages", lambda *a, **k: [*real(*a, **k), extra])
    with pytest.raises(AssertionError, match="localllm.brand_new"):
        test_every_module_falls_under_the_contracts()
