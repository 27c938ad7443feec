#!/usr/bin/env python3
"""The meeting page in a real headless Chromium, end to end.

Two users in two browser profiles sign up; one creates and starts a meeting, the other
joins. They chat in public and in private, the presenter uploads a multi-page PDF and
turns to page 3, an annotation and a poll go round; then the server is killed with SIGKILL
and restarted, and both pages must show "resumed" with everything intact.

On the way it checks what a new user stumbled on (issue 13), as they see it: the full join
address with a copy button, the schedule form's own check and its wording, a lock-out
message in words and local time, upload progress, a guest who keeps ?transport=poll, is
marked as a guest and sees no empty toolbar, poll options that wrap between words, the
reconnecting banner with an action queued while offline, and Leave, Rejoin and Back.

Run by `swift test` (Tests/ParleyWebTests/BrowserTests.swift), or by hand:
    python3 Tests/browser/meeting_test.py --parley .build/debug/parley --artifacts test-artifacts
Needs Debian's chromium and chromium-driver, and selenium from PyPI (.ci/run installs them).
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

WAIT = 20  # seconds for anything the page does by itself


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pdf(pages, padding=0):
    """A valid PDF with `pages` pages, each saying its number in large type, and `padding`
    bytes of an unused stream (to make an upload that takes a while)."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", None, "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    if padding:
        objects.append(f"<< /Length {padding} >>\nstream\n{'x' * padding}\nendstream")
    kids = []
    for n in range(1, pages + 1):
        text = f"BT /F1 96 Tf 120 400 Td (Page {n}) Tj ET".encode()
        objects.append(f"<< /Length {len(text)} >>\nstream\n{text.decode()}\nendstream")
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {len(objects)} 0 R "
                       f"/Resources << /Font << /F1 3 0 R >> >> >>")
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {pages} >>"
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


class Server:
    """`parley serve --single` on a fixed port, so a restarted server has the pages' origin."""

    def __init__(self, binary, data, port, log):
        self.binary, self.data, self.port, self.log = binary, data, port, log
        self.process = None

    def start(self):
        logfile = open(self.log, "ab")
        self.process = subprocess.Popen(
            # --no-fsync: a SIGKILL loses nothing committed without it (only a power loss would),
            # and it keeps this test from loading the disk under the rest of the suite.
            [self.binary, "serve", "--single", "--port", str(self.port), "--data", self.data, "--no-fsync"],
            stdout=logfile, stderr=logfile)
        self.wait_listening()

    def wait_listening(self):
        deadline = time.time() + WAIT
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.process.poll() is not None:
                    raise AssertionError(f"the server exited with {self.process.returncode}; see {self.log}")
                time.sleep(0.1)
        raise AssertionError("the server did not start listening")

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


class Zone(Server):
    """`parley serve` as a zone. "The server" killed is the collaboration server hosting the
    meeting; the supervisor restarts it and the meeting fails over to its hot standby."""

    def start(self):
        self.process = None
        logfile = open(self.log, "ab")
        self.process = subprocess.Popen([self.binary, "serve", "--port", str(self.port), "--data", self.data],
                                        stdout=logfile, stderr=logfile)
        Server.wait_listening(self)

    def host_of(self, meeting):
        status = json.loads(subprocess.run([self.binary, "ctl", "status", "--json", "--data", self.data],
                                           check=True, capture_output=True, text=True).stdout)
        for process in status["processes"]:
            if meeting in process.get("load", {}).get("hosting", []):
                return process
        return None

    def kill_host(self, meeting):
        deadline = time.time() + WAIT
        while time.time() < deadline:
            host = self.host_of(meeting)
            if host:
                os.kill(host["pid"], signal.SIGKILL)
                return host["name"]
            time.sleep(0.2)
        raise AssertionError(f"no collab server reports hosting {meeting}")


