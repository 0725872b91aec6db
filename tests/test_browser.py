"""`genopt dashboard` in a real browser: headless Chromium renders the study's pages, and every check
reads the rendered page (what is shown, which images loaded), not the API's JSON.

Chromium is Debian's `chromium` package (.ci/run installs it), driven by Playwright for Python (the
`dev` extra) through its `executable_path`: Playwright's own browser downloads are never used. Where
Chromium cannot start, the tests skip with one line saying why; in CI (CI=true) they fail instead.
"""

from __future__ import annotations

import os
import re
import shutil

import optuna
import pytest
from cli_runner import running_dashboard

from genopt.study.record.note import comparison_url
from genopt.study.record.records import TrialRecord

pytestmark = pytest.mark.slow  # the shared tiny study, a dashboard process and a browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Headless on a closed network: no sandbox (root), no GPU, and none of Chromium's own connections.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000


def unavailable(why: str):
    """Skip with one line, or in CI fail: there the browser test must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser test must run in CI: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (a fresh profile of Playwright's), closed at the end of the module."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright is not installed: pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, timeout=WAIT_MS)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            unavailable(f"Chromium ({CHROMIUM}) cannot start: {first}; install Debian's chromium package")
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def dashboard(tiny_study):
    with running_dashboard(tiny_study.url) as url:
        yield url


@pytest.fixture(scope="module")
def context(browser):
    """One browser context (one cache) for the module's pages."""
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    context.set_default_timeout(WAIT_MS)
    yield context
    context.close()


@pytest.fixture
def page(context, dashboard, tiny_study):
    """A new page on the study's own page, reached as a person does: from the list of studies."""
    page = context.new_page()
    page.goto(f"{dashboard}/dashboard")
    page.locator("a[href*='/dashboard/studies/']", has_text=tiny_study.name).first.click()
    page.wait_for_url(re.compile(r".*/dashboard/studies/\d+$"))
    yield page
    page.close()


def trials(tiny_study) -> list[TrialRecord]:
    study = optuna.load_study(study_name=tiny_study.name, storage=tiny_study.url)
    return [TrialRecord.of(t) for t in study.get_trials(deepcopy=False)]


def loaded(page, suffix: str) -> None:
    """Wait until an image whose address ends with ``suffix`` is shown, decoded, with pixels."""
    shown = "i => i.src.endsWith(suffix) && i.complete && i.naturalWidth > 0"
    page.wait_for_function(f"suffix => [...document.images].some({shown})", arg=suffix)


def test_the_study_page_names_its_metric(page):
    # The history plot's y axis, as Plotly drew it, and its y-axis chooser: the metric's name.
    page.locator("text.ytitle", has_text="intra-FID").first.wait_for()
    assert page.get_by_text("intra-FID", exact=True).first.is_visible()
    assert page.get_by_text("Objective 0").count() == 0


def test_a_trial_page_shows_its_sample_grid_fetched_with_status_200(page, tiny_study):
    record = trials(tiny_study)[2]
    page.locator("a[href$='/trials']").first.click()
    with page.expect_response(lambda r: r.url.endswith(f"/{record.samples}")) as grid:
        page.get_by_text("Trial 2", exact=True).click()
    assert grid.value.status == 200 and grid.value.header_value("content-type") == "image/png"
    loaded(page, f"/{record.samples}")
    assert page.get_by_text(f"samples-trial{record.number}.png").is_visible()


def test_selecting_trials_shows_each_ones_sample_grid_side_by_side(page, tiny_study):
    page.locator("a[href$='/smartSelection']").first.click()
    page.get_by_label("Show Artifacts").check()
    for record in trials(tiny_study):
        loaded(page, f"/{record.samples}")
    shown = page.locator("img[src*='/artifacts/']").evaluate_all("images => images.map(i => i.src)")
    assert sorted(src.rsplit("/", 1)[1] for src in shown) == sorted(r.samples for r in trials(tiny_study))


def test_the_note_shows_the_best_trials_side_by_side(page, tiny_study):
    url = comparison_url(tiny_study.name)
    with page.expect_response(lambda r: r.url.endswith(url)) as picture:
        page.locator("a[href$='/note']").first.click()
    assert picture.value.status == 200 and picture.value.header_value("content-type") == "image/png"
    loaded(page, url)
    image = page.locator(f"img[src='{url}']")
    assert image.is_visible()
    # Four trials' columns of ten class rows, not the one line shown before any trial finished.
    width, height = image.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert width > 600 and height > 500
    assert page.get_by_text("The best trials side by side", exact=True).is_visible()
