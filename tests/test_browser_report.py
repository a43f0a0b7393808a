"""report.html opened in a real headless Chromium (Debian's package, driven by Playwright):
no console errors, no network, every plot drawn, the verdict summary.json gives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# no first-run, update, sync or QUIC traffic: the page is the only thing that may load
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
# each plot's drawn marks: plotly's SVG traces and the heatmap's raster image
PLOTS_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(div => ({
  id: div.id,
  svgs: div.querySelectorAll('svg.main-svg').length,
  marks: div.querySelectorAll('g.trace path[d]:not([d=""]), g.trace .point, .hm image').length,
  height: div.getBoundingClientRect().height,
}))"""


def require_chromium() -> Path:
    """Debian's Chromium, or a failure that says how to install it (never a download)."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser test needs Debian's Chromium; install it with "
            "`sudo apt-get install -y chromium` (.ci/run does this on CI)",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def report_dir(bpe_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `parity run` that fails on truncation: custom against custom:max_length=8."""
    from parity.cli import main

    tmp = tmp_path_factory.mktemp("browser")
    texts = ["one two", "tab\there", "zero\u200bwidth café", "a\nb"]
    texts += [" ".join(["word"] * n) for n in (12, 20, 30)]
    path = tmp / "texts.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    out = tmp / "out"
    argv = ["run", "--model", str(bpe_model), "--texts", str(path), "--quiet", "--no-retrieval"]
    argv += ["--adapter", "custom", "--adapter", "custom:max_length=8,label=short"]
    assert main([*argv, "--out", str(out)]) == 1
    return out


def open_report(html: Path, screenshot: Path) -> dict[str, Any]:
    """Load the page in headless Chromium; return what it logged, requested and drew."""
    from playwright.sync_api import sync_playwright

    seen: dict[str, Any] = {"errors": [], "requests": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(require_chromium()), args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on(
                "console",
                lambda m: seen["errors"].append(m.text) if m.type == "error" else None,
            )
            page.on("pageerror", lambda exc: seen["errors"].append(str(exc)))
            page.on("request", lambda request: seen["requests"].append(request.url))
            page.goto(html.as_uri(), wait_until="load")
            page.wait_for_function(
                "document.querySelectorAll('.js-plotly-plot .main-svg').length > 0"
            )
            seen["plots"] = page.evaluate(PLOTS_JS)
            seen["verdict"] = page.inner_text("#verdict")
            seen["verdict_class"] = page.get_attribute("#verdict", "class")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return seen


@pytest.mark.slow
def test_report_renders_offline_in_chromium_with_the_summary_verdict(
    report_dir: Path, tmp_path: Path
) -> None:
    html = report_dir / "report.html"
    summary = json.loads((report_dir / "summary.json").read_text())
    screenshot = tmp_path / "report.png"
    seen = open_report(html, screenshot)
    assert seen["errors"] == []
    assert seen["requests"] == [html.as_uri()]  # the file itself, nothing from the network
    ids = [plot["id"] for plot in seen["plots"]]
    assert ids == ["matrix", "pair0-distribution", "pair0-length"]
    for plot in seen["plots"]:
        assert plot["svgs"] > 0 and plot["marks"] > 0 and plot["height"] > 100, plot
    assert seen["verdict"] == summary["verdict"] == "FAIL: 1 of 1 pairs differ beyond tolerance"
    assert seen["verdict_class"] == ("pass" if summary["passed"] else "fail") == "fail"
    assert screenshot.stat().st_size > 50_000


def test_a_missing_chromium_fails_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import sys

    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", tmp_path / "no-chromium")
    with pytest.raises(pytest.fail.Exception, match=r"apt-get install -y chromium"):
        require_chromium()
