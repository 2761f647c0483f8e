"""The live dashboard in a real headless browser (Debian's chromium, driven by Playwright):
the sink serves the page, Chart.js from its own files (no network), and the numbers of a
known data set, worked out here from the pure core, appear on the page. The screenshot is
kept in test-output/dashboard.png."""

from __future__ import annotations

import shutil
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from schemas.models import type_name_of
from streams.core.plan import plan_event
from streams.demo import wait_accounted
from streams.simulate import Simulation
from streams.wiring import rules

from ..harness import minute_mismatches, traffic, unique
from .conftest import Running

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
# headless, and no background traffic: CI machines and store networks may have no internet
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
PANELS = 10


def expected(sim: Simulation, stack: Running) -> dict:
    """GMV online and offline and per store, from the distinct events (pure core)."""
    now = datetime.now(UTC)
    configured = rules(stack.settings)
    sides: dict[str, Decimal] = defaultdict(Decimal)
    stores: dict[str, Decimal] = defaultdict(Decimal)
    for record in unique(sim.messages or []):
        plan = plan_event(type_name_of(record), record, configured, now)
        if plan.touchpoint_type in ("store_scan", "app_order") and plan.amount > 0:
            sides["offline" if plan.channel == "store" else "online"] += plan.amount
            if plan.store_id:
                stores[plan.store_id] += plan.amount
    top = min(stores.items(), key=lambda kv: (-kv[1], kv[0]))  # the query's order
    return {"sides": dict(sides), "top_store": top}


def test_the_dashboard_shows_the_numbers_of_a_known_data_set(
    run_stack: Callable[..., Running],
) -> None:
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: make test installs it"
    stack = run_stack(workers=1)
    sim = traffic(stack, 1500, seed=81)
    wait_accounted(stack.views, stack.endpoints, 1500, timeout=180)
    assert minute_mismatches(stack, sim.messages or [], timeout=60) == []
    want = expected(sim, stack)
    assert stack.sink is not None
    url = f"http://127.0.0.1:{stack.sink.port}/dashboard/"

    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            failed: list[str] = []
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.goto(url)
            page.wait_for_function(
                f"window.omniDashboard && window.omniDashboard.refreshes >= 1 && "
                f"Object.keys(window.omniDashboard.charts).length === {PANELS}",
                timeout=30_000,
            )
            drawn = page.evaluate(
                """() => Object.fromEntries(Object.entries(window.omniDashboard.charts).map(
                    ([name, chart]) => {
                      const c = chart.canvas, px = c.getContext('2d')
                        .getImageData(0, 0, c.width, c.height).data;
                      let ink = 0;
                      for (let i = 3; i < px.length; i += 4) if (px[i] > 0) ink++;
                      const points = chart.data.datasets.reduce((a, d) => a + d.data.length, 0);
                      return [name, {points, ink}];
                    }))"""
            )
            headline = {
                name: page.inner_text(f"#panel-{name} .headline")
                for name in ("online_offline_split", "store_leaderboard", "gmv_per_minute")
            }
            page.screenshot(path=str(OUTPUT / "dashboard.png"), full_page=True)
            # it refreshes on its own
            page.wait_for_function("window.omniDashboard.refreshes >= 2", timeout=15_000)
        finally:
            browser.close()

    assert failed == []  # every script came from the sink itself
    assert page.url.startswith("http://127.0.0.1")
    for side, gmv in want["sides"].items():
        assert f"{side} {gmv:.2f}" in headline["online_offline_split"]
    store, gmv = want["top_store"]
    assert headline["store_leaderboard"] == f"top {store} {gmv:.2f}"
    total = sum(want["sides"].values(), Decimal(0))
    assert headline["gmv_per_minute"].startswith(f"GMV {total:.2f} ")
    # every panel drew something; the ones this data set fills have points
    assert all(d["ink"] > 0 for d in drawn.values()), drawn
    empty = {n for n, d in drawn.items() if d["points"] == 0}
    assert empty <= {"low_stock"}, drawn
