#!/usr/bin/python3
"""test/browser/check_report.py REPORT.html SCREENSHOT.png [EXPECTED_CHARTS]

Opens the demo's HTML report in headless Chromium (Debian's chromium), driven over the DevTools
protocol on a pipe (--remote-debugging-pipe: no port, no extra package), and prints TAP-style lines:
the page loads; it has the expected number of charts; each chart's image decoded (naturalWidth > 0)
and its screenshot is not blank (many colours, a share of non-white pixels); the whole page's
screenshot is non-empty (written to SCREENSHOT.png); and no console error, uncaught exception or
failed load was reported.  Uses PIL (python3-pil, which python3-matplotlib brings) to read the PNGs.
"""
import base64
import io
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time

from PIL import Image

TIMEOUT = 60


def line(ok, what):
    print(("ok - " if ok else "not ok - ") + what, flush=True)


class Browser:
    """Chromium with the DevTools protocol on fds 3 (commands in) and 4 (replies out)."""

    def __init__(self, chromium):
        self.profile = tempfile.mkdtemp(prefix="report_chromium.")
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()

        def plumb():  # in the child: the pipe ends as fds 3 and 4, kept across exec
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)
            os.set_inheritable(3, True)   # dup2 onto the same number keeps close-on-exec
            os.set_inheritable(4, True)

        self.log = open(os.path.join(self.profile, "chromium.log"), "w")
        self.proc = subprocess.Popen(
            [chromium, "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
             "--user-data-dir=" + self.profile, "about:blank"],
            preexec_fn=plumb, close_fds=False, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        os.close(to_child_r)
        os.close(from_child_w)
        self.next_id = 0
        self.buffer = b""
        self.events = []      # every event seen, in order
        self.session = None

    def _read_message(self, deadline):
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.from_child], [], [], left)[0]:
                raise TimeoutError("no answer from Chromium within %d s" % TIMEOUT)
            chunk = os.read(self.from_child, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed the pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method, params=None, session=True):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self.to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError("%s: %s" % (method, reply["error"]))
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method):
        deadline = time.monotonic() + TIMEOUT
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read_message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def close(self):
        try:
            self.send("Browser.close", session=False)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


def not_blank(png):
    """(ok, facts) of a PNG: several colours and some non-white pixels."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    pixels = image.width * image.height
    white = sum(n for n, c in colours if min(c) >= 245)
    inked = 1 - white / pixels if pixels else 0
    return len(colours) >= 8 and inked >= 0.02, "%dx%d, %d colours, %.0f%% not white" % (
        image.width, image.height, len(colours), 100 * inked)


def main():
    report, screenshot = os.path.abspath(sys.argv[1]), sys.argv[2]
    expected = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    chromium = shutil.which("chromium")
    if not chromium:
        line(False, "headless Chromium is installed (Debian's chromium package)")
        return
    browser = Browser(chromium)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"}, session=False)
        browser.session = browser.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True},
                                       session=False)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            browser.send(domain + ".enable")
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": 1100, "height": 900, "deviceScaleFactor": 1, "mobile": False})
        nav = browser.send("Page.navigate", {"url": "file://" + report})
        browser.wait_for("Page.loadEventFired")
        line("errorText" not in nav, "Chromium opens %s%s" % (os.path.basename(report),
                                                             " (%s)" % nav.get("errorText", "") if "errorText" in nav else ""))

        charts = browser.send("Runtime.evaluate", {"returnByValue": True, "expression": """
            Array.from(document.querySelectorAll('img.chart')).map(img => {
                const r = img.getBoundingClientRect();
                return {alt: img.alt, complete: img.complete, natural: img.naturalWidth,
                        x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height};
            })"""})["result"]["value"]
        line(len(charts) == expected, "the report has %d charts (expected %d): %s"
             % (len(charts), expected, ", ".join(c["alt"] for c in charts)))
        for c in charts:
            decoded = c["complete"] and c["natural"] > 0 and c["width"] > 100 and c["height"] > 100
            shot = browser.send("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": c["x"], "y": c["y"], "width": c["width"], "height": c["height"], "scale": 1}})
            ok, facts = not_blank(base64.b64decode(shot["data"]))
            line(decoded and ok, "chart \"%s\" renders: image decoded (%d px wide, shown %dx%d), its screenshot %s"
                 % (c["alt"], c["natural"], c["width"], c["height"], facts))

        page = base64.b64decode(browser.send("Page.captureScreenshot",
                                             {"format": "png", "captureBeyondViewport": True})["data"])
        with open(screenshot, "wb") as f:
            f.write(page)
        ok, facts = not_blank(page)
        line(len(page) > 10000 and ok, "the page's screenshot is not empty (%d bytes, %s)" % (len(page), facts))

        errors = []
        for e in browser.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append("console.%s: %s" % (params["type"], " ".join(
                    str(a.get("value", a.get("description", ""))) for a in params.get("args", []))))
            elif method == "Runtime.exceptionThrown":
                errors.append("exception: %s" % params.get("exceptionDetails", {}).get("text"))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                errors.append("%s: %s" % (params["entry"].get("source"), params["entry"].get("text")))
        line(not errors, "no console error, exception or failed load%s" % (": " + "; ".join(errors) if errors else ""))
    except Exception as e:     # a protocol failure: say which, as a failed check
        line(False, "driving headless Chromium: %s: %s" % (type(e).__name__, e))
    finally:
        browser.close()


if __name__ == "__main__":
    main()
