#!/usr/bin/env python3
"""The operator's zone page (/admin) in a real headless Chromium, against a real zone.

A zone runs with `web.admins = ["root"]`. Mallory signs up and is refused the page (403).
She starts a meeting and chats in it. Root signs up and opens /admin, which shows, live:
every process running and ready, Mallory's meeting with its host, standby, one participant
and an op rate. Root cancels a drain (nothing happens), then restarts the meeting's host
through the confirmation dialog: the meeting moves to its standby, the failover is listed
with its duration, and the host's restart count goes up; Mallory's page resumes. Root then
drains the new host: the meeting moves back and that server stops. A request without the
page's CSRF token is refused.

Run by `swift test` (Tests/ParleyWebTests/BrowserTests.swift), or by hand:
    python3 Tests/browser/admin_test.py --parley .build/debug/parley --artifacts test-artifacts
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

from selenium.webdriver.common.by import By

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from meeting_test import Server, browser, chat_texts, css, free_port, register, state, wait  # noqa: E402


class AdminZone(Server):
    """`parley serve` as a zone with a configuration file."""

    def __init__(self, binary, data, port, log, config):
        super().__init__(binary, data, port, log)
        self.config = config

    def start(self):
        logfile = open(self.log, "ab")
        self.process = subprocess.Popen([self.binary, "serve", "--port", str(self.port), "--data", self.data,
                                         "--config", self.config], stdout=logfile, stderr=logfile)
        self.wait_listening()


def cells(driver, row_id):
    """The text of each cell of a table row, by class name; read in one script, since the page
    redraws its tables every second."""
    return driver.execute_script("""
        const row = document.getElementById(arguments[0]);
        if (!row) return null;
        const found = {};
        for (const td of row.querySelectorAll("td")) if (td.className) found[td.className] = td.textContent;
        return found;""", row_id)


def failovers(driver):
    """The failover rows: (meeting, taken over by, took)."""
    return driver.execute_script("""
        return [...document.querySelectorAll("#failovers tr.failover")].map(r =>
            [r.dataset.meeting, r.querySelector(".to").textContent, r.querySelector(".took").textContent]);""")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--parley", required=True)
    parser.add_argument("--artifacts", required=True)
    args = parser.parse_args()
    os.makedirs(args.artifacts, exist_ok=True)
    work = tempfile.mkdtemp(prefix="parley-admin-")
    config = os.path.join(work, "zone.json")
    with open(config, "w") as file:
        json.dump({"web": {"admins": ["root"], "passwordCost": 4}}, file)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    zone = AdminZone(os.path.abspath(args.parley), os.path.join(work, "data"), port,
                     os.path.join(args.artifacts, "server.log"), config)
    if os.path.exists(zone.log):
        os.remove(zone.log)
    zone.start()
    root = mallory = None
    step = "start"

    def shot(name):
        for who, driver in (("root", root), ("mallory", mallory)):
            if driver:
                driver.save_screenshot(os.path.join(args.artifacts, f"{name}-{who}.png"))

    try:
        root, mallory = browser(os.path.join(work, "root")), browser(os.path.join(work, "mallory"))

        step = "1. someone who is not an administrator is refused"
        register(mallory, base, "mallory", "Mallory")
        mallory.get(base + "/admin")
        problem = mallory.find_element(By.ID, "problem")
        assert problem.get_attribute("data-code") == "not_an_administrator", problem.get_attribute("data-code")
        assert "administrators" in problem.text, problem.text
        status = mallory.execute_script(
            "return fetch('/admin/overview.json').then(r => r.status)")
        assert status == 403, f"overview.json answered {status} to a non-administrator"
        shot("1-refused")

        step = "2. a meeting runs: mallory starts one and chats"
        mallory.get(base + "/center")
        mallory.find_element(By.ID, "meeting-title").send_keys("Watched")
        mallory.find_element(By.ID, "start-now").click()
        wait(mallory, "mallory's meeting page", lambda d: "/m/" in d.current_url)
        meeting = mallory.current_url.split("/m/")[1].split("?")[0]
        wait(mallory, "mallory connected", lambda d: state(d) == "connected")

        step = "3. root sees every process running and ready, and the meeting where it runs"
        register(root, base, "root", "Root")
        root.get(base + "/admin")
        names = ["manager-1", "manager-2", "collab-1", "collab-2", "web", "services"]
        for name in names:
            wait(root, f"{name} running and ready",
                 lambda d, name=name: (cells(d, f"process-{name}") or {}).get("ready") == "ready"
                 and (cells(d, f"process-{name}") or {}).get("state") == "running")
        wait(root, "the meeting listed with one participant",
             lambda d: (cells(d, f"meeting-{meeting}") or {}).get("participants") == "1")
        row = cells(root, f"meeting-{meeting}")
        host, standby = row["host"], row["standby"]
        assert host.startswith("collab-") and standby.startswith("collab-") and host != standby, row
        for text in ("one", "two", "three"):
            mallory.find_element(By.ID, "chat-input").send_keys(text)
            mallory.find_element(By.ID, "chat-send").click()
        wait(root, "an op rate is shown", lambda d: (cells(d, f"meeting-{meeting}") or {}).get("ops", "-") != "-")
        # Live: the page redraws without a reload.
        first = root.find_element(By.ID, "updated").get_attribute("data-at")
        wait(root, "the page refreshes itself", lambda d: d.find_element(By.ID, "updated").get_attribute("data-at") != first)
        restarts_before = int(cells(root, f"process-{host}")["restarts"])
        shot("3-overview")

        step = "4. cancelling a confirmation does nothing"
        root.find_element(By.ID, f"drain-{standby}").click()
        wait(root, "the confirmation opens", lambda d: d.find_element(By.ID, "confirm").get_attribute("open") is not None)
        assert f"Drain {standby}?" in root.find_element(By.ID, "confirm-text").text
        root.find_element(By.ID, "confirm-no").click()
        wait(root, "the confirmation closes", lambda d: d.find_element(By.ID, "confirm").get_attribute("open") is None)
        assert not root.find_element(By.ID, "action-result").is_displayed(), "a cancelled action was sent"

        step = "5. restarting the host through the page moves the meeting to its standby"
        root.find_element(By.ID, f"restart-{host}").click()
        wait(root, "the confirmation opens", lambda d: d.find_element(By.ID, "confirm").get_attribute("open") is not None)
        assert f"Restart {host}?" in root.find_element(By.ID, "confirm-text").text
        shot("5-confirm")
        root.find_element(By.ID, "confirm-yes").click()
        wait(root, "the restart is done", lambda d: d.find_element(By.ID, "action-result").text.startswith("Done:"))
        wait(root, "the meeting is hosted by its standby",
             lambda d: (cells(d, f"meeting-{meeting}") or {}).get("host") == standby, timeout=30)
        wait(root, "the failover is listed",
             lambda d: any(m == meeting and to == standby for m, to, _ in failovers(d)), timeout=30)
        took = [took for m, to, took in failovers(root) if m == meeting and to == standby][0]
        assert took.endswith(" ms") and int(took[:-3]) >= 0, took
        wait(root, f"{host} counted as restarted",
             lambda d: int((cells(d, f"process-{host}") or {}).get("restarts", "0")) > restarts_before, timeout=30)
        wait(mallory, "mallory's page resumes", lambda d: state(d) == "resumed", timeout=30)
        assert [text for _, text in chat_texts(mallory)] == ["one", "two", "three"], chat_texts(mallory)
        shot("5-failed-over")

        step = "5b. draining the new host moves the meeting back, then stops it"
        wait(root, f"{host} is the meeting's standby again",
             lambda d: (cells(d, f"meeting-{meeting}") or {}).get("standby") == host, timeout=30)
        root.find_element(By.ID, f"drain-{standby}").click()
        wait(root, "the confirmation opens", lambda d: d.find_element(By.ID, "confirm").get_attribute("open") is not None)
        root.find_element(By.ID, "confirm-yes").click()
        wait(root, "the drain is done", lambda d: d.find_element(By.ID, "action-result").text.startswith("Done: drained"), timeout=70)
        wait(root, "the meeting is back on its first host",
             lambda d: (cells(d, f"meeting-{meeting}") or {}).get("host") == host, timeout=30)
        wait(root, f"{standby} stopped", lambda d: (cells(d, f"process-{standby}") or {}).get("state", "").startswith("stopped"),
             timeout=30)
        wait(mallory, "mallory's page resumes again", lambda d: state(d) == "resumed", timeout=30)
        assert [text for _, text in chat_texts(mallory)] == ["one", "two", "three"], chat_texts(mallory)
        shot("5b-drained")

        step = "6. an action without the page's CSRF token is refused"
        refused = root.execute_script("""
            return fetch('/admin/processes/collab-1/restart', {method: 'POST',
                headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: '_csrf=forged'})
              .then(r => r.json().then(b => [r.status, b.code]))""")
        assert refused == [403, "csrf_failed"], refused
        print(f"admin browser test passed: {host} restarted, meeting failed over to {standby} in {took}, "
              f"then {standby} drained")
        return 0
    except Exception:
        shot("failure")
        print(f"failed at step: {step}", file=sys.stderr)
        raise
    finally:
        for driver in (root, mallory):
            if driver:
                driver.quit()
        zone.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
