"""`localllm serve`: what it refuses before starting anything, and the launcher's argument split."""

from __future__ import annotations

import pytest

from localllm.backends.llama_server_main import split_args
from localllm.cli.main import main


def test_serve_refuses_a_missing_file_and_a_folder(tmp_path, capsys) -> None:
    assert main(["serve", "-m", str(tmp_path / "nope.gguf")]) == 2
    assert "no such GGUF file" in capsys.readouterr().err
    assert main(["serve", "-m", str(tmp_path)]) == 2  # a folder is a transformers checkpoint
    assert "takes 'embedded' or a GGUF file" in capsys.readouterr().err


def test_the_launcher_takes_its_switch_first_and_hands_the_rest_to_the_server() -> None:
    assert split_args(["--extra-bufts", "off", "--model", "m.gguf", "--port", "1"]) == (
        False, ["--model", "m.gguf", "--port", "1"])
    assert split_args(["--extra-bufts", "on"]) == (True, [])
    with pytest.raises(SystemExit, match="usage"):
        split_args(["--model", "m.gguf"])
