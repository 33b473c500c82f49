"""A worklist row whose Study Instance UID is not a DICOM UID (`9.9.9/../<another study's UID>`,
as a store from before ingest checked UIDs may hold), in a real browser: clicking it, or pressing
Enter on it, must not open the other patient's study; the other study's own row opens it.

Usage: decoy_row.py BASE_URL SCREENSHOT_FOLDER, then one JSON line on stdin:
{"radiologist": PASSWORD, "victim": UID}. Prints "ok" when every check passed."""
import json
import sys

from browser import chromium
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

BASE, SHOTS = sys.argv[1], sys.argv[2]
FACTS = json.loads(sys.stdin.readline())

d = chromium()
wait = WebDriverWait(d, 30)


def check(condition, message):
    if not condition:
        d.save_screenshot(f"{SHOTS}/decoy-failure.png")
        raise AssertionError(message)


try:
    d.get(BASE + "/login")
    d.find_element(By.ID, "username").send_keys("dr-legacy")
    d.find_element(By.ID, "password").send_keys(FACTS["radiologist"])
    d.find_element(By.ID, "login").click()
    wait.until(lambda _: "/worklist" in d.current_url)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "tr.invalid-uid")))
    decoy = d.find_element(By.CSS_SELECTOR, "tr.invalid-uid")
    check("DECOY" in decoy.text and "INVALID UID" in decoy.text, "the decoy row: " + decoy.text)
    check(not decoy.find_elements(By.CSS_SELECTOR, "a, form, button"),
          "the decoy row carries a link or a form")
    d.save_screenshot(f"{SHOTS}/worklist-invalid-uid.png")
    # Clicking the row, its name, and Enter on it: the worklist stays.
    decoy.click()
    decoy.find_element(By.CSS_SELECTOR, ".patient").click()
    d.find_element(By.TAG_NAME, "body").send_keys(Keys.ENTER)
    check(d.current_url.endswith("/worklist"), "the decoy row navigated to " + d.current_url)
    # The victim's own row opens the victim's study.
    victim = FACTS["victim"]
    d.find_element(By.CSS_SELECTOR, f'a.patient[href="/studies/{victim}"]').click()
    wait.until(lambda _: "/studies/" in d.current_url)
    check(d.current_url == f"{BASE}/studies/{victim}", "the victim's row opened " + d.current_url)
    check("VICTIM" in d.page_source, "the victim's page does not show the victim")
    print("ok", flush=True)
finally:
    d.quit()
