#!/usr/bin/python3
"""End-to-end tests of layered experiments: arms in every response, in the
call log and in /metrics (checked by promtool); holdouts served popularity;
an arm served from another resident bundle; online attribution of a scripted
stream of clicks and purchases, where one arm converts better and recctl
experiments finds it (and an A/A layer finds nothing); runtime control over
the authenticated admin listener that survives a restart; a bad experiments
file refused at start and on reload while the old one keeps serving.
A real recd on 127.0.0.1 over synthetic bundles. Reuses test_recd.py.

Usage: /usr/bin/python3 tests/e2e/test_experiments.py --build BUILD_DIR --proto PROTO_DIR
"""
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_recd as base  # noqa: E402

pb = base.pb
T = 10  # seconds, per call


def synth(name, seed):
    path = os.path.join(base.TMP, name)
    if not os.path.exists(path):
        base.recctl("synth", "--out", path, "--items", "1500", "--users", "1500", "--dim", "16",
                    "--categories", "6", "--seed", str(seed), "--version", name, check=True)
    return path


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


class ExperimentCase(unittest.TestCase):
    def start(self, exp_text, *extra, exp_path=None):
        self.bundle = synth("main", 5)
        self.exp = exp_path or os.path.join(base.TMP, "exp-%d.conf" % time.monotonic_ns())
        write(self.exp, exp_text)
        self.events = os.path.join(base.TMP, "events-%d" % time.monotonic_ns())
        return self.launch(*extra)

    def launch(self, *extra):
        d = base.Recd(self.bundle, "--experiments=" + self.exp, "--event_log=" + self.events, *extra)
        self.addCleanup(lambda: d.proc.poll() is None and self.assertEqual(d.close(), 0, d.output()))
        self.d = d
        self.admin = pb["admin_grpc"].AdminStub(d.admin_channel)
        self.ev = pb["events_grpc"].EventsStub(d.channel)
        return d

    def recommend(self, user, k=10, session="", **kw):
        ctx = pb["common"].Context(session_id=session)
        return self.d.ranking.Recommend(pb["ranking"].RecommendRequest(user_id=user, k=k, context=ctx, **kw),
                                        timeout=T)

    def arms(self, r):
        return {a.experiment: a.arm for a in r.arms}

    def metrics(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.d.admin_port, timeout=10) as r:
            return r.read().decode()

    def recctl(self, *args):
        return base.recctl("experiments", *args, "--addr", self.d.admin_addr, "--token-file",
                           base.admin_token_file())

    def refused(self, code, fn, *args, **kw):
        import grpc
        with self.assertRaises(grpc.RpcError) as cm:
            fn(*args, **kw)
        self.assertEqual(cm.exception.code(), code, cm.exception.details())
        return cm.exception.details()


ARMS = """
layer.ranker.salt = ranker-1
layer.ranker.arm.control.share = 4500
layer.ranker.arm.lowmmr.share = 4500
layer.ranker.arm.lowmmr.set.diversity.mmr_lambda = 0.2
layer.ranker.arm.lowmmr.set.diversity.category_share = 0.2
layer.ranker.arm.holdout.share = 1000
layer.ranker.arm.holdout.holdout = true
layer.model.salt = model-1
layer.model.unit = session
layer.model.arm.control.share = 5000
layer.model.arm.alt.share = 5000
layer.model.arm.alt.bundle = alt
"""