def browser(profile):
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                     f"--user-data-dir={profile}",
                     # Screen capture without a screen: a fake source, picked without a dialog.
                     "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                     "--auto-select-desktop-capture-source=Entire screen", "--enable-usermedia-screen-capturing"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(options=options, service=service)


def wait(driver, what, condition, timeout=WAIT):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d))
    except Exception as error:
        raise AssertionError(f"timed out waiting for: {what}") from error


def css(driver, selector):
    return driver.find_elements(By.CSS_SELECTOR, selector)


def state(driver):
    found = css(driver, "#connection-state")
    return found[0].get_attribute("data-state") if found else None


def chat_texts(driver):
    return [(e.get_attribute("data-private"), e.find_element(By.CSS_SELECTOR, ".chat-text").text)
            for e in css(driver, "#chat-log .chat-message")]


def displayed(driver, selector):
    found = css(driver, selector)
    return bool(found) and found[0].is_displayed()


def rect(driver, element):
    return driver.execute_script("const r = arguments[0].getBoundingClientRect(); "
                                 "return {left: r.left, right: r.right, top: r.top, bottom: r.bottom};", element)


# Text meant for people must not carry internal codes such as "(unknown_meeting)".
CODE_IN_TEXT = re.compile(r"\(?\b[a-z]+_[a-z_]+\b\)?")

# Records what #upload-status and #upload-progress showed, for an upload too quick to watch.
WATCH_UPLOAD = """
window.__uploadSeen = [];
const status = document.getElementById('upload-status'), bar = document.getElementById('upload-progress');
const note = () => window.__uploadSeen.push({state: status.dataset.state, text: status.textContent,
    bar: !bar.hidden && bar.getClientRects().length > 0, value: bar.getAttribute('value')});
new MutationObserver(note).observe(status, {attributes: true, childList: true, characterData: true, subtree: true});
new MutationObserver(note).observe(bar, {attributes: true});
"""

# Records whether #connection-banner was ever on screen, for a failover too quick to watch.
WATCH_BANNER = """
window.__bannerSeen = [];
const banner = document.getElementById('connection-banner');
new MutationObserver(() => { if (!banner.hidden && banner.getClientRects().length) window.__bannerSeen.push(banner.textContent); })
    .observe(banner, {attributes: true, childList: true, subtree: true, characterData: true});
"""

# Words of the poll options that the layout split across two lines.
SPLIT_WORDS = """
const split = [];
for (const button of document.querySelectorAll('.poll-vote')) {
  const node = button.firstChild;
  if (!node || node.nodeType !== Node.TEXT_NODE) continue;
  const text = node.textContent;
  for (const match of text.matchAll(/\\S+/g)) {
    const range = document.createRange();
    range.setStart(node, match.index);
    range.setEnd(node, match.index + match[0].length);
    const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
    if (lines.size > 1) split.push(match[0]);
  }
}
return split;
"""

# What in the shared pane takes room on screen but shows nothing: a box with no text, control
# or picture in it, or a border line with nothing above it.
EMPTY_STRIPS = """
const pane = document.querySelector('.shared-pane');
const visible = (e) => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden';
const MEDIA = 'button, input, select, textarea, img, canvas, video, progress, .whiteboard-surface';
const content = [...pane.querySelectorAll('*')].filter((e) => visible(e) && !e.closest('.visually-hidden') &&
    (e.matches(MEDIA) || [...e.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim())));
const name = (e) => e.id ? '#' + e.id : '.' + String(e.className).split(' ')[0];
const found = [];
for (const e of pane.querySelectorAll('*')) {
  if (!visible(e) || e.matches(MEDIA) || e.getBoundingClientRect().height < 4) continue;
  if (!content.some((c) => e.contains(c))) found.push('empty box ' + name(e));
  const s = getComputedStyle(e);
  if (parseFloat(s.borderTopWidth) > 0 && s.borderTopStyle !== 'none') {
    const top = e.getBoundingClientRect().top;
    if (!content.some((c) => !e.contains(c) && c.getBoundingClientRect().bottom <= top + 1)) found.push('a line with nothing above: ' + name(e));
  }
}
return found;
"""


