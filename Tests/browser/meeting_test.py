#!/usr/bin/env python3
"""The meeting page in a real headless Chromium, end to end.

Two users in two browser profiles sign up; one creates and starts a meeting, the other
joins. They chat in public and in private, the presenter uploads a multi-page PDF and
turns to page 3, an annotation and a poll go round; then the server is killed with SIGKILL
and restarted, and both pages must show "resumed" with everything intact.

Run by `swift test` (Tests/ParleyWebTests/BrowserTests.swift), or by hand:
    python3 Tests/browser/meeting_test.py --parley .build/debug/parley --artifacts test-artifacts
Needs Debian's chromium and chromium-driver, and selenium from PyPI (.ci/run installs them).
"""
import argparse
import json
import os
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


def pdf(pages):
    """A small valid PDF with `pages` pages, each saying its number in large type."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", None, "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
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
    alice = bob = None
    step = "start"

    def shot(name):
        for who, driver in (("alice", alice), ("bob", bob)):
            if driver:
                driver.save_screenshot(os.path.join(args.artifacts, f"{name}-{who}.png"))

    try:
        alice, bob = browser(os.path.join(work, "alice")), browser(os.path.join(work, "bob"))

        step = "1. sign up, create and start a meeting, join it"
        register(alice, base, "alice", "Alice")
        register(bob, base, "bob", "Bob")
        alice.get(base + "/center")
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
            f.write(pdf(4))
        alice.find_element(By.ID, "document-upload").send_keys(document)
        wait(alice, "the upload is done", lambda d: css(d, "#upload-status")[0].get_attribute("data-state") in ("done", "failed"), 60)
        status = css(alice, "#upload-status")[0]
        assert status.get_attribute("data-state") == "done", f"upload failed: {status.text}"
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

        step = "5. a poll is created, voted on and closed"
        alice.find_element(By.ID, "poll-question").send_keys("Ship it?")
        alice.find_element(By.ID, "poll-options").send_keys("Yes\nNo")
        alice.find_element(By.ID, "poll-create").click()
        wait(bob, "bob sees the poll", lambda d: css(d, ".poll .poll-vote[data-option='0']"))
        css(bob, ".poll .poll-vote[data-option='0']")[0].click()
        wait(alice, "alice sees bob's vote", lambda d: css(d, ".poll .poll-result[data-option='0']")[0].text.strip() == "1")
        css(alice, ".poll .poll-close")[0].click()
        for who, driver in (("alice", alice), ("bob", bob)):
            wait(driver, f"{who} sees the poll closed", lambda d: css(d, ".poll")[0].get_attribute("data-closed") == "true")

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

        if args.zone:
            step = "7. SIGKILL the collab server hosting the meeting; both pages resume on the standby"
            meeting = meeting_url.rstrip("/").split("/")[-1]
            killed = server.kill_host(meeting)
            print(f"killed {killed}, which hosted {meeting}")
        else:
            step = "7. SIGKILL the server and restart it; both pages resume with everything intact"
            server.kill()
            for who, driver in (("alice", alice), ("bob", bob)):
                wait(driver, f"{who} notices", lambda d: state(d) in ("reconnecting", "connecting"), 15)
            shot("4-server-down")
            server.start()
        for who, driver in (("alice", alice), ("bob", bob)):
            wait(driver, f"{who} shows resumed", lambda d: state(d) == "resumed", 30)
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
        print("browser test passed" + (" (zone)" if args.zone else "") +
              ": sign-up, meeting, chat, private chat, PDF page 3, annotation, poll, screen sharing with control, SIGKILL + resume")
        return 0
    except BaseException as error:
        shot("failed")
        for who, driver in (("alice", alice), ("bob", bob)):
            if driver:
                try:
                    for entry in driver.get_log("browser")[-30:]:
                        print(f"[{who} console] {entry.get('level')} {entry.get('message')}", file=sys.stderr)
                except Exception:
                    pass
        print(f"browser test FAILED at step '{step}': {error}", file=sys.stderr)
        return 1
    finally:
        for driver in (alice, bob):
            if driver:
                try:
                    driver.quit()
                except Exception:
                    pass
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