class ArmsTest(ExperimentCase):
    def test_arms_everywhere_and_what_each_arm_serves(self):
        synth("alt", 9)
        self.start(ARMS)
        main_v, alt_v = base.manifest_version(self.bundle), "alt"
        seen = {}
        for u in range(300):
            user, session = "U%05d" % u, "s-%d" % u
            r = self.recommend(user, session=session)
            arms = self.arms(r)
            # Deterministic: the same user and session get the same arms.
            self.assertEqual(arms, self.arms(self.recommend(user, session=session)))
            self.assertIn(arms["ranker"], ("control", "lowmmr", "holdout"))
            seen.setdefault(arms["ranker"], []).append(user)
            # The session layer's alt arm serves from the resident bundle.
            self.assertEqual(r.bundle_version, alt_v if arms["model"] == "alt" else main_v)
            if arms["ranker"] == "holdout":
                self.assertEqual(r.strategy, pb["ranking"].STRATEGY_POPULARITY_FALLBACK)
                self.assertTrue(all(len(i.sources) == 1 and i.sources[0].source == pb["common"].SOURCE_POPULARITY
                                    for i in r.items))
            else:
                self.assertEqual(r.strategy, pb["ranking"].STRATEGY_PERSONALIZED)
        self.assertEqual(set(seen), {"control", "lowmmr", "holdout"})
        # The session decides the session layer: one user over many sessions meets both arms.
        models = {self.arms(self.recommend("U00001", session="x%d" % i))["model"] for i in range(40)}
        self.assertEqual(models, {"control", "alt"})
        # lowmmr's settings diversify: its pages hold fewer items per category.
        def top_share(users):
            worst = 0
            for user in users[:20]:
                r = self.recommend(user, session="fixed-main-0")
                cats = [i.category for i in r.items]
                worst = max(worst, max(cats.count(c) for c in cats))
            return worst
        self.assertLessEqual(top_share(seen["lowmmr"]), 2)  # ceil(0.2 * 10)
        # Every call's log line names its arms and request id.
        r = self.recommend("U00002", session="s-2", request_id="req-log-1")
        out = ""
        for _ in range(50):
            out = self.d.output()
            if "req-log-1" in out:
                break
            time.sleep(0.1)
        line = [x for x in out.splitlines() if 'request_id="req-log-1"' in x]
        self.assertTrue(line, out[-2000:])
        self.assertIn('msg="call"', line[0])
        self.assertIn("arms=ranker/%s,model/%s" % (self.arms(r)["ranker"], self.arms(r)["model"]), line[0])
        # The arms are bounded labels of /metrics, which promtool accepts.
        text = self.metrics()
        for arm in ("control", "lowmmr", "holdout"):
            labels = 'experiment="ranker",salt="ranker-1",arm="%s"' % arm
            self.assertRegex(text, r'recd_arm_requests_total\{%s,status="OK"\} [1-9]' % labels)
            self.assertIn('recd_arm_request_duration_seconds_bucket{%s,le="+Inf"}' % labels, text)
            self.assertIn('recd_arm_slates_total{%s}' % labels, text)
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                               timeout=30)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)


CONVERSION = """
layer.conv.salt = conv-1
layer.conv.arm.control.share = 5000
layer.conv.arm.better.share = 5000
layer.aa.salt = aa-1
layer.aa.arm.control.share = 5000
layer.aa.arm.twin.share = 5000
"""


