#!/usr/bin/python3
"""End-to-end tests of the admin port's web console: a real recd on
127.0.0.1 (a small trained shop bundle, an experiment layer) and the page
rendered by headless Chromium, driven over the DevTools protocol on a pipe
(no port). A user looked up in the page shows the slate the gRPC Recommend
gives that user (Python grpcio), item by item, with the why-not verdict; an
item look-up shows SimilarItems' answer; with a token configured the page
asks for it and sends it in the Authorization header only. The JSON API
refuses bad parameters with 400 (and never repeats them), needs the token
when one is configured, escapes what it echoes, and leaves no trace in the
metrics or the experiments' attribution. Reuses test_recd.py.

Usage: /usr/bin/python3 tests/e2e/test_console.py --build BUILD_DIR --proto PROTO_DIR
       [--screenshot PNG]   (also writes the page's picture, as in docs/console.png)
"""
import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_recd as base  # noqa: E402

pb = base.pb
T = 10          # seconds, per gRPC call and per HTTP request
WAIT = 30       # seconds, for the page to reach a state
SCREENSHOT = None

EXPERIMENTS = """
layer.blend.salt = console-1
layer.blend.arm.control.share = 5000
layer.blend.arm.popular.share = 5000
layer.blend.arm.popular.set.blend.popularity = 0.6
"""


def chromium_path():
    return shutil.which("chromium") or "/usr/bin/chromium"


