"""The dashboard in a real browser (Debian's Chromium through Playwright), loaded from the URL the
deploy prints, against a private stage: idle at first, then during a burst its charts fill and
its state goes from idle through scaling up to draining; the numbers it shows for a closed
minute are CloudWatch's; the burst's report opens as a link; no console errors; light and dark
both readable. Screenshots go to .localcloud/reports/."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser

from burst.run import BurstResult, run_burst
from burst.settings import BurstSettings
from chalicelib.dashboard_series import SERIES, Sources, charts_json, metric_data_queries
from localcloud.settings import EVENT_SOURCE_MAPPING_METRICS_NAMESPACE, Settings
from tests.browser import WatchedPage, chromium, open_page
from tests.e2e.conftest import Stage, deployed_stage
from tests.polling import wait_for

# Room to climb: from 5 batches at once to 20 at AWS's 300 a minute takes 3 s, seen as
# "scaling up" by a page that polls every 2 s.
MAX_CONCURRENCY = 20
# Five waves of 20 batches of 10 half-second tasks: the plateau outlasts the page's 10-s "rising"
# window by about 10 s, so "draining" shows while batches still run (with three 3-s waves the
# burst could end inside that window and the page go from "scaling up" straight to "idle").
TASKS = 1000
SLEEP_MS = 500
RATE = 250  # tasks a second, for 4 s
WCAG_AA_TEXT_CONTRAST = 4.5


@pytest.fixture(scope="module")
def dashboard_stage(
    local_cloud: dict[str, Any],
    localcloud_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stage]:
    with deployed_stage(
        local_cloud,
        localcloud_settings,
        tmp_path_factory.mktemp("dashboard"),
        worker_timeout_seconds=10,
        visibility_timeout_seconds=60,
    ) as stage:
        stage.update_mapping(ScalingConfig={"MaximumConcurrency": MAX_CONCURRENCY})
        yield stage


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


Opener = Callable[..., WatchedPage]


@pytest.fixture
def open_(browser: Browser) -> Iterator[Opener]:
    """open_page for this test; every page it opened is closed after it (an open page polls)."""
    opened: list[WatchedPage] = []

    def opener(url: str, color_scheme: str = "light") -> WatchedPage:
        opened.append(open_page(browser, url, color_scheme=color_scheme))
        return opened[-1]

    yield opener
    for page in opened:
        page.close()


def wait_for_state(page: WatchedPage, state: str, seconds: float = 30) -> None:
    wait_for(page.state, lambda s: s == state, seconds, f"the page to say {state}")


def test_the_page_opens_from_the_printed_url_and_says_idle(
    dashboard_stage: Stage, open_: Opener
) -> None:
    url = dashboard_stage.deployment.dashboard_url
    assert url.startswith("http://") and ".s3-website.localhost:" in url

    page = open_(url)
    wait_for_state(page, "idle")

    assert set(page.points()) == {chart["id"] for chart in charts_json()}
    settings = page.page.locator("[data-setting='maximum_concurrency']").inner_text()
    assert str(MAX_CONCURRENCY) in settings
    assert page.page.locator("#state").inner_text().lower().startswith("idle")
    page.screenshot("dashboard-idle-light.png")
    assert page.errors == []


def test_during_a_burst_the_page_climbs_and_drains_then_matches_cloudwatch(
    dashboard_stage: Stage, open_: Opener, tmp_path: Path
) -> None:
    page = open_(dashboard_stage.deployment.dashboard_url)
    wait_for_state(page, "idle")
    result = burst_while_watching(dashboard_stage, page, tmp_path)

    report = result.report
    assert report["integrity"]["ok"] and report["done"] == TASKS
    assert_the_report_opens_from_its_link(open_, result)
    states = page.page.evaluate("window.__statesSeen")
    details = page.page.evaluate("window.__statesDetail")
    assert in_order(states, ["idle", "scaling_up", "draining"]), details
    assert page.errors == []

    # A closed minute: every metric of it published, the page has polled since.
    time.sleep(3)
    end = int(time.time()) - 2
    start = end - 60
    shown = page.page.evaluate("([start, end]) => window.dashboardData(start, end)", [start, end])
    expected = cloudwatch_series(dashboard_stage, start, end)
    compared = 0
    for key, values in expected.items():
        assert shown["series"][key] == pytest.approx(values, abs=1e-3, nan_ok=True), key
        compared += sum(v is not None for v in values)
    assert compared > 100  # the burst's minute had data in many series


def assert_the_report_opens_from_its_link(open_: Opener, result: BurstResult) -> None:
    """The link the burst printed opens the run's view, every chart drawn."""
    assert result.dashboard_link is not None
    assert result.dashboard_link.endswith(f"#report={result.report['run_id']}")
    page = open_(result.dashboard_link)
    wait_for(
        lambda: page.page.evaluate("document.body.dataset.view"),
        lambda view: view == "report",
        10,
        "the report view",
    )
    wait_for(page.points, lambda p: bool(p) and all(n > 0 for n in p.values()), 10, "its charts")
    listed = page.page.evaluate("fetch('reports/index.json').then(r => r.json())")
    assert listed["runs"][0]["run_id"] == result.report["run_id"]
    page.screenshot("dashboard-report-light.png")
    assert page.errors == []
    page.close()


