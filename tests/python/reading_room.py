"""The reading room in a real browser: Debian's chromium driven through chromium-driver by
selenium, against a radassist that tests/web.rs started and filled.

    reading_room.py URL SCREENSHOT_DIR

Reads JSON from its first stdin line: the users' passwords and the studies' UIDs. Writes
"ready-for-critical" when the worklist is open and waits for a line on stdin (the Rust test then
pushes a new critical study); writes "ready-for-new-draft" once the current study is claimed and
edited (the Rust test pushes another image of it and waits for its new draft); "ready-for-late-image" once the current study is signed and
waits again (the Rust test pushes a late image of that study and waits for its analysis); prints "first-image-ms N" and "ok" at the end. Any failed check
raises, so the exit status is not 0.
"""
import json
import sys

from browser import chromium
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

BASE, SHOTS = sys.argv[1], sys.argv[2]
FACTS = json.loads(sys.stdin.readline())
HOSTILE = "<img src=x onerror=window.__xss=1>"
HOSTILE_NAME = "<script>alert(1)</script>, <b>Bold</b>"


d = chromium()
wait = WebDriverWait(d, 30)


def check(condition, message):
    if not condition:
        d.save_screenshot(f"{SHOTS}/failure.png")
        raise AssertionError(message)


def say(line):
    print(line, flush=True)


def login(name, password, refused=False):
    d.delete_all_cookies()
    d.get(BASE + "/login")
    d.find_element(By.ID, "username").send_keys(name)
    d.find_element(By.ID, "password").send_keys(password)
    d.find_element(By.ID, "login").click()
    if refused:
        wait.until(ec.presence_of_element_located((By.ID, "login-failed")))
    else:
        wait.until(lambda _: "/login" not in d.current_url)


def status_of_page():
    return d.title.split(" ")[0]


def canvas_stats(canvas_id):
    return d.execute_script(
        """const c = document.getElementById(arguments[0]);
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let sum = 0, sq = 0, n = 0, hash = 0;
        for (let i = 0; i < px.length; i += 4) { const v = px[i]; sum += v; sq += v * v; n++; hash = (hash * 31 + v) | 0; }
        const mean = sum / n;
        return {mean: mean, sd: Math.sqrt(sq / n - mean * mean), hash: hash, w: c.width, h: c.height};""",
        canvas_id)


def no_script_ran():
    # An alert() would also have failed the next command (an unexpected alert).
    check(d.execute_script("return window.__xss === undefined"), "a hostile value ran as script")


# 1. A wrong password is refused.
login("dr-web", "not the password at all", refused=True)
check("/login" in d.current_url, "a wrong password left the login page: " + d.current_url)
d.save_screenshot(f"{SHOTS}/login.png")

# 2. The radiologist logs in; the critical study is first.
login("dr-web", FACTS["radiologist"])
wait.until(ec.presence_of_element_located((By.ID, "rows")))
rows = d.find_elements(By.CSS_SELECTOR, "#rows tr.item")
check(len(rows) >= 3, f"the worklist shows {len(rows)} studies")
check(rows[0].get_attribute("data-uid") == FACTS["critical"], "the critical study is not first")
check("critical" in rows[0].get_attribute("class"), "the first row is not marked critical")
check(d.find_elements(By.CSS_SELECTOR, "#rows tr.item .badge.critical"), "no critical device badge")

# 3. Hostile header values stay text.
names = [e.text for e in d.find_elements(By.CSS_SELECTOR, "#rows .patient")]
check(HOSTILE_NAME in names, f"the hostile Patient's Name is not shown as text: {names}")
check(not d.find_elements(By.CSS_SELECTOR, "#rows script, #rows b"), "a header value became an element")
no_script_ran()
check(not d.find_elements(By.LINK_TEXT, "QA") and not d.find_elements(By.LINK_TEXT, "Admin"),
      "a radiologist's menu offers QA or Admin")

