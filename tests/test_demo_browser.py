"""The demo page in a real browser: headless Chromium replays human Omniglot drawings.

Needs Debian's ``chromium`` and ``chromium-driver`` packages and Selenium (the ``browser``
extra); skipped, with the reason, when they or the stroke files are missing. Set
``MINIREPTILE_DEMO_SCREENSHOT=docs/demo.png`` (a path that does not exist yet) to write the
README's screenshot.
"""

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from minireptile.data.strokes import StrokeArchive
from minireptile.demo import api
from minireptile.demo.networks import load_builtin
from minireptile.demo.server import DemoServer

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omniglot"
STROKES = DATA / "strokes_background_small2.zip"
HELD_OUT = ("Japanese_(katakana)", "Sanskrit", "Tagalog")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SETS = 20
SEED = 2018
DRAWN_SPAN = 90   # CSS pixels the larger side of a replayed drawing spans on a 120 px canvas
SPACING = 6       # CSS pixels between replayed points (about 1 pixel of the 28×28 image)
WAIT = 90         # seconds any one wait may take before the test fails

pytestmark = [
    pytest.mark.skipif(not STROKES.exists(),
                       reason=f"Omniglot stroke files not found at {STROKES} "
                       "(../shared/data/omniglot)"),
    pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                       reason="headless Chromium not installed (apt-get install chromium "
                       "chromium-driver)"),
]


def draw_sets():
    """SETS tasks of 3 held-out characters: drawer a's version of each for the classes,
    drawer b's version of one of them (the target) for the input."""
    rng = np.random.default_rng(SEED)
    with StrokeArchive(STROKES) as archive:
        characters = [c for c in sorted(archive.characters) if c.split("/")[0] in HELD_OUT]
        sets = []
        for _ in range(SETS):
            chosen = [characters[i] for i in rng.choice(len(characters), 3, replace=False)]
            a, b = rng.choice(20, 2, replace=False)
            target = int(rng.integers(3))
            names = [archive.characters[c][a] for c in chosen]
            sets.append({"characters": chosen, "target": target,
                         "classes": [archive.read(n) for n in names],
                         "input": archive.read(archive.characters[chosen[target]][b])})
    return sets


def canvas_offsets(strokes):
    """Integer offsets from the canvas centre for the points of each stroke, the drawing's
    box centred and its larger side DRAWN_SPAN pixels. Points closer than SPACING pixels to
    the last one kept are dropped (the stroke's last point is always kept): a pointer event
    costs the browser driver a round trip, and the 28×28 image hardly changes."""
    every = np.concatenate(strokes)
    low, high = every.min(axis=0), every.max(axis=0)
    scale = DRAWN_SPAN / max(np.max(high - low), 1e-9)
    out = []
    for stroke in strokes:
        points = np.rint((stroke - (low + high) / 2) * scale).astype(int)
        kept = [points[0]]
        for i, point in enumerate(points[1:], start=1):
            last = i == len(points) - 1
            if np.max(np.abs(point - kept[-1])) >= SPACING or (last and
                                                             np.any(point != kept[-1])):
                kept.append(point)
        out.append(np.array(kept).tolist())
    return out


@pytest.fixture(scope="module")
def server():
    demo = DemoServer(load_builtin(), "127.0.0.1", 0)
    demo.start_background()
    yield demo
    demo.shutdown()
    demo.server_close()


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver",
                                    reason="Selenium missing: pip install '.[browser]'")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="minireptile-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1200,640",
                 f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver, condition, what):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        value = driver.execute_script(condition)
        if value:
            return value
        time.sleep(0.05)
    state = driver.execute_script("return [window.demo && window.demo.state, "
                                  "document.getElementById('status').textContent]")
    raise AssertionError(f"timed out waiting for {what}; page state {state}")


def replay(driver, canvas, strokes, pointer_kind):
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    pointer = PointerInput(pointer_kind, f"pen-{pointer_kind}")
    actions = ActionBuilder(driver, mouse=pointer, duration=0)
    for stroke in canvas_offsets(strokes):
        actions.pointer_action.move_to(canvas, *stroke[0])
        actions.pointer_action.pointer_down()
        for point in stroke[1:]:
            actions.pointer_action.move_to(canvas, *point)
        actions.pointer_action.pointer_up()
    actions.perform()


