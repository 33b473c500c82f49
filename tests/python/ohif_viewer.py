"""The OHIF viewer radassist serves, in a real browser, for tests/viewer.rs: a radiologist logs
in, opens a drafted study from the reading room's "Open in viewer", waits for the film to be
drawn, opens radassist's measurement report (series 9002) and tracks its measurements, and
reads the measurement panel; then a QA user logs in and asks for the viewer. Prints one JSON
object with what it saw; the test decides.

    ohif_viewer.py BASE_URL STUDY_UID SCREENSHOT_DIR   (passwords as JSON on stdin:
                                                         {"radiologist": [name, password],
                                                          "qa": [name, password]})
"""
import json
import statistics
import sys

from browser import chromium
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

base, study, shots = sys.argv[1], sys.argv[2], sys.argv[3]
people = json.loads(sys.stdin.readline())
seen = {}

# The viewport's canvas as grey levels: how much it varies (a film drawn varies; a blank or
# uniform viewport does not).
CANVAS_SPREAD = """
const canvas = document.querySelector('[data-cy="viewport-pane"] canvas.cornerstone-canvas')
  || document.querySelector('[data-cy="viewport-pane"] canvas');
if (!canvas || !canvas.width) return null;
const copy = document.createElement('canvas');
copy.width = 128; copy.height = 128;
const g = copy.getContext('2d');
g.drawImage(canvas, 0, 0, 128, 128);
const data = g.getImageData(0, 0, 128, 128).data;
const grey = [];
for (let i = 0; i < data.length; i += 4) grey.push((data[i] + data[i + 1] + data[i + 2]) / 3);
return grey;
"""


def log_in(d, who):
    name, password = people[who]
    d.delete_all_cookies()
    d.get(base + "/login")
    d.find_element(By.ID, "username").send_keys(name)
    d.find_element(By.ID, "password").send_keys(password)
    d.find_element(By.ID, "login").click()
    WebDriverWait(d, 30).until(lambda _: "/login" not in d.current_url)


def spread(d):
    grey = d.execute_script(CANVAS_SPREAD)
    return statistics.pstdev(grey) if grey else 0.0


d = chromium()
wait = WebDriverWait(d, 90)
try:
    log_in(d, "radiologist")
    d.get(f"{base}/studies/{study}")
    link = d.find_element(By.ID, "open-viewer")
    seen["link"] = link.get_attribute("href")
    reading_room = d.current_window_handle
    link.click()
    wait.until(lambda _: len(d.window_handles) == 2)
    d.switch_to.window([h for h in d.window_handles if h != reading_room][0])
    # The film: its thumbnail listed, then the viewport drawn with it.
    wait.until(lambda _: d.find_elements(By.CSS_SELECTOR, '[data-cy="study-browser-thumbnail"]'))
    wait.until(lambda _: spread(d) > 10)
    seen["film_spread"] = spread(d)
    seen["series"] = d.execute_script(
        "return [...document.querySelectorAll('[data-series]')].map(e => e.getAttribute('data-series'))")
    d.save_screenshot(f"{shots}/ohif-film.png")
    # radassist's measurement report: shown, then its measurements tracked.
    report = d.find_element(By.CSS_SELECTOR, '[data-series="9002"]')
    ActionChains(d).double_click(report).perform()
    hydrate = wait.until(lambda _: d.find_elements(By.CSS_SELECTOR, 'button[name="yes-hydrate"]'))
    hydrate[0].click()
    if not d.find_elements(By.CSS_SELECTOR, '[data-cy="trackedMeasurements-panel"]'):
        d.find_element(By.CSS_SELECTOR, '[data-cy="trackedMeasurements-btn"]').click()
    wait.until(lambda _: d.find_elements(By.CSS_SELECTOR, '[data-cy="data-row-title"]'))
    seen["measurements"] = d.execute_script("""
        return [...document.querySelectorAll('[data-cy^="measurement-table-row-"]')].map(row => ({
          title: (row.querySelector('[data-cy="data-row-title"]') || {}).innerText || '',
          details: (row.innerText || ''),
        }));""")
    wait.until(lambda _: spread(d) > 10)
    seen["measured_film_spread"] = spread(d)
    d.save_screenshot(f"{shots}/ohif-measurements.png")
    # The summary image: its thumbnail drawn into the viewport.
    summary = d.find_element(By.CSS_SELECTOR, '[data-series="9004"]')
    ActionChains(d).double_click(summary).perform()
    wait.until(lambda _: spread(d) > 10)
    seen["summary_spread"] = spread(d)
    d.save_screenshot(f"{shots}/ohif-summary.png")
    seen["policy_violations"] = [
        e["message"] for e in d.get_log("browser") if "Content Security Policy" in e["message"]
    ]
    d.close()
    d.switch_to.window(reading_room)

    # QA staff: the viewer is for those who read films.
    log_in(d, "qa")
    d.get(f"{base}/viewer/viewer?StudyInstanceUIDs={study}")
    seen["qa_page"] = d.find_element(By.TAG_NAME, "body").text
    seen["qa_config_status"] = d.execute_script(
        "return fetch('/viewer/app-config.js').then(r => r.status)")
except TimeoutException as e:
    seen["timeout"] = str(e)
    d.save_screenshot(f"{shots}/ohif-failure.png")
finally:
    d.quit()
print(json.dumps(seen))