# 4. A new critical study appears without a reload, with an alert.
wait.until(lambda _: "on" in d.find_element(By.ID, "live").get_attribute("class"))
say("ready-for-critical")
sys.stdin.readline()
wait.until(lambda _: d.find_elements(By.CSS_SELECTOR, f'#rows tr.item[data-uid="{FACTS["late_critical"]}"]'))
alert = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#alerts .critical-alert")))
check("New critical result" in alert.text, "the critical alert says: " + alert.text)
d.save_screenshot(f"{SHOTS}/worklist.png")

# 5. The keyboard alone opens a study: j moves, Enter opens.
first = d.find_element(By.CSS_SELECTOR, "#rows tr.item")
first.send_keys("j")
focused = d.switch_to.active_element.get_attribute("data-uid")
check(focused is not None, "j did not move the focus to a row")
# c claims the focused row's study and opens it; Release gives it back.
d.switch_to.active_element.send_keys("c")
wait.until(ec.presence_of_element_located((By.ID, "release")))
check(focused in d.current_url, f"c opened {d.current_url}, not {focused}")
check("claimed by dr-web" in d.find_element(By.CSS_SELECTOR, ".study-head").text, "c did not claim")
d.find_element(By.ID, "release").click()
wait.until(ec.presence_of_element_located((By.ID, "claim")))

# 6. Reading: the image is drawn, window/level changes it, the overlay toggles.
d.get(BASE + "/studies/" + FACTS["current"])
d.find_element(By.ID, "claim").click()
wait.until(ec.presence_of_element_located((By.ID, "release")))
wait.until(lambda _: d.find_element(By.ID, "current").get_attribute("data-drawn") == "true")
first_image_ms = d.execute_script(
    "const m = performance.getEntriesByName('radassist:first-image'); return m.length ? m[0].startTime : null")
check(first_image_ms is not None, "the page recorded no first image")
before = canvas_stats("current")
check(before["sd"] > 5, f"the drawn image is uniform: {before}")
canvas = d.find_element(By.ID, "current")
ActionChains(d).move_to_element(canvas).click_and_hold().move_by_offset(120, 60).release().perform()
after = canvas_stats("current")
check(after["hash"] != before["hash"] and abs(after["mean"] - before["mean"]) > 1,
      f"a window/level drag did not change the pixels: {before} -> {after}")
readout = d.find_element(By.ID, "wl-readout").text
marks = len(d.find_elements(By.CSS_SELECTOR, "#overlay circle.landmark"))
check(marks >= 4, f"the overlay shows {marks} landmarks")
d.find_element(By.ID, "toggle-overlay").click()
check(len(d.find_elements(By.CSS_SELECTOR, "#overlay circle.landmark")) == 0, "the overlay did not turn off")
d.find_element(By.ID, "toggle-overlay").click()
check(len(d.find_elements(By.CSS_SELECTOR, "#overlay circle.landmark")) == marks, "the overlay did not come back")
d.find_element(By.ID, "toggle-prior").click()
wait.until(lambda _: canvas_stats("prior")["sd"] > 5)
d.find_element(By.ID, "toggle-subtraction").click()
wait.until(lambda _: canvas_stats("subtraction")["sd"] > 1)
# Evidence: selecting the first sentence shows its evidence and marks its place.
d.find_element(By.CSS_SELECTOR, "#statements li").click()
evidence = d.find_element(By.ID, "evidence").text
check("Endotracheal" in evidence or "ett" in evidence.lower(), "the first sentence's evidence: " + evidence)
check(d.find_elements(By.CSS_SELECTOR, "#overlay circle.highlight"), "the sentence's place is not marked")
d.find_element(By.ID, "toggle-subtraction").click()
d.save_screenshot(f"{SHOTS}/reading.png")

# 7. An edit survives a reload; a device and a finding get the radiologist's verdict.
editor = d.find_element(By.ID, "editor")
editor.send_keys(Keys.END, " Radiologist's note: " + HOSTILE + ".")
select = d.find_element(By.CSS_SELECTOR, "select.device-agreement")
select.send_keys("agree")
wait.until(lambda _: d.find_element(By.ID, "save-state").get_attribute("data-saved") == "true")
d.refresh()
wait.until(ec.presence_of_element_located((By.ID, "editor")))
check(HOSTILE in d.find_element(By.ID, "editor").get_attribute("value"), "the edit did not survive a reload")
check(d.find_element(By.CSS_SELECTOR, "select.device-agreement").get_attribute("value") == "agree",
      "the device agreement did not survive a reload")

