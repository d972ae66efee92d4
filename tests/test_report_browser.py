"""probes report: one offline HTML file, rendered in headless Chromium: not blank, no console message, thumbnails."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from featstore.extract import extract
from hygiene_data import write_planted_folders
from probes.train import FitRequest, fit_run

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0"]


def chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def browse(page, tmp_path, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"  # a fresh profile per run
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Two CV runs (compared) on blob images with planted copies, and their report."""
    root = tmp_path_factory.mktemp("report")
    write_planted_folders(root / "data", counts={"train": 20, "val": 5, "test": 5}, rate=0.2)
    extract(model="pixels", data=root / "data", cache=root / "cache")
    runs = [fit_run(FitRequest(features=("pixels",), cv=3, params={"C": c, "shrink": 1000.0}), cache=root / "cache",
                    runs=root / "runs").run for c in (0.3, 3.0)]
    from probes.cli import probes_app

    out = CliRunner().invoke(probes_app, ["report", *(r.id for r in runs), "--out", str(root / "report.html"),
                                          "--runs", str(root / "runs"), "--cache", str(root / "cache")])
    assert out.exit_code == 0, out.output
    return root / "report.html"


def test_report_is_one_offline_file(report):
    html = report.read_text()
    assert not re.search(r'(src|href)="(?!data:|#)', html)  # nothing fetched: every image is inline
    for section in ("Metrics (oof)", "Calibration", "Per-class accuracy", "Most confused class pairs", "Data audit"):
        assert section in html
    assert html.count("data:image/jpeg;base64,") >= 20
    assert "LEAK" in html and "Likely label errors" in html
    assert report.stat().st_size < 2_000_000


def test_report_renders_in_chromium(report, tmp_path):
    if chromium() is None:
        print("SKIP reason: no chromium on PATH (make test installs Debian's chromium when it can)")
        pytest.skip("no chromium on PATH (make test installs Debian's chromium when it can)")
    shot = tmp_path / "shot.png"
    run = browse(report, tmp_path, "--window-size=1280,1600", f"--screenshot={shot}")
    assert shot.exists(), run.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 10 and (pixels < 200).mean() > 0.01  # text, plots and thumbnails, not a blank page
    assert "CONSOLE" not in run.stderr, [ln for ln in run.stderr.splitlines() if "CONSOLE" in ln]
    dom = browse(report, tmp_path, "--dump-dom")
    assert "CONSOLE" not in dom.stderr
    assert 'data-ready="1"' in dom.stdout  # the page's scripts ran to the end
    confused = dom.stdout.split("Most confused class pairs")[1].split("Data audit")[0]
    assert len(re.findall(r'<img class="thumb" src="data:image/jpeg;base64,', confused)) >= 5


def test_per_class_table_holds_500_classes():
    """At 500 classes the accuracy is a table (filterable, sortable, scrolling), not a plot of specks."""
    from probes.report.sections import per_class_section

    classes = [f"class{k:03d}" for k in range(500)]
    rows = {"a": {"per_class_acc": {c: k / 500 for k, c in enumerate(classes)}},
            "b": {"per_class_acc": {c: None for c in classes}}}
    html = per_class_section(rows, classes, np.full(500, 3))
    assert html.count("<tr>") == 501 and 'class="scroll"' in html and 'class="filter"' in html
    assert "top-1 #2" in html and ">–<" in html
