"""What --help says is what the code does (issue 12): stated defaults, `models PATTERN`, the offline failure at once."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from featstore.cli import featstore_app
from probes.cli import probes_app

runner = CliRunner()


def _help(app, *cmd: str) -> str:
    res = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "400", "TERM": "dumb"})
    assert res.exit_code == 0, res.output
    return re.sub(r"\s+", " ", res.output.replace("│", " "))


def _stated(text: str, option: str) -> str:
    """The 'Default: X' sentence of one option's help."""
    after = text.split(f"{option} ", 1)[1]
    return re.search(r"Default: ([^.;]*)", after).group(1).strip()


def test_fit_defaults_are_the_real_ones() -> None:
    from probes.train import DEFAULT_MEMORY_GB, DEFAULT_NORM

    text = _help(probes_app, "fit")
    assert _stated(text, "--normalize").split()[0] == DEFAULT_NORM
    assert _stated(text, "--memory-gb") == f"$PROBES_MEMORY_GB or {DEFAULT_MEMORY_GB:g}"


def test_extract_workers_default_is_the_real_one() -> None:
    from featstore.loader import default_workers

    stated = _stated(_help(featstore_app, "extract"), "--workers")
    on_cpu = re.search(r"(\d+) on CPU", stated)
    assert on_cpu and int(on_cpu.group(1)) == default_workers(False)
    assert "up to 8" in stated and default_workers(True) <= 8


def test_submit_format_default_follows_the_layout() -> None:
    from probes.testsplit import TestSplit

    stated = _stated(_help(probes_app, "submit"), "--format")
    assert "CSV layout -> boostcamp, folders -> mva" in stated
    assert (TestSplit("csv").default_format, TestSplit("folders").default_format) == ("boostcamp", "mva")


def test_models_pattern_is_a_substring_and_shows_the_cache() -> None:
    from featstore.encoders import list_specs
    from featstore.encoders.registry import registered_names

    names = [s.name for s in list_specs("clip")]
    assert names and names == [n for n in registered_names() if "clip" in n.lower()]
    assert [s.name for s in list_specs("*clip*")] == names
    res = runner.invoke(featstore_app, ["models", "clip"], env={"COLUMNS": "300"})
    assert res.exit_code == 0 and "local" in res.output and "cached" in res.output


def test_no_weights_fails_at_once_with_the_whole_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from featstore.encoders import create_encoder, list_specs
    from featstore.encoders import hubcheck
    from featstore.errors import WeightsError

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hubcheck, "hub_offline", lambda: False)
    monkeypatch.setattr(hubcheck, "hub_reachable", lambda timeout_s=3.0: False)
    monkeypatch.setattr(hubcheck, "hub_cached", lambda repo: False)
    spec = next(s for s in list_specs() if s.backend == "timm" and hubcheck.cached_state(s))
    with pytest.raises(WeightsError) as e:  # raised by the probe, before timm builds the model or the hub retries
        create_encoder(spec)
    assert str(e.value).endswith("(not cached, and the hub did not answer within 3 s)") and "--weights FILE" in str(e.value)
