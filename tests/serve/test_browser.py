"""The web page in a real headless browser (Debian's chromium + chromium-driver, driven by
Selenium) against a real server process: type, submit, wait for the result, check the DOM
against the API's own answer, and save a screenshot (to ``$LSTMKIT_ARTIFACTS`` when set,
else the test's temporary directory)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import pytest

from tests.serve.fixtures import QUIET, _train
from tests.serve.test_process import free_port, start_server, wait_ready
from tests.serve.test_tasks import TINY_TRANSLATE

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
    "chromium-driver; .ci/run installs them)",
)


@pytest.fixture(scope="module")
def server(model_dirs, tmp_path_factory):
    hourly = _train(
        "forecast",
        {"train": {**QUIET, "max_steps": 2}},
        tmp_path_factory.mktemp("forecast") / "hourly",
    )
    de_en = _train("translate", TINY_TRANSLATE, tmp_path_factory.mktemp("translate") / "de-en")
    speech = {"model": {"hidden_size": 12, "num_layers": 1}, "train": {**QUIET, "max_steps": 2}}
    digits = _train("speech", speech, tmp_path_factory.mktemp("speech") / "digits")
    port = free_port()
    proc = start_server(
        "--model",
        f"imdb={model_dirs['imdb']}",
        "--model",
        f"chars={model_dirs['chars']}",
        "--model",
        f"hourly={hourly}",
        "--model",
        f"de-en={de_en}",
        "--model",
        f"digits={digits}",
        port=port,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1200,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, server):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server + "/")
    WebDriverWait(browser, 20).until(
        lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "true"
    )
    return browser


def artifacts(tmp_path: Path) -> Path:
    out = Path(os.environ.get("LSTMKIT_ARTIFACTS", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    return out


def choose(driver, element_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", element_id)).select_by_value(value)


def wait_text(driver, element_id: str, seconds: float = 20) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    element = driver.find_element("id", element_id)
    WebDriverWait(driver, seconds).until(lambda d: element.text.strip())
    return element.text


def test_sentiment_label_probability_and_heatmap(page, server, tmp_path):
    review = "A moving, beautifully shot film."
    choose(page, "model", "imdb")
    assert page.find_element("id", "widget-sentiment").is_displayed()
    page.find_element("id", "review").send_keys(review)
    page.find_element("id", "classify").click()
    label = wait_text(page, "label")
    api = httpx.post(f"{server}/v1/models/imdb/gates", json={"text": review}).json()
    assert label == api["label"]
    assert page.find_element("id", "probability").text == f"{api['probability']:.4f}"
    spans = page.find_elements("css selector", "#heatmap span")
    assert [s.text for s in spans] == api["tokens"]
    values = [float(s.get_attribute("data-value")) for s in spans]
    assert values == pytest.approx(api["gates"]["i"])
    choose(page, "gate", "c")  # redraws from the same answer
    spans = page.find_elements("css selector", "#heatmap span")
    values = [float(s.get_attribute("data-value")) for s in spans]
    assert values == pytest.approx(api["gates"]["c"])
    page.save_screenshot(str(artifacts(tmp_path) / "sentiment.png"))


def test_generation_streams_into_the_page(page, server, tmp_path):
    choose(page, "model", "chars")
    assert page.find_element("id", "widget-generate").is_displayed()
    page.find_element("id", "prompt").send_keys("the ")
    for field, value in (("max-new", "40"), ("temperature", "0.5"), ("seed", "4")):
        page.find_element("id", field).clear()
        page.find_element("id", field).send_keys(value)
    page.find_element("id", "generate").click()
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(page, 20).until(lambda d: d.find_element("id", "gen-status").text == "done")
    options = {"prompt": "the ", "max_new_tokens": 40, "temperature": 0.5, "seed": 4}
    with httpx.stream("POST", f"{server}/v1/models/chars/generate", json=options) as r:
        last = [line for line in r.iter_lines() if line.startswith("data: ")][-1]
    expected = json.loads(last[len("data: ") :])["text"]
    # the page shows the streamed text as it is (a <pre>: newlines kept)
    shown = page.execute_script("return document.getElementById('generated').textContent")
    assert shown == expected and len(expected) == 40
    page.save_screenshot(str(artifacts(tmp_path) / "generate.png"))


def test_generic_widget_and_errors_on_the_page(page, server, tmp_path):
    choose(page, "model", "imdb")
    page.find_element("id", "raw").click()
    assert page.find_element("id", "widget-generic").is_displayed()
    page.find_element("id", "generic-input").send_keys("Dull.")
    page.find_element("id", "predict").click()
    shown = json.loads(wait_text(page, "generic-output"))
    api = httpx.post(f"{server}/v1/models/imdb/predict", json={"inputs": ["Dull."]}).json()
    assert shown == api["outputs"][0]
    page.find_element("id", "generic-input").clear()
    page.find_element("id", "generic-input").send_keys("[1, 2]")  # JSON: not a text
    page.find_element("id", "predict").click()
    assert wait_text(page, "error") == "inputs: input 1 is a list, not a text (HTTP 422)"
    page.save_screenshot(str(artifacts(tmp_path) / "generic-error.png"))


def test_forecast_plot(page, server, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    history = [10 + t % 24 + t / 50 for t in range(120)]
    choose(page, "model", "hourly")
    assert page.find_element("id", "widget-forecast").is_displayed()
    page.find_element("id", "series").send_keys(" ".join(f"{v:g}" for v in history))
    page.find_element("id", "forecast").click()
    WebDriverWait(page, 20).until(lambda d: d.find_elements("id", "forecast-line"))
    api = httpx.post(f"{server}/v1/models/hourly/predict", json={"inputs": [history]}).json()
    out = api["outputs"][0]
    forecast = out["forecast"]

    def points(element_id: str) -> list[tuple[float, float]]:
        raw = page.find_element("id", element_id).get_attribute("points").split()
        return [tuple(map(float, p.split(","))) for p in raw]

    past, future = points("history-line"), points("forecast-line")
    assert (len(past), len(future)) == (120, 48)
    # the plot's y is linear in the value: the drawn forecast's shape is the API's
    values = history + forecast + out["lower"] + out["upper"]  # the plot's scale spans all
    lo, hi = min(values), max(values)
    height = 240 - 20
    drawn = [lo + (240 - 10 - y) / height * (hi - lo) for _, y in future]
    assert drawn == pytest.approx(forecast, abs=(hi - lo) * 1e-6)
    assert len(page.find_elements("css selector", "#plot polygon")) == 1  # the interval
    page.save_screenshot(str(artifacts(tmp_path) / "forecast.png"))


def test_translation_with_its_attention_map(page, server, tmp_path):
    sentence = "Ein Mann fährt Fahrrad."
    choose(page, "model", "de-en")
    assert page.find_element("id", "widget-translate").is_displayed()
    page.find_element("id", "source").send_keys(sentence)
    page.find_element("id", "translate").click()
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(page, 20).until(lambda d: d.find_elements("css selector", "#attention td"))
    api = httpx.post(f"{server}/v1/models/de-en/attention", json={"text": sentence}).json()
    shown = page.execute_script("return document.getElementById('translation').textContent")
    assert shown == api["translation"]
    rows = page.find_elements("css selector", "#attention tr")
    assert len(rows) == 1 + len(api["target_tokens"])
    header = [c.text for c in rows[0].find_elements("css selector", "td")][1:]
    assert header == api["source_tokens"]
    for row, expected in zip(rows[1:], api["weights"]):
        cells = row.find_elements("css selector", "td")[1:]
        assert [float(c.get_attribute("data-value")) for c in cells] == pytest.approx(expected)
    page.save_screenshot(str(artifacts(tmp_path) / "translate.png"))


def test_speech_wav_upload(page, server, tmp_path):
    import tarfile

    from lstmkit.tasks.speech.task import SAMPLE as FSDD_SAMPLE

    with tarfile.open(FSDD_SAMPLE) as tar:
        wav = tar.extractfile("recordings/3_theo_5.wav").read()
    path = tmp_path / "3_theo_5.wav"
    path.write_bytes(wav)
    choose(page, "model", "digits")
    assert page.find_element("id", "widget-speech").is_displayed()
    page.find_element("id", "wav").send_keys(str(path))  # the file chooser, as a user picks
    page.find_element("id", "transcribe").click()
    shown = wait_text(page, "transcript")
    api = httpx.post(
        f"{server}/v1/models/digits/transcribe", content=wav, headers={"content-type": "audio/wav"}
    ).json()
    assert shown == api["transcript"] and shown in [str(d) for d in range(10)]
    page.save_screenshot(str(artifacts(tmp_path) / "speech.png"))
    # a file that is not a WAV: the server's 4xx message shown on the page
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    page.find_element("id", "wav").send_keys(str(text))
    page.find_element("id", "transcribe").click()
    error = wait_text(page, "error")
    assert "(HTTP 4" in error and "WAV" in error, error
