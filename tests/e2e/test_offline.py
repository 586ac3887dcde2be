#!/usr/bin/python3
"""End-to-end tests of the offline pipeline: recctl build / eval / import on
fixture CSVs and on the real Superstore data, the bundles served by a real
recd and queried with recctl; bad inputs must name file:line and leave no
partial bundle. With --quality, the MovieLens quality bar of issue 3.

Usage: /usr/bin/python3 tests/e2e/test_offline.py --build BUILD [--quality]
"""
import argparse
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

ARGS = None
TMP = None
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def recctl(*args, timeout=300):
    return subprocess.run([os.path.join(ARGS.build, "tools/recctl")] + list(args),
                          capture_output=True, text=True, timeout=timeout)


def read(path):
    with open(path) as f:
        return f.read()


def load_json(path):
    with open(path) as f:
        return json.load(f)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def fixture(name, rows=None, catalog=None):
    """A small shop: 30 users in 3 taste groups, 45 items in 3 categories."""
    d = os.path.join(TMP, name)
    os.makedirs(d, exist_ok=True)
    if catalog is None:
        catalog = "item_id,category,subcategory,brand,price,margin,in_stock,name\n" + "".join(
            "I%02d,cat%d,,,%.2f,0.2,%d,\"Item %d, large\"\n" % (i, i % 3, 5 + i, 0 if i == 44 else 1, i)
            for i in range(45))
    if rows is None:
        rows, t = [], 1600000000
        for u in range(30):
            for k in range(8):
                item = (u % 3) + 3 * ((u * 5 + k * 7) % 15)
                t += 3600
                rows.append("U%02d,I%02d,%d,%d,%.2f,purchase," % (u, item, t, 1 + k % 2, 5 + item))
        rows.append("U00,I03,1600000000,-1,8.00,return,")      # a return: dropped
        rows.append("U01,I04,1600000001,1,0,purchase,")        # zero price: kept
        rows.append(rows[0])                                   # exact duplicate: dropped
        rows = "user_id,item_id,timestamp,quantity,price,event_type,rating\n" + "\n".join(rows) + "\n"
    return write(os.path.join(d, "interactions.csv"), rows), write(os.path.join(d, "catalog.csv"), catalog)