def register(driver, base, username, name):
    driver.get(base + "/register")
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "display-name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys("correct horse battery")
    driver.find_element(By.ID, "register").click()
    wait(driver, f"{username} reaches the meeting center", lambda d: d.current_url.endswith("/center"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--parley", required=True)
    parser.add_argument("--artifacts", required=True)
    parser.add_argument("--zone", action="store_true",
                        help="run a zone and SIGKILL the collaboration server hosting the meeting")
    args = parser.parse_args()
    os.makedirs(args.artifacts, exist_ok=True)
    work = tempfile.mkdtemp(prefix="parley-browser-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = (Zone if args.zone else Server)(os.path.abspath(args.parley), os.path.join(work, "data"), port, os.path.join(args.artifacts, "server.log"))
    if os.path.exists(server.log):
        os.remove(server.log)
    server.start()
    alice = bob = carol = None
    step = "start"

    def shot(name):
        for who, driver in (("alice", alice), ("bob", bob), ("carol", carol)):
            if driver:
                driver.save_screenshot(os.path.join(args.artifacts, f"{name}-{who}.png"))

    try:
        alice, bob = browser(os.path.join(work, "alice")), browser(os.path.join(work, "bob"))

        step = "1. sign up"
        register(alice, base, "alice", "Alice")
        register(bob, base, "bob", "Bob")

        step = "1a. the create form: each feature's checkbox sits left of its name, on its line"
        alice.get(base + "/center")
        for name in ("chat", "privateChat", "annotation", "polls", "applicationSharing"):
            box = rect(alice, alice.find_element(By.ID, f"feature-{name}"))
            text = rect(alice, alice.find_element(By.CSS_SELECTOR, f"#feature-{name}-label span"))
            middle = (box["top"] + box["bottom"]) / 2
            assert box["right"] <= text["left"] + 1, f"{name}: the checkbox is not left of its label: {box} {text}"
            assert text["top"] <= middle <= text["bottom"], f"{name}: the checkbox is not on its label's line: {box} {text}"

        step = "1b. scheduling without a day, or with half a date, is caught in the page, in words, without a request"
        alice.find_element(By.ID, "meeting-title").send_keys("Planning")
        alice.execute_script("window.__stillHere = true")
        alice.find_element(By.ID, "schedule").click()
        wait(alice, "the schedule problem is shown", lambda d: displayed(d, "#schedule-problem"))
        said = alice.find_element(By.ID, "schedule-problem").text
        assert "Choose the day" in said, f"schedule problem: {said!r}"
        assert alice.execute_script("return window.__stillHere === true"), "the form was sent"
        assert alice.find_element(By.ID, "meeting-date").get_attribute("aria-invalid") == "true"
        alice.find_element(By.ID, "meeting-date").send_keys("12")  # the month only
        assert alice.execute_script("return document.getElementById('meeting-date').validity.badInput"), "the date is not half-filled"
        alice.find_element(By.ID, "schedule").click()
        wait(alice, "the half date is refused", lambda d: "incomplete" in d.find_element(By.ID, "schedule-problem").text)
        said = alice.find_element(By.ID, "schedule-problem").text
        assert alice.execute_script("return window.__stillHere === true"), "the form was sent"
        assert said.endswith(".") and "YYYY" not in said and "HH:MM" not in said and not CODE_IN_TEXT.search(said), said
        shot("1b-schedule-problem")

        step = "1c. a scheduled meeting's join link is the full address, with a copy button that copies it"
        alice.execute_script("document.getElementById('meeting-date').value = '2030-12-01';"
                             "document.getElementById('meeting-time').value = '10:30';")
        alice.find_element(By.ID, "schedule").click()
        wait(alice, "the meeting is scheduled", lambda d: displayed(d, "#created"))
        scheduled = alice.current_url.split("created=")[-1]
        full = f"{base}/m/{scheduled}"
        link = alice.find_element(By.ID, "created-link")
        assert link.text == full and link.get_attribute("href") == full, f"join link shows {link.text!r}"
        assert alice.find_element(By.ID, f"join-link-{scheduled}").get_attribute("value") == full
        alice.execute_cdp_cmd("Browser.grantPermissions", {"origin": base, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
        copy = alice.find_element(By.CSS_SELECTOR, "#created .copy-link")
        assert copy.is_displayed() and copy.tag_name == "button"
        copy.click()
        wait(alice, "the page says the link was copied", lambda d: d.find_element(By.CSS_SELECTOR, "#created .copy-status").text == "Copied.")
        copied = alice.execute_async_script("navigator.clipboard.readText().then(arguments[0], (e) => arguments[0]('error: ' + e))")
        assert copied == full, f"the clipboard holds {copied!r}"
        shot("1c-scheduled")

        step = "1d. create and start a meeting, join it"
        alice.find_element(By.ID, "meeting-title").send_keys("Browser test")
        alice.find_element(By.ID, "meeting-attendees").send_keys("bob")
        alice.find_element(By.ID, "start-now").click()
        wait(alice, "alice's meeting page", lambda d: "/m/" in d.current_url)
        meeting_url = alice.current_url
        bob.get(meeting_url)
        for who, driver in (("alice", alice), ("bob", bob)):
            wait(driver, f"{who} connected", lambda d: state(d) == "connected")
        wait(alice, "two attendees listed", lambda d: len(css(d, "#attendee-list .attendee[data-presence=connected]")) == 2)
        alice_id = [e.get_attribute("data-participant") for e in css(bob, "#attendee-list .attendee")
                    if e.find_element(By.CSS_SELECTOR, ".attendee-name").text == "Alice"][0]
        shot("1-joined")

        step = "2. public and private chat, with script shown as text"
        alice.find_element(By.ID, "chat-input").send_keys("hello from alice")
        alice.find_element(By.ID, "chat-send").click()
        Select(bob.find_element(By.ID, "chat-to")).select_by_value(alice_id)
        bob.find_element(By.ID, "chat-input").send_keys("psst, alice")
        bob.find_element(By.ID, "chat-send").click()
        script = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
        Select(bob.find_element(By.ID, "chat-to")).select_by_value("")
        bob.find_element(By.ID, "chat-input").send_keys(script)
        bob.find_element(By.ID, "chat-send").click()
        expected = [("false", "hello from alice"), ("true", "psst, alice"), ("false", script)]
        for who, driver in (("alice", alice), ("bob", bob)):
            wait(driver, f"{who} sees the three messages", lambda d: chat_texts(d) == expected)
            assert driver.execute_script("return window.__xss") is None, f"script in chat ran in {who}'s page"

        step = "3. upload a 4-page PDF and turn to page 3"
        document = os.path.join(work, "slides.pdf")
        with open(document, "wb") as f:
            f.write(pdf(4, padding=3 << 20))
        alice.execute_script(WATCH_UPLOAD)
        # A slow uplink (3 MiB at 2 MiB/s), so the upload's progress can be seen going up.
        alice.execute_cdp_cmd("Network.enable", {})
        alice.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 2 << 20})
        alice.find_element(By.ID, "document-upload").send_keys(document)
        wait(alice, "the upload's progress bar moves", lambda d: d.execute_script(
            "const b = document.getElementById('upload-progress'); return !b.hidden && b.position > 0.2"), 30)
        shot("3-uploading")
        wait(alice, "the upload is done", lambda d: css(d, "#upload-status")[0].get_attribute("data-state") in ("done", "failed"), 60)
        alice.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        status = css(alice, "#upload-status")[0]
        assert status.get_attribute("data-state") == "done", f"upload failed: {status.text}"
        seen = alice.execute_script("return window.__uploadSeen")
        partial = [e for e in seen if e["state"] == "uploading" and e["bar"] and e["value"] and 0 < float(e["value"]) < 1]
        assert partial and " of " in partial[0]["text"] and "MiB" in partial[0]["text"], f"no upload progress was shown: {seen[:8]}"
        assert any(e["state"] == "converting" and "Converting" in e["text"] and e["bar"] for e in seen), f"no converting state: {seen}"
        assert not css(alice, "#upload-progress") or not alice.find_element(By.ID, "upload-progress").is_displayed()
        wait(alice, "page 1 shown", lambda d: css(d, "#page-number") and css(d, "#page-number")[0].text == "1 / 4")
        for _ in range(2):
            alice.find_element(By.ID, "page-next").click()
            time.sleep(0.3)
        wait(alice, "alice on page 3", lambda d: css(d, "#page-number")[0].text == "3 / 4")
        wait(bob, "bob follows to page 3", lambda d: css(d, "#page-number") and css(d, "#page-number")[0].text == "3 / 4")
        page3 = css(alice, "#page-image")[0].get_attribute("data-page")
        wait(bob, "bob shows the same page image", lambda d: css(d, "#page-image")[0].get_attribute("data-page") == page3)
        wait(bob, "bob's page image loaded",
             lambda d: d.execute_script("const i = document.getElementById('page-image'); return i.complete && i.naturalWidth > 0"))

        step = "4. an annotation drawn by alice appears for bob"
        alice.find_element(By.ID, "tool-pen").click()
        canvas = alice.find_element(By.ID, "annotation-layer")
        ActionChains(alice).move_to_element_with_offset(canvas, -60, -40).click_and_hold() \
            .move_by_offset(40, 10).move_by_offset(40, 30).move_by_offset(30, 20).release().perform()
        for who, driver in (("alice", alice), ("bob", bob)):
            wait(driver, f"{who} has one stroke on page 3",
                 lambda d: css(d, "#annotation-layer")[0].get_attribute("data-strokes") == "1")

        step = "5. a poll is created, voted on and closed; its long options wrap between words"
        alice.find_element(By.ID, "poll-question").send_keys("Ship it?")
        alice.find_element(By.ID, "poll-options").send_keys(
            "Yes, after the documentation is reviewed\nNo, postpone it until the internationalization work is done")
        alice.find_element(By.ID, "poll-create").click()
        wait(bob, "bob sees the poll", lambda d: css(d, ".poll .poll-vote[data-option='0']"))
        for who, driver in (("alice", alice), ("bob", bob)):
            heights = driver.execute_script("return [...document.querySelectorAll('.poll-vote')].map((b) => b.getClientRects()[0].height)")
            assert max(heights) > 30, f"the test's options should take several lines in {who}'s page: {heights}"
            split = driver.execute_script(SPLIT_WORDS)
            assert split == [], f"{who}'s poll options break these words across lines: {split}"
        css(bob, ".poll .poll-vote[data-option='0']")[0].click()
        wait(alice, "alice sees bob's vote", lambda d: css(d, ".poll .poll-result[data-option='0']")[0].text.strip() == "1")
        css(alice, ".poll .poll-close")[0].click()
        for who, driver in (("alice", alice), ("bob", bob)):
            wait(driver, f"{who} sees the poll closed", lambda d: css(d, ".poll")[0].get_attribute("data-closed") == "true")

        step = "5a. a locked account is told when it may try again, in words, without internal codes"
        carol = browser(os.path.join(work, "carol"))
        for attempt in range(5):
            carol.get(base + "/signin")
            carol.find_element(By.ID, "username").send_keys("bob")
            carol.find_element(By.ID, "password").send_keys(f"wrong guess {attempt}")
            carol.find_element(By.ID, "sign-in").click()
            wait(carol, "the sign-in answer", lambda d: displayed(d, "#problem"))
        said = carol.find_element(By.ID, "problem").text
        assert "locked" in said and re.search(r"try again in 1[45] minutes \(at \d{1,2}:\d{2}", said), f"lock-out message: {said!r}"
        assert not CODE_IN_TEXT.search(said) and "Z)" not in said and "T" not in said.split("(at")[-1], said
        shot("5a-locked")
        carol.get(base + "/m/m-nosuchmeeting")
        problem = carol.find_element(By.ID, "problem")
        assert problem.get_attribute("data-code") == "unknown_meeting"
        assert "unknown_meeting" not in problem.text and not CODE_IN_TEXT.search(problem.text), f"problem page: {problem.text!r}"
        assert problem.text[0].isupper() and problem.text.endswith("."), problem.text
        shot("5a-problems")

        step = "5b. a guest sees no empty strip in a meeting with nothing shared yet (the scheduled one)"
        carol.get(f"{base}/m/{scheduled}?transport=poll")
        carol.find_element(By.ID, "guest-name").send_keys("Carol")
        carol.find_element(By.ID, "guest-join").click()
        wait(carol, "carol connected to the scheduled meeting", lambda d: state(d) == "connected")
        empty = carol.execute_script(EMPTY_STRIPS)
        assert empty == [], f"empty strips in the guest's shared pane: {empty}"
        shot("5b-guest-empty-meeting")

        step = "5b. a guest who opened the link with ?transport=poll keeps it through the guest form"
        carol.get(meeting_url + "?transport=poll")
        carol.find_element(By.ID, "guest-name").send_keys("Carol")
        carol.find_element(By.ID, "guest-join").click()
        wait(carol, "carol's meeting page", lambda d: css(d, "#connection-state"))
        assert carol.current_url.endswith("?transport=poll"), f"carol is at {carol.current_url}"
        wait(carol, "carol connected", lambda d: state(d) == "connected")
        assert carol.find_element(By.ID, "transport").text == "long-poll", carol.find_element(By.ID, "transport").text

        step = "5c. the guest is marked as a guest in everyone's attendee list; the others are not"
        def guest_marks(d):
            return {e.find_element(By.CSS_SELECTOR, ".attendee-name").text:
                    e.find_element(By.CSS_SELECTOR, ".attendee-guest").is_displayed() for e in css(d, "#attendee-list .attendee")}
        for who, driver in (("alice", alice), ("bob", bob), ("carol", carol)):
            wait(driver, f"{who} lists carol", lambda d: "Carol" in guest_marks(d))
            assert guest_marks(driver) == {"Alice": False, "Bob": False, "Carol": True}, f"{who}: {guest_marks(driver)}"
            mark = [e for e in css(driver, "#attendee-list .attendee") if e.get_attribute("data-guest") == "true"][0]
            assert mark.find_element(By.CSS_SELECTOR, ".attendee-guest").text == "guest"

        step = "5d. the guest sees no empty toolbar or bordered strip in the shared pane"
        empty = carol.execute_script(EMPTY_STRIPS)
        assert empty == [], f"empty strips in the guest's shared pane: {empty}"
        shot("5d-guest")

        step = "5e. the guest leaves: a clear left state, no meeting center (a guest has none); Rejoin brings them back"
        carol.find_element(By.ID, "meeting-leave").click()
        wait(carol, "carol sees the left state", lambda d: displayed(d, "#meeting-closed"))
        assert "You left the meeting" in carol.find_element(By.ID, "meeting-closed").text
        assert not displayed(carol, ".meeting-panes"), "the meeting is still on carol's screen after leaving"
        assert displayed(carol, "#rejoin") and not displayed(carol, "#back-to-center")
        wait(alice, "alice sees carol leave", lambda d: [e.get_attribute("data-presence") for e in css(d, "#attendee-list .attendee[data-guest=true]")] == ["left"])
        carol.find_element(By.ID, "rejoin").click()
        wait(carol, "carol is back", lambda d: state(d) == "connected" and displayed(d, ".meeting-panes"))
        assert carol.current_url.endswith("?transport=poll") and carol.find_element(By.ID, "transport").text == "long-poll"
        wait(alice, "alice sees carol back", lambda d: [e.get_attribute("data-presence") for e in css(d, "#attendee-list .attendee[data-guest=true]")] == ["connected"])
        carol.quit()
        carol = None

        step = "6. screen sharing: frames reach the viewer; input only after the sharer grants control"
        bob_id = [e.get_attribute("data-participant") for e in css(alice, "#attendee-list .attendee")
                  if e.find_element(By.CSS_SELECTOR, ".attendee-name").text == "Bob"][0]
        alice.find_element(By.ID, "share-start").click()
        wait(bob, "bob sees shared frames",
             lambda d: d.execute_script("const v = document.getElementById('share-view'); "
                                        "return !!v && v.complete && v.naturalWidth > 0"), 30)
        bob.find_element(By.ID, "control-request").click()
        wait(alice, "alice sees bob's request", lambda d: css(d, f".control-grant[data-participant='{bob_id}']"))
        shot("2-sharing")
        assert not css(alice, "#share-input-log > *"), "input arrived before control was granted"
        css(alice, f".control-grant[data-participant='{bob_id}']")[0].click()
        def click_share(d):
            ActionChains(d).move_to_element(d.find_element(By.ID, "share-view")).click().perform()
            return True
        wait(bob, "bob holds control", lambda d: css(d, "#control-release") and css(d, "#control-release")[0].is_displayed())
        click_share(bob)
        wait(alice, "bob's click reaches alice's page", lambda d: css(d, "#share-input-log > *"))
        alice.find_element(By.ID, "share-stop").click()
        wait(bob, "bob sees the share end", lambda d: not d.execute_script(
            "const v = document.getElementById('share-view'); return !!v && v.offsetParent !== null && !!v.getAttribute('src')"))
        shot("3-before-kill")

        for driver in (alice, bob):
            driver.execute_script(WATCH_BANNER)
            assert not displayed(driver, "#connection-banner")
        if args.zone:
            step = "7. SIGKILL the collab server hosting the meeting; both pages resume on the standby"
            meeting = meeting_url.rstrip("/").split("/")[-1]
            killed = server.kill_host(meeting)
            print(f"killed {killed}, which hosted {meeting}")
        else:
            step = "7. SIGKILL the server: a banner says so, controls are marked pending, an action waits; restart: all resumes"
            server.kill()
            for who, driver in (("alice", alice), ("bob", bob)):
                wait(driver, f"{who} notices", lambda d: state(d) in ("reconnecting", "connecting"), 15)
                wait(driver, f"{who}'s reconnecting banner", lambda d: displayed(d, "#connection-banner"))
                banner = driver.find_element(By.ID, "connection-banner")
                assert banner.get_attribute("role") == "status" and "Reconnecting" in banner.text, banner.text
            alice.find_element(By.ID, "chat-input").send_keys("sent while offline")
            alice.find_element(By.ID, "chat-send").click()
            wait(alice, "the queued message is counted", lambda d: d.find_element(By.ID, "pending-ops").get_attribute("data-count") == "1")
            assert "1 action waiting" in alice.find_element(By.ID, "connection-banner").text
            assert alice.find_element(By.ID, "chat-send").value_of_css_property("border-top-style") == "dashed", "controls are not marked pending"
            shot("4-server-down")
            server.start()
            expected = expected + [("false", "sent while offline")]
        for who, driver in (("alice", alice), ("bob", bob)):
            wait(driver, f"{who} shows resumed", lambda d: state(d) == "resumed", 30)
            wait(driver, f"{who}'s banner goes", lambda d: not displayed(d, "#connection-banner"))
            assert driver.execute_script("return window.__bannerSeen.length") > 0, f"{who} never saw the reconnecting banner"
            assert driver.find_element(By.ID, "chat-send").value_of_css_property("border-top-style") == "solid"
            wait(driver, f"{who} has every message", lambda d: chat_texts(d) == expected)
            assert chat_texts(driver) == expected, f"{who}'s chat after resume: {chat_texts(driver)}"
            assert css(driver, "#page-number")[0].text == "3 / 4", f"{who}'s page after resume"
            assert css(driver, "#page-image")[0].get_attribute("data-page") == page3
            assert css(driver, "#annotation-layer")[0].get_attribute("data-strokes") == "1", f"{who}'s annotation after resume"
            poll = css(driver, ".poll")[0]
            assert poll.get_attribute("data-closed") == "true", f"{who}'s poll after resume"
            assert poll.find_element(By.CSS_SELECTOR, ".poll-result[data-option='0']").text.strip() == "1"
            assert driver.execute_script("return window.__xss") is None
        # The page works after the restart, not only shows the past.
        alice.find_element(By.ID, "chat-input").send_keys("still here")
        alice.find_element(By.ID, "chat-send").click()
        wait(bob, "bob gets a message sent after the restart", lambda d: chat_texts(d)[-1:] == [("false", "still here")])
        shot("5-resumed")

        step = "8. bob leaves: the meeting goes from his screen; Rejoin brings him back; Back goes to the meeting center"
        bob.find_element(By.ID, "meeting-leave").click()
        wait(bob, "bob sees the left state", lambda d: displayed(d, "#meeting-closed"))
        closed = bob.find_element(By.ID, "meeting-closed")
        assert "You left the meeting" in closed.text
        assert bob.execute_script("return document.activeElement.id") == "meeting-closed-heading", "focus stayed on a hidden control"
        assert not displayed(bob, ".meeting-panes") and not displayed(bob, "#meeting-leave")
        assert bob.find_element(By.ID, "rejoin").tag_name == "button" and displayed(bob, "#back-to-center")
        wait(alice, "alice sees bob leave", lambda d: [e.get_attribute("data-presence") for e in css(d, "#attendee-list .attendee")
                                                       if e.find_element(By.CSS_SELECTOR, ".attendee-name").text == "Bob"] == ["left"])
        shot("6-left")
        bob.find_element(By.ID, "rejoin").click()
        wait(bob, "bob is back", lambda d: state(d) == "connected" and displayed(d, ".meeting-panes"))
        wait(alice, "alice sees bob back", lambda d: [e.get_attribute("data-presence") for e in css(d, "#attendee-list .attendee")
                                                      if e.find_element(By.CSS_SELECTOR, ".attendee-name").text == "Bob"] == ["connected"])
        try:
            wait(bob, "bob has the whole chat again", lambda d: chat_texts(d) == expected + [("false", "still here")])
        except AssertionError as error:
            raise AssertionError(f"{error}: {chat_texts(bob)}") from None
        bob.find_element(By.ID, "meeting-leave").click()
        wait(bob, "bob sees the left state again", lambda d: displayed(d, "#back-to-center"))
        bob.find_element(By.ID, "back-to-center").click()
        wait(bob, "bob is in the meeting center", lambda d: d.current_url.endswith("/center"))

        print("browser test passed" + (" (zone)" if args.zone else "") +
              ": sign-up, schedule form check, full join link + copy, meeting, chat, private chat, PDF page 3 with upload "
              "progress, annotation, poll with long options, lock-out wording, guest with ?transport=poll marked as guest, "
              "leave + rejoin, screen sharing with control, SIGKILL + reconnecting banner + resume, leave + back to the center")
        return 0
    except BaseException as error:
        shot("failed")
        for who, driver in (("alice", alice), ("bob", bob), ("carol", carol)):
            if driver:
                try:
                    for entry in driver.get_log("browser")[-30:]:
                        print(f"[{who} console] {entry.get('level')} {entry.get('message')}", file=sys.stderr)
                except Exception:
                    pass
        print(f"browser test FAILED at step '{step}': {error}", file=sys.stderr)
        return 1
    finally:
        for driver in (alice, bob, carol):
            if driver:
                try:
                    driver.quit()
                except Exception:
                    pass
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
