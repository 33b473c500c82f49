"""The reading room's first image on screen, for benches/web.rs: logs in, opens a study N
times, and prints the time from navigation start to the image drawn (the page's
performance mark radassist:first-image), median and worst.

    first_image.py URL USER PASSWORD PATH N
"""
import statistics
import sys

from browser import chromium
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

base, user, password, path, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
d = chromium()
wait = WebDriverWait(d, 60)
d.get(base + "/login")
d.find_element(By.ID, "username").send_keys(user)
d.find_element(By.ID, "password").send_keys(password)
d.find_element(By.ID, "login").click()
wait.until(lambda _: "/login" not in d.current_url)
times = []
for _ in range(n):
    d.get(base + path)
    wait.until(lambda _: d.find_element(By.ID, "current").get_attribute("data-drawn") == "true")
    times.append(d.execute_script(
        "return performance.getEntriesByName('radassist:first-image')[0].startTime"))
d.quit()
print(f"reading room, first image on screen ({n} loads, 1600x1000 window)")
print(f"  median {statistics.median(times):.0f} ms  worst {max(times):.0f} ms   (target: under 1000 ms)")
