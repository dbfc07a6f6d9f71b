"""The playground page in a real browser (Debian's Chromium, driven by Playwright) against the real
stack: the gateway's HTTP edge, a real worker process and the shipped model (tests/clients/real_stack.py).

Set ATELIER_SCREENSHOTS=DIR to keep the page's screenshots (docs/ holds the committed ones).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import requests
from PIL import Image
from playwright.sync_api import Page, expect, sync_playwright

from tests.clients.real_stack import EMOJI_JOB, assert_emoji, real_stack  # noqa: F401

UI_SECONDS = 120.0  # the first job waits for the worker to load its model; the page's own work included
# A job long enough to reload or cancel in the middle of: 64 images of 150 steps.
LONG_JOB = dict(steps="150", count="16")


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is missing: `make setup` installs Debian's chromium package"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, real_stack) -> Page:  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    context.set_default_timeout(UI_SECONDS * 1000)
    expect.set_options(timeout=UI_SECONDS * 1000)
    page = context.new_page()
    page.goto(f"{real_stack.http_address}/#key={real_stack.api_key}")
    expect(page.locator("#connection")).to_contain_text("model")
    yield page
    context.close()


def fill_job(page: Page, prompt: str, **fields) -> None:
    page.fill("#prompt", prompt)
    job = {**EMOJI_JOB, **fields}
    page.select_option("#style", job["style"])
    page.select_option("#sampler", f"SAMPLER_{job['sampler'].upper()}")
    page.fill("#steps", str(job["steps"]))
    if "count" in job:
        page.fill("#count", str(job["count"]))
    if "seed" in job:
        page.fill("#seed", str(job["seed"]))


def screenshot(page: Page, name: str) -> None:
    folder = os.environ.get("ATELIER_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / name))


def test_type_a_prompt_watch_it_draw_and_download_the_png(page, real_stack, tmp_path):  # noqa: F811
    # The key arrived in the fragment: the page kept it and took it out of the address.
    assert "key=" not in page.url
    fill_job(page, "a grinning cat face", seed=7, count=2)
    page.click("#generate")
    expect(page.locator("#job-id")).not_to_be_empty()
    expect(page.locator("#progress-text")).to_contain_text("step")
    results = page.locator("#results figure.result img")
    expect(results).to_have_count(2)
    expect(page.locator("#job-state")).to_have_text("succeeded")
    expect(page.locator("#results figcaption").first).to_contain_text("seed 7")
    screenshot(page, "playground.png")

    with page.expect_download() as download:
        page.locator("#results a.download").first.click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name.endswith("-0-seed7.png")
    assert_emoji(saved.read_bytes(), real_stack.manifest)
    assert "parameters" in Image.open(saved).text  # the provenance written into the file

    # The page's image is the API's image for that seed.
    job_id = page.locator("#job-id").inner_text()
    api = requests.get(f"{real_stack.http_address}/v1/jobs/{job_id}/artifacts/0", timeout=10,
                       headers={"Authorization": f"Bearer {real_stack.api_key}"})
    assert api.content == saved.read_bytes()


def test_a_reload_mid_job_shows_the_job_where_it_is(page, real_stack):  # noqa: F811
    fill_job(page, "a red apple", **LONG_JOB)
    page.click("#generate")
    expect(page.locator("#progress-text")).to_contain_text("step")
    job_id = page.locator("#job-id").inner_text()
    step_before = int(page.locator("#progress").get_attribute("value") or 0)
    assert page.locator("#job-state").inner_text() != "succeeded"

    page.reload()
    # The job is in the address: the page follows it again, from its first event to where it is now.
    expect(page.locator("#job-id")).to_have_text(job_id)
    expect(page.locator("#progress-text")).to_contain_text("step")
    page.wait_for_function(f"document.getElementById('progress').value >= {step_before}")
    screenshot(page, "playground-running.png")
    page.click("#cancel")
    expect(page.locator("#job-state")).to_have_text("cancelled")


def test_cancel_stops_the_job(page, real_stack):  # noqa: F811
    fill_job(page, "a blue car", **LONG_JOB)
    page.click("#generate")
    expect(page.locator("#progress-text")).to_contain_text("step")
    page.click("#cancel")
    expect(page.locator("#job-state")).to_have_text("cancelled")
    expect(page.locator("#cancel")).to_be_disabled()
    job_id = page.locator("#job-id").inner_text()
    job = requests.get(f"{real_stack.http_address}/v1/jobs/{job_id}", timeout=10,
                       headers={"Authorization": f"Bearer {real_stack.api_key}"}).json()
    assert job["state"] == "JOB_STATE_CANCELLED"
    assert job["imagesDone"] < job["imagesTotal"]


def test_the_gallery_shows_past_jobs_and_reruns_one_with_a_new_seed(page, real_stack):  # noqa: F811
    fill_job(page, "a yellow star", seed=11)
    page.click("#generate")
    expect(page.locator("#job-state")).to_have_text("succeeded")
    first_job = page.locator("#job-id").inner_text()

    page.click("#tab-gallery")
    newest = page.locator(f"#gallery-items figure[data-job-id='{first_job}']")
    expect(newest).to_be_visible()
    expect(newest.locator("img")).to_have_count(1)
    page.wait_for_function(
        f"document.querySelector(\"figure[data-job-id='{first_job}'] img\").naturalWidth > 0")
    screenshot(page, "playground-gallery.png")

    newest.get_by_role("button", name="Copy as request").click()
    page.wait_for_function(f"document.querySelector(\"figure[data-job-id='{first_job}']\").dataset.request")
    copied = newest.get_attribute("data-request")
    assert '"prompt": "a yellow star"' in copied and '"11"' in copied

    newest.get_by_role("button", name="Re-run, new seed").click()
    expect(page.locator("#job-id")).not_to_have_text(first_job)
    expect(page.locator("#job-state")).to_have_text("succeeded")
    caption = page.locator("#results figcaption").first.inner_text()
    assert caption.startswith("seed ") and caption != "seed 11 · 32x32"