def burst_while_watching(stage: Stage, page: WatchedPage, out: Path) -> BurstResult:
    """Run the burst on a thread and sample the page's state while it runs."""
    settings = BurstSettings(
        profile="steady",
        count=TASKS,
        rate=RATE,
        duration=TASKS // RATE,
        task_type="sleep",
        payload_options={"sleep_ms": SLEEP_MS},
        batch=50,
        threads=8,
        max_seconds=30,
        drain_seconds=120,
        out_dir=out,
        progress=False,
    )
    results: list[BurstResult] = []
    worker = threading.Thread(target=lambda: results.append(run_burst(stage.target(), settings)))
    page.page.evaluate("window.__statesSeen = []; window.__statesDetail = []")
    worker.start()
    shot = False
    # The page lags CloudWatch by up to a poll: keep watching until it, too, says idle.
    settled_by: float | None = None
    while True:
        state = page.state()
        page.page.evaluate(
            "(s) => { const seen = window.__statesSeen; "
            "if (seen[seen.length - 1] !== s) { seen.push(s); window.__statesDetail.push("
            "[Date.now() / 1000, s, document.querySelector('#state').innerText]); } }",
            state,
        )
        if state in ("at_maximum", "draining") and not shot:
            time.sleep(2)  # let the charts show the plateau
            page.screenshot("dashboard-burst-light.png")
            page.page.emulate_media(color_scheme="dark")
            page.screenshot("dashboard-burst-dark.png")
            page.page.emulate_media(color_scheme="light")
            shot = True
        if not worker.is_alive():
            settled_by = settled_by or time.monotonic() + 30
            if state == "idle" or time.monotonic() > settled_by:
                break
        time.sleep(0.25)
    worker.join()
    points = page.points()
    assert all(points[chart] > 0 for chart in ("queue", "concurrency", "throughput", "latency"))
    page.page.click("[data-range='60']")  # the whole burst, climb and fall, in the last minute
    time.sleep(2)
    page.screenshot("dashboard-after-burst-light.png")
    [result] = results
    return result


def in_order(seen: list[str], wanted: list[str]) -> bool:
    """Whether `wanted` occurs in `seen` in this order (other states may come between)."""
    remaining = iter(seen)
    return all(any(s == w for s in remaining) for w in wanted)


def cloudwatch_series(stage: Stage, start: int, end: int) -> dict[str, list[float | None]]:
    """The same series straight from CloudWatch (get-metric-data), per second."""
    outputs = stage.deployment.outputs
    sources = Sources.of(
        worker_function=stage.worker_function,
        task_queue=outputs["TaskQueueName"],
        dead_letter_queue=outputs["DeadLetterQueueName"],
        app_namespace="ServerlessScaling",
        app_dimensions={"service": "serverless-scaling", "stage": outputs["Stage"]},
        mapping_namespace=EVENT_SOURCE_MAPPING_METRICS_NAMESPACE,
        mapping_uuid=stage.mapping_uuid,
    )
    answer = stage.client("cloudwatch").get_metric_data(
        MetricDataQueries=metric_data_queries(sources, 1),
        StartTime=datetime.fromtimestamp(start, UTC),
        EndTime=datetime.fromtimestamp(end, UTC),
        ScanBy="TimestampAscending",
    )
    series: dict[str, list[float | None]] = {}
    for result in answer["MetricDataResults"]:
        values: list[float | None] = [None] * (end - start)
        for moment, value in zip(result["Timestamps"], result["Values"], strict=True):
            values[int(moment.timestamp()) - start] = value
        series[SERIES[int(result["Id"][1:])].key] = values
    return series


# The colour of each text element and of the first opaque background behind it.
TEXT_COLOURS = """() => {
    const background = (node) => {
        for (; node; node = node.parentElement) {
            const colour = getComputedStyle(node).backgroundColor;
            if (colour !== 'rgba(0, 0, 0, 0)' && colour !== 'transparent') return colour;
        }
        return 'rgb(255, 255, 255)';
    };
    return [...document.querySelectorAll('h1, h2, h3, #state, [data-setting], [data-current]')]
        .filter((e) => e.innerText.trim())
        .map((e) => [e.tagName + (e.id ? '#' + e.id : ''), getComputedStyle(e).color,
                     background(e)]);
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_both_themes_are_readable(dashboard_stage: Stage, open_: Opener, scheme: str) -> None:
    page = open_(dashboard_stage.deployment.dashboard_url, color_scheme=scheme)
    wait_for_state(page, "idle")

    colours = page.page.evaluate(TEXT_COLOURS)

    assert len(colours) >= 5
    for element, foreground, background in colours:
        ratio = contrast(foreground, background)
        assert ratio >= WCAG_AA_TEXT_CONTRAST, (scheme, element, foreground, background, ratio)
    page.screenshot(f"dashboard-idle-{scheme}.png")
    assert page.errors == []


def contrast(foreground: str, background: str) -> float:
    """WCAG 2 contrast ratio of two CSS rgb()/rgba() colours (alpha ignored)."""

    def luminance(colour: str) -> float:
        channels = [float(c) / 255 for c in colour[colour.index("(") + 1 : -1].split(",")[:3]]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    lighter, darker = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)
