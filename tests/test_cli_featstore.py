"""The featstore command line through typer's test runner: exit codes, one-line errors, tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from featstore.cli import featstore_app
from corpus import write_bad_images, write_folder_dataset

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(featstore_app, list(args))


def test_help_documents_every_option() -> None:
    res = _run("extract", "--help")
    assert res.exit_code == 0
    for opt in ("--model", "--data", "--cache", "--weights", "--random-weights", "--splits", "--device",
                "--precision", "--batch-size", "--workers"):
        assert opt in res.output


def test_extract_ls_info(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data")
    write_bad_images(root / "train_images" / "cat")
    cache = str(tmp_path / "cache")
    res = _run("extract", "--model", "pixels", "--data", str(root), "--cache", cache, "--workers", "0")
    assert res.exit_code == 0, res.output
    assert "images skipped" in res.output and "train" in res.output
    res = _run("ls", "--cache", cache)
    assert res.exit_code == 0 and "pixels" in res.output
    res = _run("info", "pixels", "--cache", cache)
    assert res.exit_code == 0 and "failed train/cat/empty.jpg: empty file" in res.output.replace("\n", " ")


def test_splits_option(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data")
    res = _run("extract", "-m", "pixels", "-d", str(root), "--cache", str(tmp_path / "c"), "--splits", "val",
               "--workers", "0")
    assert res.exit_code == 0, res.output
    assert "val" in res.output and "train" not in res.output.split("┃ split")[1]


@pytest.mark.parametrize("args, message", [
    (["-m", "nope"], "unknown encoder 'nope'"),
    (["-m", "pixels", "--data", "/nonexistent/dir"], "/nonexistent/dir"),
    (["-m", "pixels", "--device", "cuda"], "no CUDA device"),
    (["-m", "pixels", "--precision", "fp8"], "--precision 'fp8'"),
    (["-m", "dinov2_s14"], "--weights FILE"),
    (["-m", "pixels", "--weights", "/no/such.safetensors", "--random-weights"], "exclude each other"),
])
def test_errors_are_one_line_and_exit_1(tmp_path: Path, args: list[str], message: str) -> None:
    root = write_folder_dataset(tmp_path / "data")
    if "--data" not in args:
        args = [*args, "--data", str(root)]
    res = _run("extract", *args, "--cache", str(tmp_path / "c"))
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], res.output
    assert "Traceback" not in res.output


def test_models_lists_and_filters() -> None:
    res = _run("models", "dinov2*")
    assert res.exit_code == 0 and "dinov2_b14" in res.output and "eva_giant_336" not in res.output