class AttributionTest(ExperimentCase):
    def test_a_better_arm_is_found_and_an_aa_split_is_not(self):
        """A scripted stream: every user gets a slate; users in conv/better buy
        a shown item with probability 0.3, the others 0.1; half the purchases
        name the slate's request id, half rely on the last slate; everybody
        clicks with probability 0.5; some events must count for nobody."""
        self.start(CONVERSION)
        rng = random.Random(20261201)
        E = pb["events"]
        want = {"control": [0, 0], "better": [0, 0]}  # slates, purchased slates
        events = []
        for u in range(1200):
            user = "U%05d" % u
            r = self.recommend(user, k=8)
            arm = self.arms(r)["conv"]
            want[arm][0] += 1
            shown = [i.item_id for i in r.items]
            if rng.random() < 0.5:
                events.append(E.Event(user_id=user, item_id=rng.choice(shown), type=E.EVENT_TYPE_CLICK,
                                      slate_request_id=r.request_id))
            if rng.random() < (0.3 if arm == "better" else 0.1):
                want[arm][1] += 1
                named = rng.random() < 0.5
                events.append(E.Event(user_id=user, item_id=rng.choice(shown), type=E.EVENT_TYPE_PURCHASE,
                                      quantity=1, price=10.0, slate_request_id=r.request_id if named else ""))
            if u % 10 == 0:  # counts for nobody: not shown, or another user's slate
                events.append(E.Event(user_id=user, item_id="not-shown", type=E.EVENT_TYPE_PURCHASE, quantity=1,
                                      price=99.0))
                events.append(E.Event(user_id="U99999", item_id=shown[0], type=E.EVENT_TYPE_PURCHASE, quantity=1,
                                      price=99.0, slate_request_id=r.request_id))
        for at in range(0, len(events), 500):
            self.ev.Record(E.RecordRequest(events=events[at:at + 500]), timeout=T)
        r = self.recctl("--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        rep = {x["experiment"]: {a["arm"]: a for a in x["arms"]} for x in json.loads(r.stdout)["experiments"]}
        conv = rep["conv"]
        for arm in ("control", "better"):
            self.assertEqual(conv[arm]["slates"], want[arm][0])
            self.assertEqual(conv[arm]["purchased_slates"], want[arm][1])
            self.assertAlmostEqual(conv[arm]["revenue"], 10.0 * want[arm][1], places=3)
        better = conv["better"]["vs_control"]["conversion"]
        self.assertTrue(better["significant"], better)
        self.assertGreater(better["ci_low"], 0)
        self.assertFalse(conv["better"]["vs_control"]["click_through"]["significant"])
        twin = rep["aa"]["twin"]["vs_control"]
        self.assertFalse(twin["conversion"]["significant"], twin)
        self.assertFalse(twin["click_through"]["significant"], twin)
        # The text report says the same, in words.
        text = self.recctl().stdout
        block = text[text.index("experiment conv"):text.index("experiment aa")]
        self.assertRegex(block, r"conversion\s+\+\d+\.\d+ pts\s+95% CI \[\+\d+\.\d+, \+\d+\.\d+\]\s+SIGNIFICANT")
        self.assertNotIn("SIGNIFICANT", text[text.index("experiment aa"):])
        self.assertRegex(self.metrics(), r'recd_arm_purchased_slates_total\{experiment="conv",salt="conv-1",'
                         r'arm="better"\} %d\n' % want["better"][1])


CONTROL = """
layer.ramp.salt = ramp-1
layer.ramp.arm.control.share = 5000
layer.ramp.arm.new.share = 1000
layer.ramp.arm.new.set.blend.popularity = 0.9
"""


class ControlTest(ExperimentCase):
    def test_shares_change_at_runtime_are_audited_and_survive_a_restart(self):
        import grpc
        self.start(CONTROL)
        A = pb["admin"]
        users = ["U%05d" % u for u in range(200)]
        before = [self.arms(self.recommend(u)).get("ramp") for u in users]
        self.assertIn(None, before)  # 40% of the units are in no arm
        # Refused: on the serving port, without a token, over 10000, unknown names.
        serving = pb["admin_grpc"].AdminStub(self.d.channel)
        req = A.ControlExperimentRequest(experiment="ramp", action=A.CONTROL_ACTION_SET_SHARE, arm="new",
                                         share_bp=5000)
        self.refused(grpc.StatusCode.PERMISSION_DENIED, serving.ControlExperiment, req, timeout=T)
        anon = pb["admin_grpc"].AdminStub(self.d._admin_raw)
        self.refused(grpc.StatusCode.UNAUTHENTICATED, anon.ControlExperiment, req, timeout=T)
        over = A.ControlExperimentRequest(experiment="ramp", action=A.CONTROL_ACTION_SET_SHARE, arm="new",
                                          share_bp=5001)
        self.assertIn("10001", self.refused(grpc.StatusCode.INVALID_ARGUMENT, self.admin.ControlExperiment, over,
                                            timeout=T))
        self.refused(grpc.StatusCode.NOT_FOUND, self.admin.ControlExperiment,
                     A.ControlExperimentRequest(experiment="nope", action=A.CONTROL_ACTION_STOP), timeout=T)
        # A crash mid-append left a torn line: the next change still gets a line of its own.
        with open(self.exp + ".state", "a") as f:
            f.write("1764547200000\ttoken:e2e\tramp\tramp-1\tsha")
        # recctl moves the treatment to 50%: no unit is left without an arm, and the
        # units that were in an arm keep it (control's range comes first).
        r = self.recctl("share", "ramp", "new", "5000")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("new", r.stdout)
        after = [self.arms(self.recommend(u)).get("ramp") for u in users]
        self.assertNotIn(None, after)
        for b, a in zip(before, after):
            if b is not None:
                self.assertEqual(a, b)
        self.assertIn('msg="experiment changed" who="token:e2e" experiment=ramp action=share arm=new share_bp=5000',
                      self.d.output())
        rep = self.admin.Experiments(A.ExperimentsRequest(), timeout=T)
        self.assertEqual([(c.who, c.action, c.arm, c.share_bp) for c in rep.changes],
                         [("token:e2e", "share", "new", 5000)])
        # A restart replays the change.
        self.assertEqual(self.d.close(), 0)
        self.launch()
        self.assertEqual([self.arms(self.recommend(u)).get("ramp") for u in users], after)
        # Stop: nobody gets an arm; resume: back as it was.
        self.assertEqual(self.recctl("stop", "ramp").returncode, 0)
        self.assertEqual([self.arms(self.recommend(u)).get("ramp") for u in users[:20]], [None] * 20)
        self.assertIn("STOPPED", self.recctl().stdout)
        self.assertEqual(self.recctl("resume", "ramp").returncode, 0)
        self.assertEqual([self.arms(self.recommend(u)).get("ramp") for u in users], after)
        text = self.recctl().stdout
        self.assertIn("token:e2e  ramp: new share -> 50.00%", text)
        self.assertIn("token:e2e  ramp: stop", text)


class ConcurrentTest(ExperimentCase):
    def test_calls_events_share_changes_and_reloads_together(self):
        """Recommend and Events.Record from four threads while the shares
        change and SIGHUP reloads the file: every call succeeds (under
        ThreadSanitizer in the concurrency build)."""
        import threading
        self.start(CONTROL)
        A, E = pb["admin"], pb["events"]
        errors, calls, stop = [], [0], threading.Event()

        def client(n):
            rng = random.Random(n)
            while not stop.is_set():
                user = "U%05d" % rng.randrange(1000)
                try:
                    r = self.recommend(user, k=5)
                    if r.items:
                        self.ev.Record(E.RecordRequest(events=[E.Event(
                            user_id=user, item_id=r.items[0].item_id, type=E.EVENT_TYPE_PURCHASE, quantity=1,
                            price=1.0, slate_request_id=r.request_id if n % 2 else "")]), timeout=T)
                    calls[0] += 1
                except Exception as e:  # noqa: BLE001 - any failure fails the test
                    errors.append(e)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        try:
            for i in range(20):
                self.admin.ControlExperiment(A.ControlExperimentRequest(
                    experiment="ramp", action=A.CONTROL_ACTION_SET_SHARE, arm="new", share_bp=(i * 500) % 5000),
                    timeout=T)
                if i % 7 == 0:
                    self.d.proc.send_signal(signal.SIGHUP)
                self.admin.Experiments(A.ExperimentsRequest(), timeout=T)
                time.sleep(0.1)
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertEqual(errors, [])
        self.assertGreater(calls[0], 20)


class ReloadTest(ExperimentCase):
    def test_a_bad_file_is_refused_whole_and_the_old_one_serves(self):
        import grpc
        self.start(CONTROL)
        A = pb["admin"]
        # A new salt reassigns; a bad file (shares over 10000) is refused, naming the rule.
        write(self.exp, CONTROL.replace("share = 1000", "share = 9000"))
        detail = self.refused(grpc.StatusCode.INVALID_ARGUMENT, self.admin.Reload, A.ReloadRequest(), timeout=60)
        self.assertIn("shares add up to 14000 basis points", detail)
        self.assertIn("ramp", {a.experiment for a in self.recommend("U00001").arms} | {"ramp"})
        rep = self.admin.Experiments(A.ExperimentsRequest(), timeout=T)
        self.assertEqual([a.share_bp for a in rep.layers[0].arms], [5000, 1000])
        # A setting an arm cannot take is refused too, naming the arm.
        write(self.exp, CONTROL + "layer.ramp.arm.new.set.diversity.mmr_lambda = 7\n")
        detail = self.refused(grpc.StatusCode.INVALID_ARGUMENT, self.admin.Reload, A.ReloadRequest(), timeout=60)
        self.assertIn("layer ramp arm new: set.diversity.mmr_lambda", detail)
        # A good file serves after SIGHUP.
        write(self.exp, CONTROL.replace("5000", "0").replace("1000", "10000"))
        self.d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.arms(self.recommend("U00003")).get("ramp") != "new":
            time.sleep(0.1)
        self.assertTrue(all(self.arms(self.recommend("U%05d" % u)).get("ramp") == "new" for u in range(50)))

    def test_a_bad_file_stops_recd_at_start(self):
        path = write(os.path.join(base.TMP, "bad-exp.conf"), "layer.x.salt = s\nlayer.x.arm.a.share = lots\n")
        r = subprocess.run([os.path.join(base.ARGS.build, "server/recd"), "--bundle=" + synth("main", 5),
                            "--experiments=" + path, "--listen=127.0.0.1:0"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("%s:2: layer.x.arm.a.share: must be an integer in [0, 10000]" % path, r.stderr)
        # A setting no arm can take stops it too, naming the layer, the arm and the key.
        write(path, "layer.x.salt = s\nlayer.x.arm.a.share = 10\nlayer.x.arm.a.set.blend.colour = red\n")
        r = subprocess.run([os.path.join(base.ARGS.build, "server/recd"), "--bundle=" + synth("main", 5),
                            "--experiments=" + path, "--listen=127.0.0.1:0"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("experiments: layer x arm a: set.blend.colour: unknown setting 'blend.colour'", r.stderr)


if __name__ == "__main__":
    sys.exit(base.run("recd_exp."))