class Recd:
    def __init__(self, bundle):
        self.log = os.path.join(TMP, "recd-%d.log" % time.monotonic_ns())
        self.proc = subprocess.Popen([os.path.join(ARGS.build, "server/recd"), "--bundle=" + bundle,
                                      "--listen=127.0.0.1:0", "--admin_listen=127.0.0.1:0", "--admin_grpc_listen=127.0.0.1:0",
                                      "--threads=2"],
                                     stdout=subprocess.DEVNULL, stderr=self._log_file())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = re.search(r'msg="serving" port=(\d+)', read(self.log))
            if m:
                self.addr = "127.0.0.1:" + m.group(1)
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.close()
        raise AssertionError("recd did not start:\n" + read(self.log))

    def _log_file(self):
        self.log_f = open(self.log, "w")
        return self.log_f

    def recommend(self, user, k=5):
        r = recctl("recommend", "--addr", self.addr, "--user", user, "-k", str(k), "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_f.close()
        return self.proc.returncode


class BuildTest(unittest.TestCase):
    def build(self, *extra, inter=None, cat=None, out=None):
        if inter is None:
            inter, cat = fixture("shop")
        out = out or os.path.join(TMP, "b-%d" % time.monotonic_ns())
        r = recctl("build", "--interactions", inter, "--catalog", cat, "--out", out, "--epochs", "5",
                   "--quiet", *extra)
        return r, out

    def test_build_serve_recommend(self):
        r, out = self.build()
        self.assertEqual(r.returncode, 0, r.stderr)
        m = load_json(os.path.join(out, "manifest.json"))
        self.assertEqual(m["item_count"], 45)
        self.assertEqual(m["user_count"], 30)
        data = m["training"]["data"]
        self.assertEqual((data["dropped_returns"], data["dropped_duplicates"], data["zero_price_kept"]),
                         (1, 1, 1))
        self.assertIn("recall@50", m["metrics"]["two-tower"])
        for f in ("item_cf.tsv", "popularity.tsv", "profiles.tsv", "purchases.tsv", "repurchase.tsv"):
            self.assertIn(f, m["files"])
        d = Recd(out)
        try:
            j = d.recommend("U04", k=6)
            self.assertEqual(j["strategy"], "personalized")
            self.assertEqual(j["bundle_version"], m["version"])
            self.assertEqual(len(j["items"]), 6)
            self.assertNotIn("I44", [i["item_id"] for i in j["items"]])  # out of stock
            # U04 is in taste group 1 and has bought every cat1 item anyone
            # bought: the rest of cat1 is known to the two-tower model alone,
            # against items of other categories others bought. One of them
            # comes first or second, and the category cap holds (half of 6).
            cats = [i["category"] for i in j["items"]]
            self.assertIn("cat1", cats[:2], cats)
            self.assertLessEqual(max(cats.count(c) for c in cats), 3, cats)
        finally:
            self.assertEqual(d.close(), 0)

    def test_same_inputs_same_bundle_and_als(self):
        r1, a = self.build("--no-eval")
        r2, b = self.build("--no-eval")
        self.assertEqual(r1.returncode, 0, r1.stderr)
        va = load_json(os.path.join(a, "manifest.json"))["version"]
        vb = load_json(os.path.join(b, "manifest.json"))["version"]
        self.assertEqual(va, vb)
        r3, c = self.build("--no-eval", "--model", "als", "--factors", "8")
        self.assertEqual(r3.returncode, 0, r3.stderr)
        self.assertTrue(load_json(os.path.join(c, "manifest.json"))["version"].startswith("als-"))

    def test_als_not_ahead_of_popularity_becomes_it(self):
        # Tuning's guard (issue 14 point 3): on data where what a user
        # bought says nothing about what it buys next (every choice drawn
        # from one skewed popularity), ALS cannot beat popularity
        # significantly on validation, so the prior goes to its strongest;
        # on data with taste groups it does, and the pick stands.
        def guard(name, pick):
            catalog = "item_id,category,price\n" + "".join("P%03d,cat%d,%d\n" % (i, i % 4, 5 + i) for i in range(120))
            rows, t, s = [], 1600000000, 99
            for u in range(300):
                for k in range(12):
                    s = (s * 1103515245 + 12345) % 2 ** 31
                    t += 600
                    rows.append("C%03d,P%03d,%d,1,9" % (u, pick(u, s), t))
            inter, cat = fixture(name, "user_id,item_id,timestamp,quantity,price\n" + "\n".join(rows) + "\n", catalog)
            r, out = self.build("--no-eval", "--model", "als", "--factors", "8", "--iterations", "4", inter=inter,
                                cat=cat)
            self.assertEqual(r.returncode, 0, r.stderr)
            tuning = load_json(os.path.join(out, "manifest.json"))["training"]["tuning"]
            g = [x for x in tuning["trials"] if "guard" in x]
            self.assertEqual(len(g), 1, tuning)
            return g[0], tuning["chosen"]["als_popularity"]
        g, prior = guard("noprefs", lambda u, s: int(120 * ((s >> 8) % 10000 / 10000.0) ** 3))
        self.assertIn("not significantly ahead", g["guard"])
        self.assertLess(g["ndcg@50_over_popularity"], 1.96 * g["standard_error"] + 1e-5)
        self.assertEqual(prior, 1000)
        g, prior = guard("tastes", lambda u, s: (u % 6) + 6 * ((s >> 8) % 20))
        self.assertIn("the pick stands", g["guard"])
        self.assertGreater(g["ndcg@50_over_popularity"], 1.96 * g["standard_error"])
        self.assertLess(prior, 1000)

    def test_ease_model_ann_searches_ease_scores(self):
        # `--model ease`: the ANN's vectors factorise EASE's weights. With
        # 60 items the rank (60) is full, so the ANN's score of every item
        # is EASE's own over the same history (unweighted here) up to one
        # scale: the ratio of the two raw scores is one number per slate.
        catalog = "item_id,category,price\n" + "".join("P%02d,cat%d,%d\n" % (i, i % 4, 5 + i) for i in range(60))
        rows, t, s = [], 1600000000, 12345
        for u in range(200):
            for k in range(10):
                s = (s * 1103515245 + 12345) % 2 ** 31
                item = (u % 4 + 4 * (s >> 8)) % 60 if s % 3 else (s >> 8) % 60  # two-thirds in the taste group
                t += 600
                rows.append("C%03d,P%02d,%d,1,9" % (u, item, t))
        inter, cat = fixture("easemodel", "user_id,item_id,timestamp,quantity,price\n" + "\n".join(rows) + "\n",
                             catalog)
        r, out = self.build("--no-eval", "--no-tune", "--model", "ease", "--ease-recency-boost", "0", inter=inter,
                            cat=cat)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = load_json(os.path.join(out, "manifest.json"))
        self.assertTrue(m["version"].startswith("ease-"), m["version"])
        self.assertEqual((m["training"]["model"], m["training"]["dim"], m["dim"]), ("ease", 60, 61))
        self.assertIn("ease", m)
        d = Recd(out)
        try:
            for user in ("C004", "C011", "C123"):
                r = recctl("recommend", "--addr", d.addr, "--user", user, "-k", "8", "--explain", "--json")
                self.assertEqual(r.returncode, 0, r.stderr)
                j = json.loads(r.stdout)
                self.assertEqual(j["strategy"], "personalized")
                ratios = []
                for i in j["items"]:
                    raw = {s["source"]: s["raw"] for s in i["sources"]}
                    if "ann" in raw and "ease" in raw and abs(raw["ease"]) > 1e-3:
                        ratios.append(raw["ann"] / raw["ease"])
                self.assertGreaterEqual(len(ratios), 3, (user, j["items"]))
                for x in ratios:
                    self.assertAlmostEqual(x / ratios[0], 1.0, delta=1e-3, msg=(user, ratios))
        finally:
            self.assertEqual(d.close(), 0)

    def expect_refused(self, inter, cat, want):
        out = os.path.join(TMP, "refused")
        r = recctl("build", "--interactions", inter, "--catalog", cat, "--out", out, "--quiet")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(want, r.stderr)
        self.assertFalse(os.path.exists(out))
        self.assertEqual(glob.glob(out + ".tmp-*"), [])

    def test_bad_inputs_name_file_and_line(self):
        head = "user_id,item_id,timestamp,quantity,price,event_type,rating\n"
        ok = "U1,I01,1600000000,1,5,purchase,\n"
        inter, cat = fixture("bad1", head + ok + "U1,I02,1600000000,two,5,purchase,\n")
        self.expect_refused(inter, cat, "bad1/interactions.csv:3: not a number: 'two'")
        inter, cat = fixture("bad2", head + ok + ok.replace("I01", "NOPE"))
        self.expect_refused(inter, cat, "bad2/interactions.csv:3: item 'NOPE' is not in the catalog")
        inter, cat = fixture("bad3", "user_id,timestamp,quantity\nU1,1600000000,1\n")
        self.expect_refused(inter, cat, "bad3/interactions.csv:1: missing required column 'item_id'")
        inter, cat = fixture("bad4", "")
        self.expect_refused(inter, cat, "bad4/interactions.csv: empty file")
        inter, cat = fixture("bad5", head + ok + "U1,I02,\"1600000000,1,5,purchase,\n")
        self.expect_refused(inter, cat, "bad5/interactions.csv:3")
        inter, cat = fixture("bad6", head + ok + "U1,I02,yesterday,1,5,purchase,\n")
        self.expect_refused(inter, cat, "bad6/interactions.csv:3: time is not")
        inter, cat = fixture("bad7", catalog="item_id,category\nI01,a\nI01,b\n")
        self.expect_refused(inter, cat, "bad7/catalog.csv:3: duplicate item id 'I01'")
        r = recctl("build", "--interactions", inter, "--catalog", cat)
        self.assertEqual(r.returncode, 1)
        self.assertIn("--out", r.stderr)
        r = recctl("build", "--epochs", "zero")
        self.assertEqual(r.returncode, 2)
        # A model recctl does not embed with is refused before any work,
        # and so is an EASE model without EASE.
        r = recctl("build", "--interactions", inter, "--catalog", cat, "--out", os.path.join(TMP, "m"), "--model",
                   "word2vec")
        self.assertEqual(r.returncode, 2)
        self.assertIn("twotower, als or ease, got 'word2vec'", r.stderr)
        r = recctl("build", "--interactions", inter, "--catalog", cat, "--out", os.path.join(TMP, "m"), "--model",
                   "ease", "--ease-lambda", "0")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--ease-lambda must be above 0", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(TMP, "m")))

    def test_schema_maps_other_column_names(self):
        inter, cat = fixture("shop")
        text = read(inter).replace("user_id,item_id,timestamp", "Customer ID,Product,Order Date", 1)
        other = write(os.path.join(TMP, "shop", "renamed.csv"), text)
        schema = write(os.path.join(TMP, "shop.schema"),
                       "# Superstore-like names\nuser = Customer ID\nitem = Product\ntime = Order Date\n")
        r, out = self.build("--schema", schema, "--no-eval", inter=other, cat=cat)
        self.assertEqual(r.returncode, 0, r.stderr)
        r, out = self.build("--col", "user=Customer ID", "--col", "item=Product", "--col",
                            "time=Order Date", "--no-eval", inter=other, cat=cat)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_eval_writes_table_json_chart(self):
        inter, cat = fixture("shop")
        js, svg = os.path.join(TMP, "e.json"), os.path.join(TMP, "e.svg")
        r = recctl("eval", "--interactions", inter, "--catalog", cat, "--epochs", "3", "--quiet",
                   "--bootstrap", "100", "--json", js, "--chart", svg)
        self.assertEqual(r.returncode, 0, r.stderr)
        for model in ("popularity", "item-cf", "als", "two-tower", "hybrid"):
            self.assertIn(model, r.stdout)
        j = load_json(js)
        ci = j["splits"]["user"]["models"]["two-tower"]["all"]["ndcg@50"]
        self.assertLessEqual(ci["lo"], ci["mean"])
        self.assertLessEqual(ci["mean"], ci["hi"])
        self.assertTrue(read(svg).startswith("<?xml"))

    def test_import_numpy_model(self):
        import numpy as np
        inter, cat = fixture("shop")
        rng = np.random.default_rng(3)
        d = os.path.join(TMP, "imp")
        os.makedirs(d, exist_ok=True)
        np.save(os.path.join(d, "items.npy"), rng.normal(size=(45, 8)).astype("<f4"))
        np.save(os.path.join(d, "feat.npy"), rng.normal(size=(3, 5)).astype("<f4"))
        write(os.path.join(d, "users.txt"), "alice\nbob\ncarol\n")
        np.save(os.path.join(d, "w0.npy"), rng.normal(size=(5, 8)).astype("<f4"))
        np.save(os.path.join(d, "b0.npy"), np.zeros(8, "<f4"))
        out = os.path.join(TMP, "imported")
        args = ["import", "--catalog", cat, "--interactions", inter, "--item-embeddings",
                os.path.join(d, "items.npy"), "--users", os.path.join(d, "users.txt"),
                "--user-features", os.path.join(d, "feat.npy"), "--quiet"]
        r = recctl(*args, "--layer", os.path.join(d, "w0.npy") + ":" + os.path.join(d, "b0.npy") + ":linear",
                   "--out", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        srv = Recd(out)
        try:
            self.assertEqual(srv.recommend("bob", k=4)["strategy"], "personalized")
        finally:
            self.assertEqual(srv.close(), 0)
        # (out, in) weights, as PyTorch stores them, are refused with a hint.
        np.save(os.path.join(d, "wT.npy"), rng.normal(size=(8, 5)).astype("<f4"))
        r = recctl(*args, "--layer", os.path.join(d, "wT.npy") + ":" + os.path.join(d, "b0.npy") + ":linear",
                   "--out", out + "2")
        self.assertEqual(r.returncode, 1)
        self.assertIn(".T", r.stderr)
        self.assertFalse(os.path.exists(out + "2"))


class DeterminismTest(unittest.TestCase):
    """Same inputs and seed, same bundle, every file byte for byte, whatever the
    thread count; and the README's synthetic bundle is one recd accepts."""

    def assertSameFiles(self, a, b):
        self.assertEqual(sorted(os.listdir(a)), sorted(os.listdir(b)))
        for name in sorted(os.listdir(a)):
            with open(os.path.join(a, name), "rb") as fa, open(os.path.join(b, name), "rb") as fb:
                self.assertTrue(fa.read() == fb.read(), "%s differs between %s and %s" % (name, a, b))

    def test_build_same_bytes_any_threads(self):
        # 1,500 items: FAISS inserts an add of more than 100 vectors from every
        # OpenMP thread, which is what made HNSW indexes differ run to run.
        catalog = "item_id,category,price\n" + "".join(
            "P%04d,cat%d,%d.25\n" % (i, i % 5, 3 + i % 40) for i in range(1500))
        rows, t = [], 1600000000
        for u in range(300):
            for k in range(12):
                t += 600
                rows.append("C%03d,P%04d,%d,1,4.25" % (u, (u % 5) + 5 * ((u * 37 + k * 101) % 300), t))
        inter, cat = fixture("det", "user_id,item_id,timestamp,quantity,price\n" + "\n".join(rows) + "\n",
                             catalog)
        for model in ("twotower", "als", "ease"):
            outs = []
            for threads in ("2", "2", "1"):
                out = os.path.join(TMP, "det-%s-%d" % (model, len(outs)))
                r = recctl("build", "--interactions", inter, "--catalog", cat, "--out", out, "--model",
                           model, "--epochs", "2", "--iterations", "3", "--index", "HNSW32",
                           "--threads", threads, "--quiet")
                self.assertEqual(r.returncode, 0, r.stderr)
                outs.append(out)
            self.assertIn("metrics", load_json(os.path.join(outs[0], "manifest.json")))
            self.assertSameFiles(outs[0], outs[1])
            self.assertSameFiles(outs[0], outs[2])

    def test_synth_same_bytes(self):
        outs = [os.path.join(TMP, "synth-det-%d" % n) for n in range(2)]
        for out in outs:
            r = recctl("synth", "--out", out, "--items", "3000", "--users", "300", "--seed", "7")
            self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(load_json(os.path.join(outs[0], "manifest.json"))["index"]["type"], "HNSW32")
        self.assertSameFiles(*outs)

    def test_readme_synth_bundle_is_served(self):
        out = os.path.join(TMP, "synth-readme")
        r = recctl("synth", "--out", out, "--items", "20000", "--users", "2000")
        self.assertEqual(r.returncode, 0, r.stderr)
        srv = Recd(out)  # recd exits 1 if the index fails its recall check
        try:
            m = re.search(r"smoke_recall=([0-9.]+)", read(srv.log))
            self.assertGreaterEqual(float(m.group(1)), 0.9)
            self.assertEqual(srv.recommend("U00042", k=10)["strategy"], "personalized")
        finally:
            self.assertEqual(srv.close(), 0)


class SuperstoreTest(unittest.TestCase):
    """The real data the README's main command uses."""

    @classmethod
    def setUpClass(cls):
        cache = os.path.join(REPO, ".cache", "data")
        r = subprocess.run([os.path.join(REPO, "tools/data/fetch.sh"), cache, "superstore"],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        cls.data = os.path.join(cache, "superstore")

    def test_real_customer_gets_real_products(self):
        out = os.path.join(TMP, "superstore")
        r = recctl("build", "--interactions", os.path.join(self.data, "interactions.csv"), "--catalog",
                   os.path.join(self.data, "catalog.csv"), "--out", out, "--quiet")
        self.assertEqual(r.returncode, 0, r.stderr)
        catalog = {l.split(",")[0] for l in read(os.path.join(self.data, "catalog.csv")).splitlines()}
        bought = read(os.path.join(out, "profiles.tsv")).split("CG-12520\t", 1)[1].split("\n")[0]
        recent = bought.split("\t")[2].split(" ")
        srv = Recd(out)
        try:
            j = srv.recommend("CG-12520", k=10)
            self.assertEqual(j["strategy"], "personalized")
            self.assertEqual(len(j["items"]), 10)
            self.assertTrue(all(i["item_id"] in catalog for i in j["items"]))
            # The customer's own purchases (which nobody buys twice) are not offered again.
            self.assertFalse(set(recent) & {i["item_id"] for i in j["items"]})
            r = recctl("recommend", "--addr", srv.addr, "--user", "CG-12520", "-k", "10", "--explain",
                       "--json", "--why", recent[0])
            j = json.loads(r.stdout)
            ex = j["items"][0]["explanation"]
            factor = 1.0
            for a in ex["adjustments"]:
                factor *= a["factor"]
            self.assertAlmostEqual(ex["blended"] * factor, ex["final"], places=4)
            self.assertEqual(j["verdicts"][0]["stage"], "rule")
            self.assertIn("already bought", j["verdicts"][0]["reason"])
            # Prices above the customer's mean are adjusted: upsell or penalty.
            rules = {a["rule"] for i in j["items"] for a in i["explanation"]["adjustments"]}
            self.assertTrue(rules & {"upsell", "price_penalty"}, rules)
            # The bundle's sources are each their own: the two-tower ANN and
            # EASE side by side (issue 14), every score shown with its
            # normalised value, and the blend is the sum of those the
            # defaults weigh (EASE 1, ANN 0.2, item-CF 0.2, popularity 0.1).
            manifest = load_json(os.path.join(out, "manifest.json"))
            self.assertIn("ease", manifest)
            seen = {s["source"] for i in j["items"] for s in i["sources"]}
            self.assertTrue({"ann", "ease"} <= seen, seen)
            weight = {"ann": 0.2, "item_cf": 0.2, "popularity": 0.1, "ease": 1.0}
            if seen == set(weight):  # every source proposed something: the weights sum to 1.5
                for i in j["items"]:
                    want = sum(weight[s["source"]] * s["normalized"] for s in i["sources"]) / 1.5
                    self.assertAlmostEqual(i["explanation"]["blended"], want, places=4)
        finally:
            self.assertEqual(srv.close(), 0)


class QualityTest(unittest.TestCase):
    """The quality bar on MovieLens latest-small, per-user holdout (issues 3 and 14)."""

    def evaluate(self, dataset, *extra):
        """`recctl eval` on a fetched dataset: its --json report."""
        if not ARGS.quality:
            self.skipTest("run with --quality")
        cache = os.path.join(REPO, ".cache", "data")
        r = subprocess.run([os.path.join(REPO, "tools/data/fetch.sh"), cache, dataset],
                           capture_output=True, text=True, timeout=900)
        self.assertEqual(r.returncode, 0, r.stderr)
        data = os.path.join(cache, dataset)
        js = os.path.join(TMP, dataset + ".json")
        r = recctl("eval", "--interactions", os.path.join(data, "interactions.csv"), "--catalog",
                   os.path.join(data, "catalog.csv"), "--quiet", "--json", js, *extra, timeout=900)
        self.assertEqual(r.returncode, 0, r.stderr)
        print(r.stdout)
        return load_json(js)

    def test_movielens_bar(self):
        models = self.evaluate("movielens", "--split", "user")["splits"]["user"]["models"]
        get = lambda m, k: models[m]["all"][k]["mean"]
        for m in ("two-tower", "hybrid"):
            for k in ("recall@50", "ndcg@50"):
                self.assertGreaterEqual(get(m, k), 1.5 * get("popularity", k), (m, k))
        for k in ("recall@50", "ndcg@50"):
            # The two-tower model, tuned, stays near ALS (ALS gained its
            # popularity prior and a wider grid: 0.187 against 0.177).
            self.assertGreaterEqual(get("two-tower", k), 0.9 * get("als", k), k)
            # Tuned on validation, ALS is never below popularity.
            self.assertGreaterEqual(get("als", k), get("popularity", k), k)
        # EASE is the strongest model here, and what recd serves (rules, MMR,
        # category cap included) keeps within 3% of the best model's NDCG@50.
        best = max(get(m, "ndcg@50") for m in ("item-cf", "als", "two-tower", "ease", "hybrid"))
        self.assertEqual(best, get("ease", "ndcg@50"))
        self.assertGreaterEqual(get("served", "ndcg@50"), 0.97 * best)

    def test_superstore_als_not_below_popularity(self):
        # Point 3 on the sparse basket data, both splits: tuned ALS scored
        # below popularity there until the guard (docs/offline.md, Tuning).
        for split, sp in self.evaluate("superstore", "--no-served")["splits"].items():
            for k in ("recall@50", "ndcg@50"):
                als, pop = (sp["models"][m]["all"][k]["mean"] for m in ("als", "popularity"))
                self.assertGreaterEqual(als, pop, (split, k))


def main():
    global ARGS, TMP
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True)
    p.add_argument("--quality", action="store_true")
    ARGS, rest = p.parse_known_args()
    ARGS.build = os.path.abspath(ARGS.build)
    TMP = tempfile.mkdtemp(prefix="recd_offline.")
    try:
        prog = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
        return 0 if prog.result.wasSuccessful() else 1
    finally:
        shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
