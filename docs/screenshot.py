"""Regenerate the README's screenshots of report.html (`make screenshot`): Debian's headless
Chromium driven by Playwright, as the browser test does; no browser is downloaded."""

from __future__ import annotations

import sys
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]


def main(report: Path, out_dir: Path) -> None:
    """docs/report.png: the top of the page (verdict, environment, pair matrix and table);
    docs/report-length.png: the first failing pair's delta against token count."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        sys.exit(f"{CHROMIUM} is missing: install it with `sudo apt-get install -y chromium`")
    out_dir.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1700})
            page.goto(report.resolve().as_uri(), wait_until="load")
            page.wait_for_function("document.querySelectorAll('.main-svg').length > 0")
            page.screenshot(path=str(out_dir / "report.png"))
            failing = page.locator("section.pair:has(h2 .bad) .js-plotly-plot[id$='-length']")
            if failing.count():
                failing.first.screenshot(path=str(out_dir / "report-length.png"))
        finally:
            browser.close()
    print(f"screenshots written to {out_dir}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