# 8. A POST without the CSRF token is refused.
refused = d.execute_script(
    "return fetch('/studies/' + arguments[0] + '/release', {method: 'POST'}).then(r => r.status)",
    FACTS["current"])
check(refused == 403, f"a POST without the CSRF token got {refused}")
check(d.find_elements(By.ID, "release"), "the study was released by a forged POST")

# 8b. A late image arrives while the study is claimed and edited (the Rust test pushes it and
# waits for the new draft): the claim is released, the edit kept, and the page says that the
# edit is based on the earlier draft and shows the new one.
check(not d.find_elements(By.ID, "draft-redone"), "a draft not made again says it was")
say("ready-for-new-draft")
check(sys.stdin.readline().strip() == "go", "the test did not push the image")
d.refresh()
notice = wait.until(ec.visibility_of_element_located((By.ID, "draft-redone")))
check("made again" in notice.text and "earlier draft" in notice.text, "the notice says: " + notice.text)
check(HOSTILE in d.find_element(By.ID, "editor").get_attribute("value"), "the edit was lost")
wait.until(lambda _: d.find_element(By.ID, "current").get_attribute("data-drawn") == "true")
d.execute_script("window.scrollTo(0, 0)")
d.save_screenshot(f"{SHOTS}/reading-draft-redone.png")
d.find_element(By.CSS_SELECTOR, "#draft-redone summary").click()
check(d.find_element(By.ID, "new-draft").text.startswith("FINDINGS:"), "the new draft is not shown")
d.find_element(By.ID, "claim").click()
wait.until(ec.presence_of_element_located((By.ID, "release")))

# 9. Sign, with the confirmation; the read is then read-only, the hostile text still text.
d.find_element(By.ID, "sign").click()
confirm = wait.until(ec.visibility_of_element_located((By.ID, "sign-confirm")))
confirm.click()
final = wait.until(ec.presence_of_element_located((By.ID, "final-text")))
check(HOSTILE in final.text, "the signed read does not show the radiologist's text")
check(not d.find_elements(By.CSS_SELECTOR, "#final-text img"), "the signed text became HTML")
check(not d.find_elements(By.ID, "editor"), "the signed read is still editable")
no_script_ran()

# 9b. A late image of the signed study arrives (the Rust test pushes it and waits for its
# analysis): the read stands, the open worklist shows the study again, marked, and the study
# page says why and opens the amendment form.
check(not d.find_elements(By.ID, "new-images"), "a study without late images says it has some")
say("ready-for-late-image")
check(sys.stdin.readline().strip() == "go", "the test did not push the late image")
d.get(BASE + "/worklist")
row = wait.until(ec.presence_of_element_located(
    (By.CSS_SELECTOR, f'#rows tr.item[data-uid="{FACTS["current"]}"]')))
check("NEW IMAGES" in row.text, "the worklist row does not mark the late images: " + row.text)
check("signed" in row.text.lower(), "the worklist row does not say the study is signed: " + row.text)
d.save_screenshot(f"{SHOTS}/worklist-new-images.png")
d.get(BASE + "/studies/" + FACTS["current"])
notice = wait.until(ec.visibility_of_element_located((By.ID, "new-images")))
check("arrived after this read was signed" in notice.text, "the notice says: " + notice.text)
check(HOSTILE in d.find_element(By.ID, "final-text").text, "the signed read did not stand")
check(d.find_element(By.ID, "amend").get_attribute("open") is not None, "the amendment form is not open")
wait.until(lambda _: d.find_element(By.ID, "current").get_attribute("data-drawn") == "true")
d.save_screenshot(f"{SHOTS}/reading-new-images.png")

# 9c. Amend the signed read: the new text replaces it, marked as an amendment with its reason,
# and the late images are answered.
if d.find_element(By.ID, "amend").get_attribute("open") is None:
    d.find_element(By.CSS_SELECTOR, "#amend summary").click()