class Browser:
    """Headless Chromium driven over --remote-debugging-pipe (fds 3 and 4,
    NUL-terminated JSON): one page, navigated and read with Runtime.evaluate.
    Killed on close, and its profile removed."""

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="console-chromium.")
        r, self.to_chrome = os.pipe()
        self.from_chrome, w = os.pipe()
        # Chromium reads fd 3 and writes fd 4. bash puts the two ends there
        # after the fork (dash takes no fd past 9): Python code between fork
        # and exec (a preexec_fn) can deadlock on a lock grpcio's threads
        # held. Both ends move above 10 first, so neither redirection
        # overwrites the other.
        hi_r, hi_w = fcntl.fcntl(r, fcntl.F_DUPFD_CLOEXEC, 10), fcntl.fcntl(w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(r)
        os.close(w)
        args = ["--headless=new", "--no-sandbox", "--user-data-dir=" + self.profile,
                "--remote-debugging-pipe", "--no-first-run", "--disable-gpu", "--disable-extensions",
                "--disable-background-networking", "--window-size=1280,1700", "about:blank"]
        # Its own process group: close() ends chromium and every helper it forked.
        self.proc = subprocess.Popen(
            ["/bin/bash", "-c", 'exec "$0" "$@" 3<&%d 4>&%d %d<&- %d>&-' % (hi_r, hi_w, hi_r, hi_w),
             chromium_path()] + args,
            pass_fds=(hi_r, hi_w), start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(hi_r)
        os.close(hi_w)
        self.buf = b""
        self.next_id = 0
        try:
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        except BaseException:
            self.close()
            raise

    def call(self, method, session=None, **params):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + WAIT
        while True:
            while b"\0" in self.buf:
                raw, self.buf = self.buf.split(b"\0", 1)
                m = json.loads(raw)
                if m.get("id") == self.next_id:
                    if "error" in m:
                        raise AssertionError("%s: %s" % (method, m["error"]))
                    return m["result"]
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.from_chrome], [], [], left)[0]:
                raise AssertionError("chromium did not answer %s" % method)
            chunk = os.read(self.from_chrome, 1 << 20)
            if not chunk:
                raise AssertionError("chromium exited")
            self.buf += chunk

    def open(self, url):
        self.call("Page.navigate", self.session, url=url)

    def js(self, expr):
        r = self.call("Runtime.evaluate", self.session, expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise AssertionError("page script failed: %s" % r["exceptionDetails"])
        return r["result"].get("value")

    def wait(self, expr, what):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                v = self.js(expr)
            except AssertionError:
                v = None  # the page is between documents
            if v:
                return v
            time.sleep(0.1)
        raise AssertionError("the page never showed %s; it holds:\n%s" % (what, self.js("document.body.innerText")))

    def screenshot(self, path):
        png = self.call("Page.captureScreenshot", self.session, format="png", captureBeyondViewport=True)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(png))

    def close(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        os.close(self.to_chrome)
        os.close(self.from_chrome)
        shutil.rmtree(self.profile, ignore_errors=True)


SLATE = "[...document.querySelectorAll('#slate [data-item]')].map(e => e.dataset.item)"
USER_DONE = "document.getElementById('user-result').dataset.state === 'done'"


def http(port, path, token=None, method="GET", host=None):
    """(status, headers, body) of one request to the admin port."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method)
    if host:
        req.add_header("Host", host)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=T) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def stop(d):
    """Stops recd; anything but exit 0 (a sanitizer's report, a leak) fails the class."""
    code = d.close()
    if code != 0:
        raise AssertionError("recd exited %s:\n%s" % (code, d.output()[-4000:]))


class ConsoleCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bundle = base.shop_bundle("shop")
        cls.exp = os.path.join(base.TMP, "console-exp.conf")
        with open(cls.exp, "w") as f:
            f.write(EXPERIMENTS)
        cls.d = base.Recd(cls.bundle, "--experiments=" + cls.exp,
                          "--event_log=" + os.path.join(base.TMP, "console-events-%d" % time.monotonic_ns()))
        cls.addClassCleanup(stop, cls.d)
        cls.browser = None

    def page(self):
        c = type(self)
        if not c.browser:
            c.browser = Browser()
            c.addClassCleanup(c.browser.close)
        return c.browser

    def recommend(self, user, k, why=()):
        return self.d.ranking.Recommend(pb["ranking"].RecommendRequest(
            user_id=user, k=k, explain=True, explain_item_ids=list(why)), timeout=T)

    def console(self, fragment, port=None):
        b = self.page()
        b.open("about:blank")  # a whole new document each time, not a hash change
        b.open("http://127.0.0.1:%d/console#%s" % (port or self.d.admin_port, fragment))
        return b


class PageTest(ConsoleCase):
    def test_user_lookup_shows_the_grpc_slate(self):
        for user, k in (("U00", 8), ("U07", 5), ("U23", 12), ("nobody-known", 6)):
            want = self.recommend(user, k)
            b = self.console("user=%s&k=%d" % (user, k))
            b.wait(USER_DONE + " && document.getElementById('user-id').value === %s" % json.dumps(user),
                   "the slate of " + user)
            self.assertEqual(b.js(SLATE), [i.item_id for i in want.items], user)
            # A bar per item, one segment per source, and one more where the rules moved the score.
            segs = b.js("[...document.querySelectorAll('#slate li')].map(li => li.querySelectorAll('.seg').length)")
            for item, n in zip(want.items, segs):
                moved = abs(item.explanation.final_score - item.explanation.blended) > 1e-6
                self.assertEqual(n, len(item.sources) + moved, item.item_id)
            if want.degraded_reasons:
                self.assertIn(", ".join(want.degraded_reasons), b.js("document.getElementById('user-result').innerText"))

    def test_why_not_verdict(self):
        full = [i.item_id for i in self.recommend("U03", 40).items]
        top = [i.item_id for i in self.recommend("U03", 5).items]
        missing = next(i for i in full if i not in top)
        want = self.recommend("U03", 5, why=[missing, "no-such-item"])
        self.assertEqual(len(want.verdicts), 2)
        for v in want.verdicts:
            b = self.console("user=U03&k=5&why=%s" % urllib.request.quote(v.item_id))
            text = b.wait("(%s) && [...document.querySelectorAll('[data-verdict]')].map(e => e.textContent).join('|')"
                          % USER_DONE, "the verdict on " + v.item_id)
            self.assertEqual(text, "why not %s: %s — %s" % (v.item_id, v.stage, v.reason))
            self.assertEqual(b.js(SLATE), top)

    def test_item_lookup_shows_similar_items(self):
        want = self.d.ranking.SimilarItems(pb["ranking"].SimilarItemsRequest(item_ids=["I04"], k=6), timeout=T)
        b = self.console("item=I04&k=6")
        got = b.wait("document.getElementById('item-result').dataset.state === 'done' && "
                     "[...document.querySelectorAll('#similar [data-item]')].map(e => e.dataset.item)",
                     "the similar items")
        self.assertEqual(got, [i.item_id for i in want.items])

    def test_bundle_settings_experiments_and_live_numbers(self):
        for u in range(40):  # traffic for the live tiles
            self.recommend("U%02d" % (u % 30), 10)
        b = self.console("user=U01&k=10")
        b.wait(USER_DONE, "the slate")
        text = b.wait("!!document.querySelector('#bundle-result table') && document.body.innerText", "the bundle")
        self.assertIn(base.manifest_version(self.bundle), text)
        self.assertEqual(b.js("document.querySelectorAll('#settings tr').length > 20"), True)
        self.assertIn("blend.popularity", b.js("document.getElementById('settings').textContent"))
        arms = b.wait("[...document.querySelectorAll('#experiments-result [data-arm]')].map(e => e.dataset.arm)",
                      "the experiment's arms")
        self.assertEqual(arms, ["control", "popular"])
        # Two samples of /metrics five seconds apart give the rates; traffic between them shows.
        for u in range(30):
            self.recommend("U%02d" % u, 10)
        rate = b.wait("/^[0-9.]+$/.test(document.getElementById('live-rate').textContent) && "
                      "document.getElementById('live-rate').textContent", "a request rate")
        self.assertGreaterEqual(float(rate), 0)
        self.assertTrue(b.js("document.getElementById('live-p99').textContent.length > 0"))
        if SCREENSHOT:  # the user, a why-not verdict and an item, with live numbers
            top = [i.item_id for i in self.recommend("U01", 8).items]
            why = next(i.item_id for i in self.recommend("U01", 30).items if i.item_id not in top)
            b = self.console("user=U01&k=8&why=%s&item=I04" % why)
            for _ in range(3):
                for u in range(60):
                    self.recommend("U%02d" % (u % 30), 10)
                time.sleep(2)
            b.wait("/ms$/.test(document.getElementById('live-p99').textContent)", "a p99")
            b.js("document.querySelector('#bundle details').open = true")
            b.screenshot(SCREENSHOT)

    def test_what_is_echoed_is_text(self):
        evil = '<img src=x onerror="document.title=\'owned\'">'
        code, _, body = http(self.d.admin_port, "/api/recommend?user=%s&k=3&why=%s" % (
            urllib.request.quote(evil), urllib.request.quote("<b>bold</b>")))
        self.assertEqual(code, 200)
        self.assertNotIn(b"<", body)  # every '<' goes out as \u003c
        self.assertEqual(json.loads(body)["verdicts"][0]["item_id"], "<b>bold</b>")
        b = self.console("user=%s&k=3&why=%s" % (urllib.request.quote(evil), urllib.request.quote("<b>bold</b>")))
        b.wait(USER_DONE + " && !!document.querySelector('[data-verdict]')", "the verdict")
        self.assertEqual(b.js("document.getElementById('user-id').value"), evil)
        self.assertIn("why not <b>bold</b>:", b.js("document.querySelector('[data-verdict]').textContent"))
        self.assertEqual(b.js("document.querySelectorAll('img').length"), 0)
        self.assertEqual(b.js("document.querySelectorAll('#user-result b').length"), 1)  # the page's own label
        self.assertEqual(b.js("document.title"), "recd console")

    def test_lookups_leave_no_trace(self):
        def counters():
            _, _, m = http(self.d.admin_port, "/metrics")
            keep = ("recd_degraded_total", "recd_recommend_strategy_total", "recd_requests_total",
                    "recd_arm_slates_total", "recd_candidates_total")
            return [l for l in m.decode().splitlines() if l.startswith(keep)]
        # A gRPC call is counted just after its answer leaves: wait until
        # the earlier tests' calls are all in.
        before, deadline = counters(), time.monotonic() + WAIT
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now = counters()
            if now == before:
                break
            before = now
        for user in ("U01", "someone-new", "U02"):
            self.assertEqual(http(self.d.admin_port, "/api/recommend?user=%s&k=5" % user)[0], 200)
        self.assertEqual(http(self.d.admin_port, "/api/similar?item=I01")[0], 200)
        self.assertEqual(counters(), before)


class ApiTest(ConsoleCase):
    BAD = [
        ("/api/recommend", "user is required"),
        ("/api/recommend?user=", "user must be"),
        ("/api/recommend?user=" + "u" * 129, "user must be"),
        ("/api/recommend?user=%00abc", "user must be"),
        ("/api/recommend?user=%ZZ", "user must be"),
        ("/api/recommend?user=%4", "user must be"),
        ("/api/recommend?user=a%01b", "user must be"),
        ("/api/recommend?user=%E2%82", "user must be"),          # cut UTF-8
        ("/api/recommend?user=%C0%AF", "user must be"),          # overlong
        ("/api/recommend?user=%ED%A0%80", "user must be"),       # a surrogate
        ("/api/recommend?user=a&k=0", "k must be"),
        ("/api/recommend?user=a&k=201", "k must be"),            # max_k 200
        ("/api/recommend?user=a&k=-1", "k must be"),
        ("/api/recommend?user=a&k=1e2", "k must be"),
        ("/api/recommend?user=a&k=", "k must be"),
        ("/api/recommend?user=a&k=99999999999999999999", "k must be"),
        ("/api/recommend?user=a&user=b", "once"),
        ("/api/recommend?user=a&k=1&k=2", "once"),
        ("/api/recommend?user=a&item=b", "unknown parameter"),
        ("/api/recommend?user=a&secret", "name=value"),
        ("/api/recommend?user=a" + "&why=x" * 9, "at most 8"),
        ("/api/similar", "item is required"),
        ("/api/similar?user=U01", "unknown parameter"),
        ("/api/similar?item=" + "%FF", "each id must be"),
        ("/api/bundle?verbose=1", "unknown parameter"),
        ("/api/experiments?k=3", "unknown parameter"),
    ]

    def test_bad_parameters_are_400_and_not_repeated(self):
        for path, msg in self.BAD:
            code, headers, body = http(self.d.admin_port, path)
            self.assertEqual(code, 400, path)
            self.assertEqual(headers["Content-Type"], "application/json", path)
            err = json.loads(body)["error"]
            self.assertIn(msg, err, path)
            self.assertNotIn("ZZ", err)
            self.assertNotIn("uuuu", err)
        self.assertEqual(http(self.d.admin_port, "/api/nothing")[0], 404)
        # No token on this port: a name in Host (DNS rebinding) gets no data, an address does.
        self.assertEqual(http(self.d.admin_port, "/api/bundle", host="evil.example:%d" % self.d.admin_port)[0], 403)
        self.assertEqual(http(self.d.admin_port, "/api/bundle", host="localhost:%d" % self.d.admin_port)[0], 200)
        self.assertEqual(http(self.d.admin_port, "/api/bundle", method="POST")[0], 405)
        # Percent-encoding decoded once: %2541 is "%41", not "A".
        code, _, body = http(self.d.admin_port, "/api/recommend?user=U%2541&k=2&why=a%2Bb+c")
        self.assertEqual(code, 200)
        self.assertEqual(json.loads(body)["verdicts"][0]["item_id"], "a+b c")
        # An item the bundle lacks: SimilarItems' own 400.
        self.assertEqual(http(self.d.admin_port, "/api/similar?item=nope")[0], 400)

    def test_headers(self):
        for path, ctype in (("/console", "text/html; charset=utf-8"),
                            ("/console/console.js", "text/javascript; charset=utf-8"),
                            ("/console/console.css", "text/css; charset=utf-8"),
                            ("/api/bundle", "application/json"), ("/api/experiments", "application/json"),
                            ("/api/recommend?user=U01", "application/json"),
                            ("/api/similar?item=I01&k=3", "application/json")):
            code, headers, body = http(self.d.admin_port, path)
            self.assertEqual(code, 200, path)
            self.assertEqual(headers["Content-Type"], ctype, path)
            self.assertEqual(headers["X-Content-Type-Options"], "nosniff", path)
            self.assertEqual(headers["Cache-Control"], "no-store", path)
            csp = headers["Content-Security-Policy"]
            self.assertIn("default-src 'none'", csp)
            self.assertIn("script-src 'self'", csp)
            self.assertIn("connect-src 'self'", csp)
            if ctype == "application/json":
                json.loads(body)
        page = http(self.d.admin_port, "/console")[2].decode()
        self.assertNotIn("http://", page.split("-->", 1)[1])  # nothing loaded from elsewhere
        self.assertNotIn("https://", page)


class TokenTest(ConsoleCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.t = base.Recd(cls.bundle, "--admin_http_auth=token")
        cls.addClassCleanup(stop, cls.t)

    def test_every_route_but_probes_and_page_needs_the_token(self):
        port = self.t.admin_port
        for path in ("/api/bundle", "/api/experiments", "/api/recommend?user=U01", "/api/similar?item=I01",
                     "/metrics", "/status", "/api/recommend?user=%ZZ"):
            self.assertEqual(http(port, path)[0], 401, path)
            self.assertEqual(http(port, path, token="wrong-token-0123456789")[0], 401, path)
        for path in ("/api/bundle", "/api/experiments", "/api/recommend?user=U01", "/metrics"):
            self.assertEqual(http(port, path, token=base.ADMIN_TOKEN)[0], 200, path)
        for path in ("/healthz", "/readyz", "/console", "/console/console.js", "/console/console.css"):
            self.assertEqual(http(port, path)[0], 200, path)

    def test_page_asks_for_the_token_and_sends_it_in_the_header(self):
        want = self.t.ranking.Recommend(pb["ranking"].RecommendRequest(user_id="U11", k=7), timeout=T)
        b = self.console("user=U11&k=7", port=self.t.admin_port)
        b.wait("!document.getElementById('token-form').hidden && "
               "document.getElementById('user-result').dataset.state === 'error'", "the token form")
        b.js("document.getElementById('token').value = 'not-the-token-0123456789';"
             "document.getElementById('token-form').requestSubmit(); true")
        b.wait("!document.getElementById('token-form').hidden && "
               "document.getElementById('token-error').textContent.includes('refused')", "the refusal")
        b.js("document.getElementById('token').value = %s;"
             "document.getElementById('token-form').requestSubmit(); true" % json.dumps(base.ADMIN_TOKEN))
        b.wait(USER_DONE, "the slate after the token")
        self.assertEqual(b.js(SLATE), [i.item_id for i in want.items])
        self.assertTrue(b.js("document.getElementById('token-form').hidden"))
        self.assertNotIn(base.ADMIN_TOKEN, b.js("location.href"))
        self.assertEqual(b.js("sessionStorage.getItem('recd-admin-token')"), base.ADMIN_TOKEN)
        self.assertNotIn(base.ADMIN_TOKEN, b.js("document.documentElement.outerHTML"))


if __name__ == "__main__":
    if "--screenshot" in sys.argv:
        i = sys.argv.index("--screenshot")
        SCREENSHOT = os.path.abspath(sys.argv[i + 1])
        del sys.argv[i:i + 2]
    sys.exit(base.run("recd_console."))