def read_bars(driver, group):
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#' + arguments[0] + ' .bar-row'))"
        ".map(r => [Number(r.dataset.probability), r.querySelector('.bar-value').textContent,"
        " r.classList.contains('top')]);", group)


def test_replayed_human_drawings_match_the_api_and_are_recognised(server, browser):
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.by import By

    browser.get(server.url)
    wait_for(browser, "return window.demo && window.demo.state === 'ready'", "the example")
    sets = draw_sets()
    right = right_random = 0
    for number, task in enumerate(sets):
        browser.find_element(By.ID, "erase-all").click()
        wait_for(browser, "return window.demo.state === 'hidden'", "the bars to hide")
        before = browser.execute_script("return window.demo.answered")
        for c, strokes in enumerate(task["classes"]):
            canvas = browser.find_element(By.CSS_SELECTOR, f'canvas[data-role="class-{c}"]')
            replay(browser, canvas, strokes, interaction.POINTER_MOUSE)
        canvas = browser.find_element(By.CSS_SELECTOR, 'canvas[data-role="input"]')
        # The input is drawn with a touch pointer: the page takes mouse, pen and touch alike.
        replay(browser, canvas, task["input"], interaction.POINTER_TOUCH)
        wait_for(browser, f"return window.demo.state === 'ready' && "
                 f"window.demo.answered > {before}", f"the prediction of set {number}")
        sent = browser.execute_script("return window.demo.lastRequest")
        page = browser.execute_script("return window.demo.lastPrediction")

        # The page recorded the replayed points (as fractions of its canvas).
        width = browser.execute_script(
            "return arguments[0].getBoundingClientRect().width", canvas)
        recorded = [np.asarray(s) for s in sent["input"]["strokes"]]
        replayed = canvas_offsets(task["input"])
        assert [len(s) for s in recorded] == [len(s) for s in replayed]
        np.testing.assert_allclose(np.concatenate(recorded) * width - width / 2,
                                   np.concatenate(replayed), atol=1.0)

        # The JSON API answers the same strokes with the same numbers the bars show.
        answer = api.predict(server.predictor, json.loads(json.dumps(sent)))
        assert page["probabilities"] == answer["probabilities"]
        for group, result in (("bars-meta", answer), ("bars-random", answer["random_init"])):
            bars = read_bars(browser, group)
            assert [b[0] for b in bars] == result["probabilities"]
            assert [b[1] for b in bars] == [f"{100 * p:.1f}%" for p in result["probabilities"]]
            assert [b[2] for b in bars] == [i == result["predicted"] for i in range(3)]
        right += answer["predicted"] == task["target"]
        right_random += answer["random_init"]["predicted"] == task["target"]
        # The screenshot shows the first set that meta-learning gets right and the random
        # start gets wrong (or the last set).
        telling = (answer["predicted"] == task["target"]
                   and answer["random_init"]["predicted"] != task["target"])
        screenshot = os.environ.get("MINIREPTILE_DEMO_SCREENSHOT")
        if screenshot and (telling or number == SETS - 1) and not Path(screenshot).exists():
            assert browser.save_screenshot(screenshot)

    print(f"right class highest: meta-learned {right}/{SETS}, random start "
          f"{right_random}/{SETS}")
    assert right >= 0.8 * SETS, (right, right_random)

    # Erasing the input hides the predictions.
    bars = browser.find_element(By.ID, "bars")
    assert bars.is_displayed()
    browser.find_element(By.ID, "erase-input").click()
    wait_for(browser, "return window.demo.state === 'hidden'", "the bars to hide")
    assert not bars.is_displayed()
    png = browser.get_screenshot_as_png()
    assert png.startswith(b"\x89PNG")

    # Four classes: a fourth, empty column, its bars, and still no predictions.
    browser.execute_script("window.demo.setNumClasses(4)")
    assert len(browser.find_elements(By.CSS_SELECTOR, 'canvas[data-role="class-3"]')) == 1
    assert len(browser.find_elements(By.CSS_SELECTOR, "#bars-meta .bar-row")) == 4
    assert browser.execute_script("return window.demo.state") == "hidden"