amend_text = d.find_element(By.ID, "amend-text")
amend_text.send_keys(Keys.END, " Addendum: tube position confirmed.")
d.find_element(By.ID, "amend-reason").send_keys("addendum after review")
d.find_element(By.ID, "amend-sign").click()
wait.until(ec.presence_of_element_located((By.ID, "amended")))
check("Addendum: tube position confirmed." in d.find_element(By.ID, "final-text").text,
      "the amended text is not shown")
check("addendum after review" in d.find_element(By.ID, "signed-by").text, "the amendment's reason is not shown")
check(not d.find_elements(By.ID, "new-images"), "the amendment did not answer the late images")
no_script_ran()

# 9d. The result objects radassist made are listed, and each downloads as the DICOM file it
# sent: the four draft objects, the signed report and the amended one (newest last).
rows = d.find_elements(By.CSS_SELECTOR, "#results tbody tr")
kinds = [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows]
check(kinds[-2:] == ["final", "amended"] and kinds.count("draft") >= 4, f"the results listed: {kinds}")
for link in d.find_elements(By.CSS_SELECTOR, "#results a[download]"):
    got = d.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch(arguments[0]).then(async r => {
          const bytes = new Uint8Array(await r.arrayBuffer());
          done([r.status, r.headers.get('content-type'),
                String.fromCharCode(...bytes.slice(128, 132)), bytes.length]);
        }).catch(e => done([0, String(e), '', 0]));""",
        link.get_attribute("href"))
    check(got[0] == 200 and got[1] == "application/dicom" and got[2] == "DICM" and got[3] > 1000,
          f"{link.get_attribute('href')} downloaded as {got}")

# 10. A radiologist cannot open QA or admin: the server refuses the URLs.
for path in ["/qa", "/admin", "/qa/export.csv"]:
    d.get(BASE + path)
    check(status_of_page() == "403", f"{path} gave a radiologist: {d.title}")

# 11. QA: the signed study is in the table and the charts.
login("qa-web", FACTS["qa"])
d.get(BASE + "/qa")
check(d.find_elements(By.CSS_SELECTOR, f'#qa-rows tr[data-uid="{FACTS["current"]}"]'),
      "the signed study is not in the QA table")
check(d.find_elements(By.CSS_SELECTOR, "#chart-month circle.point"), "the monthly chart has no point")
check(d.find_elements(By.CSS_SELECTOR, "#chart-version circle.point"), "the version chart has no point")
check(int(d.find_element(By.ID, "qa-studies").text) >= 1, "QA counts no signed study")
d.get(BASE + "/qa?observation=Support+Devices")
check(d.find_elements(By.CSS_SELECTOR, "#chart-observation-month circle.point"),
      "the Support Devices chart by month has no point")
check("Support Devices" in d.find_element(By.ID, "chart-observation-version").text,
      "the observation chart does not name its observation")
d.save_screenshot(f"{SHOTS}/qa.png")
d.find_element(By.CSS_SELECTOR, f'#qa-rows tr[data-uid="{FACTS["current"]}"] a').click()
wait.until(ec.presence_of_element_located((By.ID, "diff-final")))
check(d.find_elements(By.CSS_SELECTOR, "#diff-final .ins"), "the QA diff marks no added words")
check(not d.find_elements(By.CSS_SELECTOR, "#diff-final img"), "the QA diff turned text into HTML")
no_script_ran()
d.save_screenshot(f"{SHOTS}/qa-study.png")
d.get(BASE + "/worklist")
check(status_of_page() == "403", "QA staff can open the worklist: " + d.title)

# 12. Admin sees everything.
login("it-web", FACTS["admin"])
d.get(BASE + "/admin")
check(d.find_elements(By.CSS_SELECTOR, "#models tbody tr"), "no model pack on the admin page")
check("web: sign" in d.find_element(By.ID, "audit").text, "the audit log lacks the signature")
d.save_screenshot(f"{SHOTS}/admin.png")

say(f"first-image-ms {first_image_ms:.0f}")
d.quit()
say("ok")
