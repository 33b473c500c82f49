"""Debian's chromium, headless, driven through chromium-driver: the browser of the reading
room's tests and benchmark. No download of a browser or a driver: both come from apt."""
from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def chromium():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    # Background networking off: this machine's closed network refuses it, and nothing should
    # leave loopback anyway.
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1600,1000"]:
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
