#!/usr/bin/python3
"""End-to-end tests: a real recd process on 127.0.0.1 (port 0, so the kernel
picks a free one), called with grpcio stubs generated from proto/ at test time
-- a client nobody on this project wrote -- and with recctl.

Usage: /usr/bin/python3 tests/e2e/test_recd.py --build BUILD_DIR --proto PROTO_DIR
"""
import argparse
import glob
import importlib.util
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
pb = {}  # module name -> generated module


def generate_stubs(proto_dir, out):
    protos = ["rec/v1/common.proto", "rec/v1/ranking.proto", "rec/v1/retrieval.proto",
              "rec/v1/events.proto", "rec/v1/admin.proto", "rec/v1/catalog.proto", "grpc/health/v1/health.proto"]
    os.makedirs(out)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", proto_dir,
                    "--python_out", out, "--grpc_python_out", out] + protos, check=True)
    sys.path.insert(0, out)
    from rec.v1 import admin_pb2, common_pb2, ranking_pb2, ranking_pb2_grpc, admin_pb2_grpc  # noqa
    from rec.v1 import events_pb2, events_pb2_grpc, catalog_pb2, catalog_pb2_grpc  # noqa
    pb.update(ranking=ranking_pb2, ranking_grpc=ranking_pb2_grpc, common=common_pb2,
              admin=admin_pb2, admin_grpc=admin_pb2_grpc, events=events_pb2, events_grpc=events_pb2_grpc,
              catalog=catalog_pb2, catalog_grpc=catalog_pb2_grpc)
    # grpc/health/v1/health_pb2 would shadow grpcio's own 'grpc' package: load it by path.
    spec = importlib.util.spec_from_file_location(
        "health_pb2", os.path.join(out, "grpc/health/v1/health_pb2.py"))
    health = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(health)
    pb["health"] = health


ADMIN_TOKEN = "e2e-admin-token-6f1d0c9a7b"


def admin_token_file():
    """The admin token file every Recd starts with (mode 0600, as recd demands)."""
    path = os.path.join(TMP, "admin.token")
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("# e2e\ne2e %s\n" % ADMIN_TOKEN)
    return path


def with_token(channel, token):
    """'channel' with "authorization: Bearer token" on every call."""
    import grpc

    class Auth(grpc.UnaryUnaryClientInterceptor):
        def intercept_unary_unary(self, continuation, details, request):
            md = list(details.metadata or []) + [("authorization", "Bearer " + token)]
            return continuation(details._replace(metadata=md), request)  # grpcio's details are a namedtuple
    return grpc.intercept_channel(channel, Auth())


class Recd:
    """A recd process on free loopback ports; stopped (and waited for) on close.
    'channel' is the serving port; 'admin_channel' the admin listener, with
    the e2e admin token on every call. Bundles anywhere under TMP reload."""

    def __init__(self, bundle, *extra, env=None):
        # Append mode: recd shares this file's offset, which _wait_for moves
        # back to 0 to read; O_APPEND makes every write land at the end anyway.
        self.log = open(os.path.join(TMP, "recd-%d.log" % time.monotonic_ns()), "a+")
        self.proc = subprocess.Popen(
            [os.path.join(ARGS.build, "server/recd"), "--bundle=" + bundle,
             "--listen=127.0.0.1:0", "--admin_listen=127.0.0.1:0", "--admin_grpc_listen=127.0.0.1:0",
             "--admin_token_file=" + admin_token_file(), "--bundle_root=" + TMP, "--threads=2",
             "--max_message_bytes=65536"] + list(extra),
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.port = self._wait_for(r'msg="serving" port=(\d+)')
        self.admin_port = self._wait_for(r'admin_port=(\d+)')
        self.admin_grpc_port = self._wait_for(r'admin_grpc_port=(\d+)')
        self.addr = "127.0.0.1:%d" % self.port
        self.admin_addr = "127.0.0.1:%d" % self.admin_grpc_port
        import grpc
        self.channel = grpc.insecure_channel(self.addr)
        self.ranking = pb["ranking_grpc"].RankingStub(self.channel)
        self._admin_raw = grpc.insecure_channel(self.admin_addr)
        self.admin_channel = with_token(self._admin_raw, ADMIN_TOKEN)

    def _wait_for(self, pattern, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.log.seek(0)
            m = re.search(pattern, self.log.read())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.close()
        raise AssertionError("recd did not log %r:\n%s" % (pattern, self.output()))

    def output(self):
        with open(self.log.name) as f:
            return f.read()

    def close(self):
        if getattr(self, "channel", None):
            self.channel.close()
        if getattr(self, "_admin_raw", None):
            self._admin_raw.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def close_clean(self):
        """close(), then fails unless recd exited 0 without a sanitizer report."""
        rc = self.close()
        if rc != 0 or "Sanitizer" in self.output():
            raise AssertionError("recd exited %s:\n%s" % (rc, self.output()[-4000:]))


def recctl(*args, check=False):
    r = subprocess.run([os.path.join(ARGS.build, "tools/recctl")] + list(args),
                       capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError("recctl %s failed (%d): %s" % (args, r.returncode, r.stderr))
    return r


def manifest_version(bundle):
    with open(os.path.join(bundle, "manifest.json")) as f:
        return json.load(f)["version"]


def read_items(bundle):
    rows = {}
    with open(os.path.join(bundle, "items.tsv")) as f:
        next(f)
        for line in f:
            item, cat, price, stock, pop = line.rstrip("\n").split("\t")
            rows[item] = dict(category=cat, price=float(price), in_stock=stock == "1",
                              popularity=float(pop))
    return rows


class RecommendTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bundle = os.path.join(TMP, "bundle")
        if not os.path.exists(cls.bundle):
            recctl("synth", "--out", cls.bundle, "--items", "3000", "--users", "300",
                   "--dim", "32", "--categories", "6", "--seed", "5", check=True)
        cls.items = read_items(cls.bundle)
        cls.version = manifest_version(cls.bundle)
        cls.recd = Recd(cls.bundle)

    @classmethod
    def tearDownClass(cls):
        assert cls.recd.close() == 0, cls.recd.output()

    def recommend(self, **kw):
        return self.recd.ranking.Recommend(pb["ranking"].RecommendRequest(**kw), timeout=10)

    def assert_status(self, code, fn, *args, **kw):
        import grpc
        with self.assertRaises(grpc.RpcError) as cm:
            fn(*args, **kw)
        self.assertEqual(cm.exception.code(), code, cm.exception.details())
        return cm.exception.details()

    def test_known_user_gets_ranked_items_of_their_taste(self):
        r = self.recommend(user_id="U00004", k=20, request_id="req-1")
        self.assertEqual(len(r.items), 20)
        self.assertEqual(r.bundle_version, self.version)
        self.assertEqual(r.request_id, "req-1")
        self.assertEqual(r.strategy, pb["ranking"].STRATEGY_PERSONALIZED)
        scores = [i.score for i in r.items]
        # MMR picks the most relevant item first, then trades relevance for variety.
        self.assertEqual(scores[0], max(scores))
        self.assertEqual(len({i.item_id for i in r.items}), 20)
        for it in r.items:
            row = self.items[it.item_id]
            self.assertTrue(row["in_stock"], it.item_id)
            self.assertEqual(it.category, row["category"])
            self.assertAlmostEqual(it.price, row["price"], places=4)
            self.assertTrue({s.source for s in it.sources} <= {pb["common"].SOURCE_ANN,
                                                               pb["common"].SOURCE_POPULARITY})
        self.assertIn(pb["common"].SOURCE_ANN, [s.source for s in r.items[0].sources])
        # synth draws each user to one category; its items fill the category cap
        # (diversity.category_share 0.5 of 20).
        cats = [i.category for i in r.items]
        top = max(set(cats), key=cats.count)
        self.assertEqual(cats.count(top), 10)
        self.assertEqual(cats[0], top)

    def test_exclusions_and_filters_hold(self):
        first = self.recommend(user_id="U00007", k=10)
        excluded = [i.item_id for i in first.items[:5]]
        r = self.recommend(user_id="U00007", k=10, exclude_item_ids=excluded + ["not-an-item"])
        self.assertEqual(len(r.items), 10)
        self.assertFalse(set(excluded) & {i.item_id for i in r.items})
        cat = first.items[0].category
        other = sorted({v["category"] for v in self.items.values()} - {cat})[0]
        f = pb["common"].Filters(include_categories=[other],
                                 price=pb["common"].PriceRange(min_price=5, max_price=50))
        r = self.recommend(user_id="U00007", k=25, filters=f)
        self.assertEqual(len(r.items), 25)
        for it in r.items:
            self.assertEqual(it.category, other)
            self.assertTrue(5 <= it.price <= 50)

    def test_unknown_user_gets_flagged_popularity(self):
        r = self.recommend(user_id="someone-new", k=5)
        self.assertEqual(r.strategy, pb["ranking"].STRATEGY_POPULARITY_FALLBACK)
        # unknown_user alone: ANN and item-CF had nothing to go on (no tower
        # vector, no anchors or recent items), which is not a missing source.
        self.assertEqual(list(r.degraded_reasons), ["unknown_user"])
        anchored = self.recommend(user_id="someone-new", k=5, anchor_item_ids=[r.items[0].item_id])
        self.assertEqual(anchored.strategy, pb["ranking"].STRATEGY_POPULARITY_FALLBACK)
        self.assertNotIn("source_missing:ann", anchored.degraded_reasons)
        ranked = sorted((k for k, v in self.items.items() if v["in_stock"]),
                        key=lambda k: (-self.items[k]["popularity"], k))
        # The most popular in-stock item leads; diversity picks the rest from
        # the popular head.
        self.assertEqual(r.items[0].item_id, ranked[0])
        self.assertTrue(all(i.item_id in ranked[:100] for i in r.items))
        self.assertEqual([s.source for s in r.items[0].sources], [pb["common"].SOURCE_POPULARITY])

    def test_pages_follow_on(self):
        p1 = self.recommend(user_id="U00010", k=10)
        self.assertTrue(p1.next_cursor)
        p2 = self.recommend(user_id="U00010", k=10, page_cursor=p1.next_cursor)
        p3 = self.recommend(user_id="U00010", k=10, page_cursor=p2.next_cursor)
        ids = [i.item_id for p in (p1, p2, p3) for i in p.items]
        self.assertEqual(len(ids), 30)
        self.assertEqual(len(set(ids)), 30)  # no page repeats another
        again = self.recommend(user_id="U00010", k=10)
        self.assertEqual([i.item_id for i in again.items], ids[:10])
        import grpc
        details = self.assert_status(grpc.StatusCode.INVALID_ARGUMENT, self.recommend,
                                     user_id="U00010", k=10, page_cursor="10@other-bundle")
        self.assertIn("first page", details)

    def test_explain(self):
        out_of_stock = next(k for k, v in self.items.items() if not v["in_stock"])
        r = self.recommend(user_id="U00011", k=3, explain=True,
                           explain_item_ids=[out_of_stock, "ghost"])
        self.assertTrue(all(i.HasField("explanation") for i in r.items))
        self.assertEqual(r.items[0].explanation.final_score, r.items[0].score)
        self.assertGreater(r.timings.total_us, 0)
        verdicts = {v.item_id: (v.stage, v.reason) for v in r.verdicts}
        self.assertEqual(verdicts[out_of_stock], ("rule", "out of stock"))
        self.assertEqual(verdicts["ghost"][0], "unknown_item")

    def test_bad_input_gets_invalid_argument_and_server_keeps_serving(self):
        import grpc
        bad = grpc.StatusCode.INVALID_ARGUMENT
        cases = [
            (dict(user_id="U00001", k=0), "k must be between 1 and 200, got 0"),
            (dict(user_id="U00001", k=-3), "got -3"),
            (dict(user_id="U00001", k=201), "got 201"),
            (dict(k=10), "user_id is required"),
            (dict(user_id="x" * 129, k=10), "at most 128"),
            (dict(user_id="U00001", k=10, exclude_item_ids=["P%06d" % i for i in range(1001)]),
             "exclude_item_ids has 1001 ids; at most 1000 allowed"),
            (dict(user_id="U00001", k=10,
                  filters=pb["common"].Filters(include_categories=["no-such-category"])),
             "unknown category 'no-such-category'"),
            (dict(user_id="U00001", k=10, filters=pb["common"].Filters(
                price=pb["common"].PriceRange(min_price=10, max_price=5))), "filters.price"),
            (dict(user_id="U00001", k=10, page_cursor="garbage"), "page_cursor is malformed"),
        ]
        for kw, msg in cases:
            with self.subTest(kw=str(kw)[:80]):
                self.assertIn(msg, self.assert_status(bad, self.recommend, **kw))
        # Garbage bytes where a protobuf should be.
        raw = self.recd.channel.unary_unary("/rec.v1.Ranking/Recommend")
        details = self.assert_status(bad, raw, b"\xff\xff\xff\xff\x0f", timeout=5)
        self.assertIn("not a valid rec.v1.RecommendRequest", details)
        # Over the size limit (65536 here): the transport refuses it.
        huge = dict(user_id="U00001", k=10, exclude_item_ids=["x" * 100] * 900)
        self.assert_status(grpc.StatusCode.RESOURCE_EXHAUSTED, self.recommend, **huge)
        self.assertEqual(len(self.recommend(user_id="U00001", k=3).items), 3)

    def test_similar_items(self):
        import grpc
        seed = next(k for k, v in self.items.items() if v["in_stock"])
        r = self.recd.ranking.SimilarItems(pb["ranking"].SimilarItemsRequest(item_ids=[seed], k=8),
                                           timeout=10)
        self.assertEqual(len(r.items), 8)
        self.assertEqual(r.bundle_version, self.version)
        ids = [i.item_id for i in r.items]
        self.assertNotIn(seed, ids)
        self.assertTrue(all(self.items[i]["in_stock"] for i in ids))
        # Embedding neighbours of a synthetic item share its category.
        self.assertEqual(r.items[0].category, self.items[seed]["category"])
        details = self.assert_status(grpc.StatusCode.INVALID_ARGUMENT, self.recd.ranking.SimilarItems,
                                     pb["ranking"].SimilarItemsRequest(item_ids=["nope"], k=3), timeout=5)
        self.assertIn("unknown item 'nope'", details)
        self.assert_status(grpc.StatusCode.INVALID_ARGUMENT, self.recd.ranking.SimilarItems,
                           pb["ranking"].SimilarItemsRequest(k=3), timeout=5)

    def test_unknown_methods_are_unimplemented(self):
        import grpc
        raw = self.recd.channel.unary_unary("/rec.v1.Nope/Nothing")
        details = self.assert_status(grpc.StatusCode.UNIMPLEMENTED, raw, b"", timeout=5)
        self.assertIn("/rec.v1.Nope/Nothing", details)
        # Every rec.v1 method is built: an empty Retrieve is a bad request, not a missing method.
        raw = self.recd.channel.unary_unary("/rec.v1.Retrieval/Retrieve")
        self.assertIn("user_id", self.assert_status(grpc.StatusCode.INVALID_ARGUMENT, raw, b"", timeout=5))

    def test_health_check_and_watch(self):
        import grpc
        h = pb["health"]
        check = self.recd.channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=h.HealthCheckRequest.SerializeToString,
            response_deserializer=h.HealthCheckResponse.FromString)
        self.assertEqual(check(h.HealthCheckRequest(), timeout=5).status,
                         h.HealthCheckResponse.SERVING)
        self.assertEqual(check(h.HealthCheckRequest(service="rec.v1.Ranking"), timeout=5).status,
                         h.HealthCheckResponse.SERVING)
        self.assert_status(grpc.StatusCode.NOT_FOUND, check,
                           h.HealthCheckRequest(service="rec.v1.Nope"), timeout=5)
        watch = self.recd.channel.unary_stream(
            "/grpc.health.v1.Health/Watch",
            request_serializer=h.HealthCheckRequest.SerializeToString,
            response_deserializer=h.HealthCheckResponse.FromString)
        stream = watch(h.HealthCheckRequest(), timeout=10)
        self.assertEqual(next(stream).status, h.HealthCheckResponse.SERVING)
        stream.cancel()
        unknown = watch(h.HealthCheckRequest(service="rec.v1.Nope"), timeout=10)
        self.assertEqual(next(unknown).status, h.HealthCheckResponse.SERVICE_UNKNOWN)
        unknown.cancel()

    def test_recctl_table_json_status(self):
        r = recctl("recommend", "--addr", self.recd.addr, "--user", "U00002", "-k", "4", check=True)
        lines = r.stdout.splitlines()
        self.assertIn("bundle " + self.version, lines[0])
        self.assertEqual(len([l for l in lines if re.match(r"\s+\d+\s+P\d{6}\s", l)]), 4)
        j = json.loads(recctl("recommend", "--addr", self.recd.addr, "--user", "U00002",
                              "-k", "4", "--json", check=True).stdout)
        self.assertEqual(len(j["items"]), 4)
        self.assertEqual(j["strategy"], "personalized")
        self.assertIn("ann", [s["source"] for s in j["items"][0]["sources"]])
        self.assertEqual(recctl("health", "--addr", self.recd.addr).stdout.strip(), "SERVING")
        st = recctl("status", "--addr", self.recd.admin_addr, "--token-file", admin_token_file(), check=True).stdout
        self.assertIn("items 3000", st)
        r = recctl("recommend", "--addr", self.recd.addr, "--user", "U00002", "-k", "0")
        self.assertEqual(r.returncode, 1)
        self.assertIn("INVALID_ARGUMENT: k must be between 1 and 200, got 0", r.stderr)


class ReloadTest(unittest.TestCase):
    """Bundles swap under traffic; a broken one is refused and the old one serves."""

    def test_reload_under_traffic_and_refusal(self):
        import grpc
        import threading
        a, b = os.path.join(TMP, "rel_a"), os.path.join(TMP, "rel_b")
        for path, seed in ((a, "1"), (b, "2")):
            if not os.path.exists(path):
                recctl("synth", "--out", path, "--items", "500", "--users", "50", "--seed", seed, check=True)
        versions = {manifest_version(p) for p in (a, b)}
        link = os.path.join(TMP, "current")
        os.symlink(a, link)
        d = Recd(link)
        failures, seen, stop = [], set(), threading.Event()

        def traffic():
            while not stop.is_set():
                try:
                    r = d.ranking.Recommend(pb["ranking"].RecommendRequest(user_id="U00001", k=5), timeout=10)
                    seen.add(r.bundle_version)
                except grpc.RpcError as e:
                    failures.append(e.code())

        t = threading.Thread(target=traffic)
        t.start()
        try:
            admin = pb["admin_grpc"].AdminStub(d.admin_channel)
            for i in range(100):
                r = admin.Reload(pb["admin"].ReloadRequest(bundle_path=b if i % 2 == 0 else a), timeout=30)
                self.assertIn(r.version, versions)
            broken = os.path.join(TMP, "rel_broken")
            shutil.rmtree(broken, ignore_errors=True)
            shutil.copytree(a, broken)
            with open(os.path.join(broken, "items.tsv"), "a") as f:
                f.write("x\tc\t1\t1\t1\n")
            with self.assertRaises(grpc.RpcError) as cm:
                admin.Reload(pb["admin"].ReloadRequest(bundle_path=broken), timeout=30)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
            self.assertIn("items.tsv", cm.exception.details())
            with self.assertRaises(grpc.RpcError) as cm:
                admin.Reload(pb["admin"].ReloadRequest(bundle_path="/no/such/bundle"), timeout=30)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
            self.assertIn("not under the bundle root", cm.exception.details())
            with self.assertRaises(grpc.RpcError) as cm:
                admin.Reload(pb["admin"].ReloadRequest(bundle_path="no_such_bundle"), timeout=30)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
            # SIGHUP reloads the configured path: repoint the link first.
            os.remove(link)
            os.symlink(b, link)
            d.proc.send_signal(signal.SIGHUP)
            want = manifest_version(b)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                st = admin.Status(pb["admin"].StatusRequest(), timeout=5)
                if st.bundle_version == want:
                    break
                time.sleep(0.05)
            self.assertEqual(st.bundle_version, want)
        finally:
            stop.set()
            t.join()
            self.assertEqual(d.close(), 0, d.output())
        self.assertEqual(failures, [])
        self.assertTrue(seen <= versions and seen, seen)


class AdminHttpTest(unittest.TestCase):
    """The admin port: Prometheus text checked by promtool and scraped by a real
    Prometheus server, health and readiness, status JSON."""

    @classmethod
    def setUpClass(cls):
        cls.bundle = os.path.join(TMP, "small")
        if not os.path.exists(cls.bundle):
            recctl("synth", "--out", cls.bundle, "--items", "200", "--users", "20", check=True)
        cls.recd = Recd(cls.bundle)
        for user in ("U00001", "nobody"):
            cls.recd.ranking.Recommend(pb["ranking"].RecommendRequest(user_id=user, k=5), timeout=10)

    @classmethod
    def tearDownClass(cls):
        assert cls.recd.close() == 0, cls.recd.output()

    def get(self, path):
        import urllib.error
        import urllib.request
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.recd.admin_port, path), timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def test_metrics_pass_promtool(self):
        code, text = self.get("/metrics")
        self.assertEqual(code, 200)
        self.assertRegex(text, r'recd_requests_total\{method="/rec.v1.Ranking/Recommend",status="OK"\} [1-9]')
        self.assertIn('recd_degraded_total{reason="unknown_user"} 1', text)
        self.assertIn('recd_stage_duration_seconds_bucket{stage="ann",le="+Inf"}', text)
        # The process, from /proc, under Prometheus's standard names.
        values = dict(re.findall(r"^(process_\w+) (\S+)$", text, re.M))
        self.assertEqual(sorted(values), ["process_cpu_seconds_total", "process_max_fds", "process_open_fds",
                                          "process_resident_memory_bytes", "process_start_time_seconds",
                                          "process_virtual_memory_bytes"])
        self.assertGreater(float(values["process_resident_memory_bytes"]), 1 << 20)
        self.assertGreaterEqual(float(values["process_virtual_memory_bytes"]),
                                float(values["process_resident_memory_bytes"]))
        self.assertGreater(float(values["process_open_fds"]), 3)
        self.assertGreaterEqual(float(values["process_max_fds"]), float(values["process_open_fds"]))
        self.assertLess(abs(float(values["process_start_time_seconds"]) - (time.time() - 60)), 3600)
        self.assertGreater(float(values["process_cpu_seconds_total"]), 0)
        r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_health_ready_status_and_errors(self):
        self.assertEqual(self.get("/healthz"), (200, "ok\n"))
        self.assertEqual(self.get("/readyz")[0], 200)
        code, body = self.get("/status")
        self.assertEqual(code, 200)
        st = json.loads(body)
        self.assertTrue(st["serving"])
        self.assertEqual(st["items"], 200)
        self.assertEqual(self.get("/nope")[0], 404)

    def test_prometheus_scrapes_and_queries(self):
        import socket
        import urllib.parse
        import urllib.request
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        d = os.path.join(TMP, "prom")
        os.makedirs(d, exist_ok=True)
        cfg = os.path.join(d, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: recd\n"
                    "    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % self.recd.admin_port)
        prom = subprocess.Popen(["prometheus", "--config.file=" + cfg, "--storage.tsdb.path=" + d + "/data",
                                 "--web.listen-address=127.0.0.1:%d" % port],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            q = urllib.parse.quote('recd_requests_total{method="/rec.v1.Ranking/Recommend",status="OK"}')
            deadline, result = time.monotonic() + 60, []
            while time.monotonic() < deadline and not result:
                time.sleep(1)
                try:
                    with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/query?query=%s" % (port, q),
                                                timeout=5) as r:
                        result = json.load(r)["data"]["result"]
                except OSError:
                    pass
            self.assertTrue(result, "Prometheus never returned the series")
            self.assertGreaterEqual(float(result[0]["value"][1]), 2)
        finally:
            prom.terminate()
            prom.wait(timeout=20)


def shop_bundle(name):
    """A trained bundle (recctl build) of a small shop with item-CF: 30 users
    in 3 taste groups, 45 items in 3 categories."""
    d = os.path.join(TMP, name)
    if os.path.exists(os.path.join(d, "bundle")):
        return os.path.join(d, "bundle")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "catalog.csv"), "w") as f:
        f.write("item_id,category,price\n")
        f.writelines("I%02d,cat%d,%d\n" % (i, i % 3, 5 + i) for i in range(45))
    with open(os.path.join(d, "interactions.csv"), "w") as f:
        f.write("user_id,item_id,timestamp,quantity,price\n")
        t = 1600000000
        for u in range(30):
            for k in range(8):
                item = (u % 3) + 3 * ((u * 5 + k * 7) % 15)
                t += 3600
                f.write("U%02d,I%02d,%d,1,%d\n" % (u, item, t, 5 + item))
    recctl("build", "--interactions", os.path.join(d, "interactions.csv"), "--catalog",
           os.path.join(d, "catalog.csv"), "--out", os.path.join(d, "bundle"), "--epochs", "3",
           "--quiet", "--no-eval", check=True)
    return os.path.join(d, "bundle")


class WatchTest(unittest.TestCase):
    def test_repointed_link_is_loaded(self):
        a, b = os.path.join(TMP, "rel_a"), os.path.join(TMP, "rel_b")
        for path, seed in ((a, "1"), (b, "2")):
            if not os.path.exists(path):
                recctl("synth", "--out", path, "--items", "500", "--users", "50", "--seed", seed, check=True)
        link = os.path.join(TMP, "watched")
        os.symlink(a, link)
        d = Recd(link, "--watch_bundle=true")
        try:
            admin = pb["admin_grpc"].AdminStub(d.admin_channel)
            self.assertEqual(admin.Status(pb["admin"].StatusRequest(), timeout=5).bundle_version,
                             manifest_version(a))
            os.symlink(b, link + ".tmp")
            os.rename(link + ".tmp", link)  # the atomic way to repoint a link
            want, deadline = manifest_version(b), time.monotonic() + 15
            while time.monotonic() < deadline:
                if admin.Status(pb["admin"].StatusRequest(), timeout=5).bundle_version == want:
                    break
                time.sleep(0.05)
            self.assertEqual(admin.Status(pb["admin"].StatusRequest(), timeout=5).bundle_version, want)
        finally:
            self.assertEqual(d.close(), 0, d.output())


class RankingReloadTest(unittest.TestCase):
    def test_ranking_settings_reload_with_the_bundle(self):
        import grpc
        bundle = os.path.join(TMP, "small")
        if not os.path.exists(bundle):
            recctl("synth", "--out", bundle, "--items", "200", "--users", "20", check=True)
        conf = os.path.join(TMP, "rank.conf")
        with open(conf, "w") as f:
            f.write("diversity.mmr = true\n")
        d = Recd(bundle, "--ranking_config=" + conf)
        try:
            req = pb["ranking"].RecommendRequest(user_id="U00001", k=5)
            first = d.ranking.Recommend(req, timeout=10)
            pinned = next(i for i in read_items(bundle) if i not in [x.item_id for x in first.items]
                          and read_items(bundle)[i]["in_stock"])
            with open(conf, "w") as f:
                f.write("promotions.pin = %s@1\n" % pinned)
            admin = pb["admin_grpc"].AdminStub(d.admin_channel)
            admin.Reload(pb["admin"].ReloadRequest(), timeout=30)
            r = d.ranking.Recommend(req, timeout=10)
            self.assertEqual(r.items[0].item_id, pinned)
            with open(conf, "w") as f:
                f.write("diversity.mmr_lambda = 7\n")
            with self.assertRaises(grpc.RpcError) as cm:
                admin.Reload(pb["admin"].ReloadRequest(), timeout=30)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn("diversity.mmr_lambda", cm.exception.details())
            r = d.ranking.Recommend(req, timeout=10)  # the previous settings still serve
            self.assertEqual(r.items[0].item_id, pinned)
        finally:
            self.assertEqual(d.close(), 0)


class EventsTest(unittest.TestCase):
    """Events.Record: durable before OK, replayed after a crash, shaping the next answer."""

    def record(self, d, events, timeout=10):
        E = pb["events"]
        req = E.RecordRequest(events=[E.Event(user_id=u, item_id=i, type=t, quantity=1, price=5.0)
                                      for u, i, t in events])
        return pb["events_grpc"].EventsStub(d.channel).Record(req, timeout=timeout)

    def test_session_drives_item_cf_and_purchases_are_not_reoffered(self):
        bundle = shop_bundle("shop_events")
        log = os.path.join(TMP, "log_session")
        d = Recd(bundle, "--event_log=" + log)
        try:
            E = pb["events"]
            before = d.ranking.Recommend(pb["ranking"].RecommendRequest(user_id="visitor", k=6), timeout=10)
            self.assertTrue(all(s.source == pb["common"].SOURCE_POPULARITY
                                for i in before.items for s in i.sources))
            r = self.record(d, [("visitor", "I04", E.EVENT_TYPE_VIEW), ("visitor", "I07", E.EVENT_TYPE_VIEW)])
            self.assertEqual(r.accepted, 2)
            self.assertEqual(r.last_sequence, 2)
            after = d.ranking.Recommend(pb["ranking"].RecommendRequest(user_id="visitor", k=6), timeout=10)
            self.assertIn(pb["common"].SOURCE_ITEM_CF, [s.source for i in after.items for s in i.sources])
            self.assertEqual(after.items[0].category, "cat1")  # the session's taste, not the global head
            # A purchase of an item nobody buys twice: not offered to the buyer again.
            top = after.items[0].item_id
            self.record(d, [("visitor", top, E.EVENT_TYPE_PURCHASE)])
            again = d.ranking.Recommend(pb["ranking"].RecommendRequest(user_id="visitor", k=6), timeout=10)
            self.assertNotIn(top, [i.item_id for i in again.items])
            import urllib.request
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % d.admin_port, timeout=10) as m:
                text = m.read().decode()
            self.assertIn("recd_events_recorded_total 3", text)
            self.assertIn("recd_event_log_sequence 3", text)
            self.assertIn("recd_event_log_lag_events 0", text)
            check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                                   text=True, timeout=30)
            self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        finally:
            self.assertEqual(d.close(), 0, d.output())

    def test_bad_events_and_no_log(self):
        import grpc
        E = pb["events"]
        bundle = shop_bundle("shop_events")
        d = Recd(bundle, "--event_log=" + os.path.join(TMP, "log_bad"))
        try:
            for events, msg in (([("", "I01", E.EVENT_TYPE_VIEW)], "events[0].user_id"),
                                ([("u", "I01", E.EVENT_TYPE_UNSPECIFIED)], "events[0].type"),
                                ([], "1 to 1000 events")):
                with self.assertRaises(grpc.RpcError) as cm:
                    self.record(d, events)
                self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
                self.assertIn(msg, cm.exception.details())
        finally:
            self.assertEqual(d.close(), 0)
        d = Recd(bundle)
        try:
            with self.assertRaises(grpc.RpcError) as cm:
                self.record(d, [("u", "I01", E.EVENT_TYPE_VIEW)])
            self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        finally:
            self.assertEqual(d.close(), 0)

    def test_sigkill_loses_no_acknowledged_event(self):
        import grpc
        import threading
        E = pb["events"]
        bundle = shop_bundle("shop_events")
        log = os.path.join(TMP, "log_kill")
        d = Recd(bundle, "--event_log=" + log, "--event_commit_us=2000")  # group commit waits 2 ms
        acked, stop = [], threading.Event()

        def stream():
            n = 0
            while not stop.is_set() and n < 5000:  # bounded
                batch = [("k%d" % (n + j), "I%02d" % ((n + j) % 45), E.EVENT_TYPE_VIEW) for j in range(10)]
                try:
                    self.record(d, batch, timeout=5)
                except grpc.RpcError:
                    return
                acked.extend(b[0] for b in batch)
                n += 10

        t = threading.Thread(target=stream)
        t.start()
        deadline = time.monotonic() + 20
        while len(acked) < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        d.proc.kill()  # SIGKILL mid-stream
        d.proc.wait()
        stop.set()
        t.join()
        d.close()
        self.assertGreaterEqual(len(acked), 300)
        # A torn tail as a crash mid-write leaves it: garbage after the last record.
        seg = sorted(glob.glob(os.path.join(log, "events-*.log")))[-1]
        with open(seg, "ab") as f:
            f.write(b"RECE\x30\x00\x00\x00partial")
        d2 = Recd(bundle, "--event_log=" + log)
        try:
            self.assertIn("torn tail truncated", d2.output())
            m = re.search(r'event log replayed.* events=(\d+)', d2.output())
            self.assertGreaterEqual(int(m.group(1)), len(acked))
            r = recctl("events-csv", "--log", log)
            self.assertEqual(r.returncode, 0, r.stderr)
            logged = {line.split(",")[0].strip('"') for line in r.stdout.splitlines()[1:]}
            self.assertFalse(set(acked) - logged)  # every acknowledged event survived
            # recctl build trains from the log's export.
            csv = os.path.join(TMP, "from_log.csv")
            with open(csv, "w") as f:
                f.write(r.stdout)
            out = os.path.join(TMP, "from_log_bundle")
            b = recctl("build", "--interactions", csv, "--catalog",
                       os.path.join(TMP, "shop_events", "catalog.csv"), "--out", out, "--epochs", "2",
                       "--quiet", "--no-eval")
            self.assertEqual(b.returncode, 0, b.stderr)
        finally:
            self.assertEqual(d2.close(), 0, d2.output())

    def test_export_is_rfc4180_csv_that_build_reads_back(self):
        """Ids with quotes, commas, spaces and UTF-8 survive Record -> events-csv
        -> build -> a recd serving the result."""
        import csv
        import io
        E = pb["events"]
        d = os.path.join(TMP, "csv_roundtrip")
        os.makedirs(d, exist_ok=True)
        odd_items = ['say"cheese"', "a,b", "Crème-brûlée☕", "日本語の本", '"', 'x""y,"z', "say cheese",
                     "two  spaces"]
        odd_users = ['O\'Brien,"Bob"', "Zoë", "用户,1"]
        items = odd_items + ["N%02d" % i for i in range(24)]
        users = odd_users + ["V%02d" % u for u in range(9)]
        catalog = os.path.join(d, "catalog.csv")
        with open(catalog, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["item_id", "category", "price"])
            w.writerows([i, "cat%d" % (n % 3), 5 + n] for n, i in enumerate(items))
        inter = os.path.join(d, "interactions.csv")
        with open(inter, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["user_id", "item_id", "timestamp", "quantity", "price"])
            w.writerows([u, items[(n * 5 + k * 7) % len(items)], 1600000000 + n * 100 + k, 1, 5]
                        for n, u in enumerate(users) for k in range(5))
        bundle = os.path.join(d, "bundle")
        recctl("build", "--interactions", inter, "--catalog", catalog, "--out", bundle, "--epochs", "2",
               "--quiet", "--no-eval", check=True)
        types = (E.EVENT_TYPE_VIEW, E.EVENT_TYPE_ADD_TO_CART, E.EVENT_TYPE_PURCHASE)
        sent = [(u, i, 1700000000 + 60 * n, types[n % 3])
                for n, (u, i) in enumerate((u, i) for u in odd_users for i in odd_items)]
        log = os.path.join(TMP, "log_csv")
        srv = Recd(bundle, "--event_log=" + log)
        try:
            req = E.RecordRequest(events=[E.Event(user_id=u, item_id=i, type=t, time_unix_ms=s * 1000,
                                                  quantity=2, price=7.5) for u, i, s, t in sent])
            r = pb["events_grpc"].EventsStub(srv.channel).Record(req, timeout=10)
            self.assertEqual(r.accepted, len(sent))
        finally:
            self.assertEqual(srv.close(), 0, srv.output())
        r = subprocess.run([os.path.join(ARGS.build, "tools/recctl"), "events-csv", "--log", log],
                           capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = list(csv.reader(io.StringIO(r.stdout.decode("utf-8"), newline="")))
        self.assertEqual(rows[0], ["user_id", "item_id", "timestamp", "quantity", "price", "event_type",
                                   "rating"])
        names = {E.EVENT_TYPE_VIEW: "view", E.EVENT_TYPE_ADD_TO_CART: "add_to_cart",
                 E.EVENT_TYPE_PURCHASE: "purchase"}
        self.assertEqual([(row[0], row[1], int(row[2]), row[5]) for row in rows[1:]],
                         [(u, i, s, names[t]) for u, i, s, t in sent])
        self.assertTrue(all(len(row) == 7 and row[3] == "2" and float(row[4]) == 7.5 for row in rows[1:]))
        exported = os.path.join(d, "exported.csv")
        with open(exported, "wb") as f:
            f.write(r.stdout)
        out = os.path.join(d, "from_export")
        recctl("build", "--interactions", exported, "--catalog", catalog, "--out", out, "--epochs", "2",
               "--quiet", "--no-eval", check=True)
        with open(os.path.join(out, "users.tsv"), encoding="utf-8") as f:
            self.assertEqual(sorted(f.read().splitlines()[1:]), sorted(odd_users))
        with open(os.path.join(out, "purchases.tsv"), encoding="utf-8") as f:
            pairs = {tuple(line.split("\t")[:2]) for line in f.read().splitlines()[1:]}
        self.assertEqual(pairs, {(u, i) for u, i, _, _ in sent})
        srv = Recd(out)  # loads profiles.tsv, whose recent items hold those ids
        try:
            r = srv.ranking.Recommend(pb["ranking"].RecommendRequest(user_id=odd_users[0], k=3), timeout=10)
            self.assertEqual(len(r.items), 3)
        finally:
            self.assertEqual(srv.close(), 0, srv.output())


class TiersTest(unittest.TestCase):
    """Two retrieval shards and one ranking process on loopback."""

    def test_shards_answer_and_a_lost_shard_degrades_not_fails(self):
        import grpc
        import threading
        from rec.v1 import retrieval_pb2, retrieval_pb2_grpc
        bundle = shop_bundle("shop_tiers")
        shards = [Recd(bundle, "--role=retrieval", "--shard=%d/2" % i) for i in range(2)]
        rank = None
        try:
            # The shards hold disjoint parts of the catalog.
            sets = []
            for i, sh in enumerate(shards):
                r = retrieval_pb2_grpc.RetrievalStub(sh.channel).Retrieve(
                    retrieval_pb2.RetrieveRequest(user_id="U04", num_candidates=50), timeout=10)
                self.assertEqual((r.shard, r.shard_count), (i, 2))
                sets.append({c.item_id for c in r.candidates})
            self.assertTrue(sets[0] and sets[1])
            self.assertFalse(sets[0] & sets[1])
            # Under ThreadSanitizer a shard answers many times slower, and the first
            # call (which also connects) can outlast the default 200 ms shard budget.
            slow = ["--retrieval_timeout_ms=3000"] if "TSAN_OPTIONS" in os.environ else []
            rank = Recd(bundle, "--role=ranking", "--retrieval=%s,%s" % (shards[0].addr, shards[1].addr),
                        *slow)
            req = pb["ranking"].RecommendRequest(user_id="U04", k=6)
            r = rank.ranking.Recommend(req, timeout=10)
            self.assertEqual(len(r.items), 6)
            self.assertEqual(r.strategy, pb["ranking"].STRATEGY_PERSONALIZED)
            self.assertFalse([d for d in r.degraded_reasons if "shard" in d or "retrieval" in d])
            self.assertTrue({i.item_id for i in r.items} & sets[0] or {i.item_id for i in r.items} & sets[1])
            # Kill one shard under load: answers keep coming, flagged.
            errors, flagged, stop = [], [], threading.Event()

            def load():
                while not stop.is_set():
                    try:
                        x = rank.ranking.Recommend(req, timeout=10)
                        if any(d.startswith("shard_unavailable:") for d in x.degraded_reasons):
                            flagged.append(len(x.items))
                    except grpc.RpcError as e:
                        errors.append(e.code())

            t = threading.Thread(target=load)
            t.start()
            time.sleep(0.3)
            shards[1].proc.kill()
            deadline = time.monotonic() + 10
            while not flagged and time.monotonic() < deadline:
                time.sleep(0.05)
            stop.set()
            t.join()
            self.assertEqual(errors, [])
            self.assertTrue(flagged)
            self.assertTrue(all(n == 6 for n in flagged))
            # Without any shard the ranking tier still answers, from popularity, flagged.
            shards[0].proc.kill()
            r = rank.ranking.Recommend(req, timeout=10)
            self.assertEqual(len(r.items), 6)
            self.assertIn("retrieval_unavailable", r.degraded_reasons)
        finally:
            rc = rank.close() if rank else 0
            for sh in shards:  # before asserting, so no shard outlives a failure
                sh.close()
            self.assertEqual(rc, 0, rank.output() if rank else "")

    def test_partitions_hold_only_their_items(self):
        """recctl shard: each retrieval shard loads only its items; item-CF of
        seeds another shard holds still reaches the shard's neighbours; the
        ranking tier over the partitions answers whole."""
        from rec.v1 import retrieval_pb2, retrieval_pb2_grpc, common_pb2
        bundle = shop_bundle("shop_parts")
        split = os.path.join(TMP, "shop_parts_split")
        shutil.rmtree(split, ignore_errors=True)
        r = recctl("shard", "--bundle", bundle, "--shards", "2", "--out", split)
        self.assertEqual(r.returncode, 0, r.stderr)
        parts = [os.path.join(split, "shard-%d-of-2" % i) for i in range(2)]
        with open(os.path.join(bundle, "items.tsv")) as f:
            every = {line.split("\t")[0] for line in f.read().splitlines()[1:]}
        held = []
        for p in parts:
            with open(os.path.join(p, "items.tsv")) as f:
                held.append({line.split("\t")[0] for line in f.read().splitlines()[1:]})
        self.assertTrue(held[0] and held[1])
        self.assertFalse(held[0] & held[1])
        self.assertEqual(held[0] | held[1], every)
        # A partition serves only as its own shard of the candidate tier.
        for extra, want in ((["--role=all"], "holds only shard 0/2"),
                            (["--role=retrieval", "--shard=1/2"], "this process serves --shard=1/2")):
            out = subprocess.run([os.path.join(ARGS.build, "server/recd"), "--bundle=" + parts[0],
                                  "--listen=127.0.0.1:0", "--admin_listen=127.0.0.1:0",
                                  "--admin_grpc_listen=127.0.0.1:0"] + extra,
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 1, out.stderr)
            self.assertIn(want, out.stderr)
        whole = [Recd(bundle, "--role=retrieval", "--shard=%d/2" % i) for i in range(2)]
        shards = [Recd(p, "--role=retrieval", "--shard=%d/2" % i) for i, p in enumerate(parts)]
        rank = None
        try:
            # Seeds from both shards: every shard's item-CF answer, merged, is
            # the one of the whole bundle masked per shard.
            seeds = sorted(held[0])[:2] + sorted(held[1])[:2]
            req = retrieval_pb2.RetrieveRequest(user_id="U04", num_candidates=50, recent_item_ids=seeds, segment=-1)

            def cf(servers):
                got = set()
                for i, sh in enumerate(servers):
                    r = retrieval_pb2_grpc.RetrievalStub(sh.channel).Retrieve(req, timeout=10)
                    self.assertEqual((r.shard, r.shard_count), (i, 2))
                    ids = {c.item_id for c in r.candidates}
                    self.assertLessEqual(ids, held[i])
                    got |= {c.item_id for c in r.candidates
                            if any(s.source == common_pb2.SOURCE_ITEM_CF for s in c.scores)}
                return got
            from_parts = cf(shards)
            self.assertTrue(from_parts)
            self.assertEqual(from_parts, cf(whole))

            # EASE over a history: an item named twice counts once.
            def ease(sh, hist):
                r = retrieval_pb2_grpc.RetrievalStub(sh.channel).Retrieve(retrieval_pb2.RetrieveRequest(
                    user_id="U04", num_candidates=50, history_item_ids=hist, segment=-1), timeout=10)
                return {c.item_id: s.raw for c in r.candidates for s in c.scores if s.source == common_pb2.SOURCE_EASE}
            once = ease(whole[0], seeds)
            self.assertTrue(once)
            self.assertEqual(ease(whole[0], seeds + seeds[::-1]), once)
            self.assertTrue(from_parts & held[0] and from_parts & held[1])
            slow = ["--retrieval_timeout_ms=3000"] if "TSAN_OPTIONS" in os.environ else []
            rank = Recd(bundle, "--role=ranking", "--retrieval=%s,%s" % (shards[0].addr, shards[1].addr), *slow)
            r = rank.ranking.Recommend(pb["ranking"].RecommendRequest(user_id="U04", k=6), timeout=10)
            self.assertEqual(len(r.items), 6)
            self.assertEqual(r.strategy, pb["ranking"].STRATEGY_PERSONALIZED)
            self.assertFalse([d for d in r.degraded_reasons if "shard" in d or "retrieval" in d])
            self.assertTrue({i.item_id for i in r.items} <= every)
        finally:
            rc = rank.close() if rank else 0
            for sh in shards + whole:
                sh.close()
            self.assertEqual(rc, 0, rank.output() if rank else "")

    def test_near_deadline_degrades_cheaper_first(self):
        bundle = os.path.join(TMP, "small")
        if not os.path.exists(bundle):
            recctl("synth", "--out", bundle, "--items", "200", "--users", "20", check=True)
        req = pb["ranking"].RecommendRequest(user_id="U00001", k=5)
        # Thresholds above any real deadline make every call "near" its deadline.
        d = Recd(bundle, "--degrade_mmr_below_ms=600000", "--degrade_ef_below_ms=600000")
        try:
            r = d.ranking.Recommend(req, timeout=10)
            self.assertIn("deadline:ef_reduced", r.degraded_reasons)
            self.assertIn("deadline:mmr_skipped", r.degraded_reasons)
            self.assertEqual(r.strategy, pb["ranking"].STRATEGY_PERSONALIZED)
            self.assertEqual(len(r.items), 5)
            r = d.ranking.Recommend(req)  # no deadline at all: nothing to degrade for
            self.assertNotIn("deadline:mmr_skipped", r.degraded_reasons)
        finally:
            self.assertEqual(d.close(), 0)
        d = Recd(bundle, "--degrade_popularity_below_ms=600000")
        try:
            r = d.ranking.Recommend(req, timeout=10)
            self.assertIn("deadline:popularity_only", r.degraded_reasons)
            self.assertEqual(r.strategy, pb["ranking"].STRATEGY_POPULARITY_FALLBACK)
            self.assertEqual(len(r.items), 5)
        finally:
            self.assertEqual(d.close(), 0)

    def test_ranking_role_needs_shards(self):
        r = subprocess.run([os.path.join(ARGS.build, "server/recd"), "--bundle=/x", "--role=ranking"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("retrieval: role=ranking needs --retrieval", r.stderr)


def wait_stopped(pid, timeout=10):
    """SIGSTOP takes effect when the process is next scheduled: on a busy
    machine it can answer for some milliseconds after kill() returned."""
    def state(path):
        with open(path) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = glob.glob("/proc/%d/task/*/stat" % pid)
        if tasks and all(state(t) == "T" for t in tasks):
            return
        time.sleep(0.005)
    raise AssertionError("process %d did not stop" % pid)


class NonBlockingTest(unittest.TestCase):
    """With one worker thread, calls that wait (a stalled shard, a group
    commit, a bundle load) never hold the worker: Health and Recommend keep
    answering meanwhile. Each wait below is far longer than the timeouts of
    the calls that must get through, so a handler that blocked the worker
    would fail them."""

    def health(self, d, timeout):
        h = pb["health"]
        check = d.channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=h.HealthCheckRequest.SerializeToString,
            response_deserializer=h.HealthCheckResponse.FromString)
        return check(h.HealthCheckRequest(), timeout=timeout).status

    def test_stalled_shard_does_not_hold_the_worker(self):
        bundle = shop_bundle("shop_nonblock")
        shards = [Recd(bundle, "--role=retrieval", "--shard=%d/2" % i) for i in range(2)]
        rank = None
        try:
            rank = Recd(bundle, "--role=ranking", "--threads=1", "--retrieval_timeout_ms=20000",
                        "--retrieval=%s,%s" % (shards[0].addr, shards[1].addr))
            req = pb["ranking"].RecommendRequest(user_id="U04", k=6)
            self.assertEqual(len(rank.ranking.Recommend(req, timeout=10).items), 6)
            os.kill(shards[1].proc.pid, signal.SIGSTOP)
            wait_stopped(shards[1].proc.pid)
            try:
                # Calls that wait up to 20 s for the stalled shard...
                slow = [rank.ranking.Recommend.future(req, timeout=30) for _ in range(4)]
                time.sleep(0.2)
                # ...while others still get answered at once on the one worker.
                for _ in range(3):
                    self.assertEqual(self.health(rank, 2), pb["health"].HealthCheckResponse.SERVING)
                # Budget 4 s (0.8 of the deadline): the stalled shard is named. The
                # 1 s after it leaves room for ranking under ThreadSanitizer with
                # another suite running beside it (0.4 s did not, once).
                r = rank.ranking.Recommend(req, timeout=5)
                self.assertEqual(len(r.items), 6)
                self.assertTrue([x for x in r.degraded_reasons if x.startswith("shard_unavailable:")],
                                r.degraded_reasons)
                self.assertFalse([f.result() for f in slow if f.done()])
            finally:
                os.kill(shards[1].proc.pid, signal.SIGCONT)
            for f in slow:  # the shard is back: the waiting calls complete, whole
                r = f.result(timeout=30)
                self.assertEqual(len(r.items), 6)
                self.assertFalse([x for x in r.degraded_reasons if "shard" in x], r.degraded_reasons)
        finally:
            rc = rank.close() if rank else 0
            for sh in shards:  # before asserting, so no shard outlives a failure
                sh.close()
            self.assertEqual(rc, 0, rank.output() if rank else "")

    def test_group_commit_does_not_hold_the_worker(self):
        import threading
        E = pb["events"]
        log = os.path.join(TMP, "log_nonblock")
        d = Recd(shop_bundle("shop_nonblock"), "--threads=1", "--event_log=" + log,
                 "--event_commit_us=1000000")  # every Record waits a second for its group
        stub = pb["events_grpc"].EventsStub(d.channel)
        stop, acks, errors = threading.Event(), [], []

        def stream():
            n = 0
            while not stop.is_set():
                n += 1
                ev = E.Event(user_id="s-%d" % n, item_id="I01", type=E.EVENT_TYPE_VIEW)
                try:
                    acks.append(stub.Record(E.RecordRequest(events=[ev]), timeout=10).last_sequence)
                except Exception as e:  # noqa: a failed Record fails the test below
                    errors.append(e)
        try:
            writers = [threading.Thread(target=stream) for _ in range(3)]
            for t in writers:
                t.start()
            time.sleep(0.3)
            answered = 0
            t_end = time.monotonic() + 2.5
            while time.monotonic() < t_end:
                self.assertEqual(self.health(d, 1), pb["health"].HealthCheckResponse.SERVING)
                r = d.ranking.Recommend(pb["ranking"].RecommendRequest(user_id="U04", k=3), timeout=1)
                self.assertEqual(len(r.items), 3)
                answered += 1
            stop.set()
            for t in writers:
                t.join()
            self.assertGreater(answered, 5)
            self.assertEqual(errors, [])
            self.assertTrue(acks)
            self.assertEqual(len(set(acks)), len(acks))  # one sequence per acknowledged event
        finally:
            stop.set()
            self.assertEqual(d.close(), 0, d.output())

    def test_bundle_load_does_not_hold_the_worker(self):
        import concurrent.futures
        bundle = shop_bundle("shop_nonblock")
        # A bundle whose manifest arrives only when the test writes it: a load
        # that lasts as long as the test wants, like a large bundle on a slow disk.
        slow = os.path.join(TMP, "slow_bundle")
        shutil.copytree(bundle, slow)
        with open(os.path.join(slow, "manifest.json")) as f:
            manifest = f.read()
        os.remove(os.path.join(slow, "manifest.json"))
        os.mkfifo(os.path.join(slow, "manifest.json"))
        d = Recd(bundle, "--threads=1")
        pool = concurrent.futures.ThreadPoolExecutor(1)
        reload = None
        try:
            admin = pb["admin_grpc"].AdminStub(d.admin_channel)
            reload = pool.submit(admin.Reload, pb["admin"].ReloadRequest(bundle_path=slow), timeout=60)
            time.sleep(0.3)
            for _ in range(3):
                self.assertEqual(self.health(d, 2), pb["health"].HealthCheckResponse.SERVING)
                r = d.ranking.Recommend(pb["ranking"].RecommendRequest(user_id="U04", k=3), timeout=2)
                self.assertEqual(len(r.items), 3)
            self.assertFalse(reload.done())
            with open(os.path.join(slow, "manifest.json"), "w") as f:  # the disk catches up
                f.write(manifest)
            r = reload.result(timeout=60)
            self.assertEqual(r.version, manifest_version(bundle))
        finally:
            if reload and not reload.done():
                with open(os.path.join(slow, "manifest.json"), "w") as f:
                    f.write(manifest)
            pool.shutdown()
            self.assertEqual(d.close(), 0, d.output())


def raw_call(channel, method):
    """A unary call that sends and returns raw bytes, for requests no stub would build."""
    return channel.unary_unary(method, request_serializer=None, response_deserializer=None)


def vm_rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


class HostileInputTest(unittest.TestCase):
    """Bytes no conforming client would send: every one refused with a status
    that names the field, within bounded memory, and the server serves on."""

    @classmethod
    def setUpClass(cls):
        # Under AddressSanitizer freed memory sits in a 256 MiB quarantine;
        # a small one keeps the RSS bounds about recd's own memory.
        env = dict(os.environ)
        if "ASAN_OPTIONS" in env:
            env["ASAN_OPTIONS"] += ":quarantine_size_mb=4"
        cls.recd = Recd(shop_bundle("shop_hostile"), "--max_message_bytes=4194304",
                        "--event_log=" + os.path.join(TMP, "log_hostile"), env=env)

    @classmethod
    def tearDownClass(cls):
        cls.recd.close()

    def refused(self, method, body, code, text, **kw):
        import grpc
        with self.assertRaises(grpc.RpcError) as cm:
            raw_call(self.recd.channel, method)(body, timeout=30, **kw)
        self.assertEqual(cm.exception.code(), code, cm.exception.details())
        self.assertIn(text, cm.exception.details())

    def test_strings_are_utf8_without_nul(self):
        import grpc
        R, E = pb["ranking"], pb["events"]
        ok = R.RecommendRequest(user_id="U04", k=3).SerializeToString()
        self.assertTrue(raw_call(self.recd.channel, "/rec.v1.Ranking/Recommend")(ok, timeout=10))
        # user_id "U04\0other": protobuf-c would have served it as "U04".
        body = b"\x0a\x09U04\x00other\x10\x03"
        self.refused("/rec.v1.Ranking/Recommend", body, grpc.StatusCode.INVALID_ARGUMENT, "user_id contains a NUL byte")
        # request_id that is not UTF-8: echoing it would break the caller's parser.
        body = ok + b"\x52\x02\xc3\x28"  # field 10 (request_id)
        self.refused("/rec.v1.Ranking/Recommend", body, grpc.StatusCode.INVALID_ARGUMENT, "request_id is not valid UTF-8")
        ev = E.Event(user_id="u", item_id="I01", type=E.EVENT_TYPE_VIEW).SerializeToString()
        bad_ev = b"\x0a\x01u\x12\x03I\xff1\x18\x01"
        body = b"\x0a" + bytes([len(ev)]) + ev + b"\x0a" + bytes([len(bad_ev)]) + bad_ev
        self.refused("/rec.v1.Events/Record", body, grpc.StatusCode.INVALID_ARGUMENT, "events[1].item_id is not valid UTF-8")
        # Ids with a tab or a line break can never be bundle ids.
        for uid in ("U\t04", "U04\n"):
            with self.assertRaises(grpc.RpcError) as cm:
                self.recd.ranking.Recommend(R.RecommendRequest(user_id=uid, k=3), timeout=10)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn("user_id contains a tab or line break", cm.exception.details())
        self.assertEqual(len(self.recd.ranking.Recommend(R.RecommendRequest(user_id="U04", k=3), timeout=10).items), 3)

    def test_cursors_are_parsed_strictly(self):
        import grpc
        R = pb["ranking"]
        first = self.recd.ranking.Recommend(R.RecommendRequest(user_id="U04", k=3), timeout=10)
        version = first.next_cursor.split("@", 1)[1]
        for cur in ("-3@" + version, "+3@" + version, " 3@" + version, "18446744073709551619@" + version,
                    "3@", "@" + version, "3"):
            with self.assertRaises(grpc.RpcError) as cm:
                self.recd.ranking.Recommend(R.RecommendRequest(user_id="U04", k=3, page_cursor=cur), timeout=10)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT, cur)
            self.assertIn("page_cursor", cm.exception.details())

    def test_memory_stays_bounded(self):
        """Six concurrent 4 MiB Records of 2 million empty events each, then a
        gzip request that inflates to 64 MiB: each refused before it is
        decoded, recd's RSS stays within 200 MiB of idle and comes back."""
        import grpc
        import threading
        pid = self.recd.proc.pid
        idle = vm_rss_mib(pid)
        peak, stop = [idle], threading.Event()

        def poll():
            while not stop.is_set():
                peak[0] = max(peak[0], vm_rss_mib(pid))
                time.sleep(0.005)
        poller = threading.Thread(target=poll)
        poller.start()
        results = []
        body = b"\x0a\x00" * (2 * 1024 * 1024 - 16)

        def flood():
            try:
                raw_call(self.recd.channel, "/rec.v1.Events/Record")(body, timeout=60)
                results.append("OK")
            except grpc.RpcError as e:
                results.append((e.code(), e.details()))
        try:
            threads = [threading.Thread(target=flood) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(len(results), 6)
            for r in results:
                self.assertEqual(r[0], grpc.StatusCode.RESOURCE_EXHAUSTED, r)
                self.assertIn("events holds more than 10000 elements", r[1])
            # user_id of 64 MiB, gzip-compressed by the client to about 64 KiB.
            bomb = b"\x0a\x80\x80\x80\x20" + b"a" * (64 << 20)
            ch = grpc.insecure_channel(self.recd.addr, options=[("grpc.max_send_message_length", -1)])
            try:
                with self.assertRaises(grpc.RpcError) as cm:
                    raw_call(ch, "/rec.v1.Ranking/Recommend")(bomb, timeout=60, compression=grpc.Compression.Gzip)
                self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
                self.assertIn("inflates past 4194304 bytes", cm.exception.details())
                # A small compressed request is served.
                ok = pb["ranking"].RecommendRequest(user_id="U04", k=3).SerializeToString()
                self.assertTrue(raw_call(ch, "/rec.v1.Ranking/Recommend")(ok, timeout=10, compression=grpc.Compression.Gzip))
            finally:
                ch.close()
            time.sleep(0.5)
        finally:
            stop.set()
            poller.join()
        after = vm_rss_mib(pid)
        sys.stderr.write("\n  recd RSS: idle %.0f MiB, peak %.0f, after %.0f\n" % (idle, peak[0], after))
        self.assertLess(peak[0] - idle, 200)
        self.assertLess(after - idle, 100)  # the issue saw 1 GiB stay held


class LimitsTest(unittest.TestCase):
    """Walks the limits table of docs/api.md: at each limit the call is
    answered, just past it the call is refused with the status the table says."""

    BASE = {"Recommend": lambda: pb["ranking"].RecommendRequest(user_id="U04", k=3),
            "SimilarItems": lambda: pb["ranking"].SimilarItemsRequest(item_ids=["I01"], k=3),
            "Record": lambda: pb["events"].RecordRequest(
                events=[pb["events"].Event(user_id="u", item_id="I01", type=pb["events"].EVENT_TYPE_VIEW)])}

    def rows(self):
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "api.md")
        with open(path) as f:
            text = f.read().split("## Limits", 1)[1]
        for line in text.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 5 and cells[2] in ("bytes", "int", "count"):
                lo, hi = (int(x) for x in cells[3].split(".."))
                yield cells[0], cells[1], cells[2], lo, hi, cells[4]

    def request(self, method):
        if method == "Retrieve":
            from rec.v1 import retrieval_pb2
            return retrieval_pb2.RetrieveRequest(user_id="U04", num_candidates=10)
        return self.BASE[method]()

    def element(self, field):
        return {"filters.include_categories": "cat0", "item_ids": "I01"}.get(field, "I01")

    def set_value(self, req, field, kind, n):
        target, name = req, field
        if field.startswith("events."):
            target, name = req.events[0], field.split(".", 1)[1]
        elif "." in field:
            parent, name = field.split(".", 1)
            target = getattr(req, parent)
        if kind == "bytes":
            setattr(target, name, "x" * n)
        elif kind == "int":
            setattr(target, name, n)
        elif field == "events":
            one = req.events[0]
            del req.events[:]
            req.events.extend([one] * n)
        else:
            del getattr(target, name)[:]
            getattr(target, name).extend([self.element(field)] * n)

    def call(self, d, method, req):
        import grpc
        from rec.v1 import retrieval_pb2_grpc
        stubs = {"Recommend": d.ranking.Recommend, "SimilarItems": d.ranking.SimilarItems,
                 "Retrieve": retrieval_pb2_grpc.RetrievalStub(d.channel).Retrieve,
                 "Record": pb["events_grpc"].EventsStub(d.channel).Record}
        try:
            stubs[method](req, timeout=10)
            return grpc.StatusCode.OK, ""
        except grpc.RpcError as e:
            return e.code(), e.details()

    def test_every_limit_in_the_table(self):
        import grpc
        d = Recd(shop_bundle("shop_limits"), "--event_log=" + os.path.join(TMP, "log_limits"),
                 "--max_message_bytes=4194304")
        walked = 0
        try:
            for method, field, kind, lo, hi, status in self.rows():
                name = field.split(".")[-1]
                for n, want in ((lo, "OK"), (hi, "OK"), (lo - 1, status), (hi + 1, status)):
                    if n < 0 and kind != "int":
                        continue
                    req = self.request(method)
                    self.set_value(req, field, kind, n)
                    code, details = self.call(d, method, req)
                    self.assertEqual(code.name, want, "%s %s=%s: %s" % (method, field, n, details))
                    if want != "OK":
                        self.assertIn(name, details, "%s %s=%s" % (method, field, n))
                walked += 1
        finally:
            self.assertEqual(d.close(), 0)
        self.assertGreaterEqual(walked, 15)


class ReloadQueueTest(unittest.TestCase):
    """Reloads queue off the serving threads: a caller that gives up stops
    holding a slot, the queue is bounded, and SIGTERM does not wait for a
    load stuck on a slow disk."""

    def fifo_bundle(self, name):
        """A copy of a bundle whose manifest arrives when the test writes it."""
        bundle = shop_bundle("shop_queue")
        slow = os.path.join(TMP, name)
        shutil.copytree(bundle, slow)
        with open(os.path.join(slow, "manifest.json")) as f:
            manifest = f.read()
        os.remove(os.path.join(slow, "manifest.json"))
        os.mkfifo(os.path.join(slow, "manifest.json"))
        return bundle, slow, manifest

    def test_abandoned_reloads_give_their_slots_back(self):
        import grpc
        bundle, slow, manifest = self.fifo_bundle("slow_queue")
        d = Recd(bundle, "--max_inflight=24")
        try:
            admin = pb["admin_grpc"].AdminStub(d.admin_channel)
            first = admin.Reload.future(pb["admin"].ReloadRequest(bundle_path=slow), timeout=1)
            time.sleep(0.2)
            # 20 more callers of the stuck path, and 20 of other paths: the
            # queue takes 8 loads of 32 callers each at most.
            calls = [admin.Reload.future(pb["admin"].ReloadRequest(bundle_path=slow), timeout=1) for _ in range(20)]
            others = [os.path.join(TMP, "not_a_bundle_%d" % i) for i in range(20)]
            for o in others:
                os.makedirs(o, exist_ok=True)
            calls += [admin.Reload.future(pb["admin"].ReloadRequest(bundle_path=o), timeout=1) for o in others]
            codes = []
            for f in [first] + calls:
                try:
                    f.result()
                    codes.append("OK")
                except grpc.RpcError as e:
                    codes.append(e.code().name)
            self.assertIn("RESOURCE_EXHAUSTED", codes)   # the queue is bounded
            self.assertIn("DEADLINE_EXCEEDED", codes)    # callers gave up...
            time.sleep(0.3)
            # ...and their calls no longer hold in-flight slots.
            for _ in range(30):
                r = d.ranking.Recommend(pb["ranking"].RecommendRequest(user_id="U04", k=3), timeout=5)
                self.assertEqual(len(r.items), 3)
        finally:
            with open(os.path.join(slow, "manifest.json"), "w") as f:  # the disk catches up
                f.write(manifest)
            self.assertEqual(d.close(), 0, d.output())

    def test_sigterm_does_not_wait_for_a_stuck_load(self):
        import grpc
        bundle, slow, manifest = self.fifo_bundle("slow_sigterm")
        d = Recd(bundle, "--drain_ms=1000")
        try:
            admin = pb["admin_grpc"].AdminStub(d.admin_channel)
            stuck = admin.Reload.future(pb["admin"].ReloadRequest(bundle_path=slow), timeout=60)
            time.sleep(0.3)
            t0 = time.monotonic()
            d.proc.send_signal(signal.SIGTERM)
            self.assertEqual(d.proc.wait(timeout=30), 0, d.output())
            self.assertLess(time.monotonic() - t0, 10)
            with self.assertRaises(grpc.RpcError) as cm:
                stuck.result(timeout=10)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
            self.assertIn("a bundle load is still running; stopping without it", d.output())
        finally:
            try:  # release the loader if it is still there (nobody reads: ENXIO)
                os.close(os.open(os.path.join(slow, "manifest.json"), os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
            d.close()

    def test_duplicate_shards_are_refused(self):
        r = subprocess.run([os.path.join(ARGS.build, "server/recd"), "--bundle=" + shop_bundle("shop_queue"),
                            "--role=ranking", "--listen=127.0.0.1:0", "--admin_listen=127.0.0.1:0", "--admin_grpc_listen=127.0.0.1:0",
                            "--retrieval=127.0.0.1:1,127.0.0.1:1"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("'127.0.0.1:1' is listed twice", r.stderr)


class HostileShardTest(unittest.TestCase):
    """A retrieval shard answering what no honest one would (every item
    three times, NaN and infinite scores, a pinned item repeated): the
    ranking tier serves a page without duplicates and does not crash."""

    def test_duplicates_and_nan_from_a_shard(self):
        import grpc
        from concurrent import futures
        from rec.v1 import common_pb2, retrieval_pb2, retrieval_pb2_grpc
        bundle = shop_bundle("shop_hostile_shard")
        with open(os.path.join(bundle, "items.tsv")) as f:
            items = sorted(line.split("\t", 1)[0] for line in list(f)[1:])

        class Liar(retrieval_pb2_grpc.RetrievalServicer):
            def Retrieve(self, request, context):
                cands = []
                for n, item in enumerate(items[:20]):
                    for k in range(3):
                        score = [float("nan"), 0.9 - n / 100.0, 0.5 + n / 100.0][k] if n % 2 else [float("inf"), 0.3, 0.4][k]
                        cands.append(retrieval_pb2.Candidate(item_id=item, scores=[
                            common_pb2.SourceScore(source=common_pb2.SOURCE_ANN, raw=score)]))
                return retrieval_pb2.RetrieveResponse(candidates=cands, shard=0, shard_count=1,
                                                      known_user=True, exhausted=False)

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        retrieval_pb2_grpc.add_RetrievalServicer_to_server(Liar(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        conf = os.path.join(TMP, "pins.conf")
        with open(conf, "w") as f:
            f.write("promotions.pin = %s@1\n" % items[0])
        d = Recd(bundle, "--role=ranking", "--retrieval=127.0.0.1:%d" % port, "--ranking_config=" + conf)
        try:
            for user in ("U04", "U07", "nobody"):
                r = d.ranking.Recommend(pb["ranking"].RecommendRequest(user_id=user, k=10), timeout=10)
                ids = [i.item_id for i in r.items]
                self.assertEqual(len(ids), len(set(ids)), ids)
                self.assertEqual(len(ids), 10)
                self.assertTrue(all(i.score == i.score for i in r.items))  # no NaN served
        finally:
            self.assertEqual(d.close(), 0, d.output())
            server.stop(0)


class FullDiskTest(unittest.TestCase):
    """The event log's file system fills up: Record says so (not OK),
    recommendations go on, and once there is room again and recd restarts,
    every acknowledged event is there and no refused one is."""

    def small_fs(self):
        """A 2 MiB tmpfs for the log, or (where mounting is not allowed) a
        300 KB file-size limit on recd, which fails the log's writes the same way."""
        mnt = os.path.join(TMP, "small_fs")
        os.makedirs(mnt, exist_ok=True)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt],
                          capture_output=True).returncode == 0:
            self.addCleanup(subprocess.run, ["umount", "-l", mnt], capture_output=True)
            filler = os.path.join(mnt, "filler")
            with open(filler, "wb") as f:  # leave about 400 KB
                f.write(b"\0" * (2 * 1024 * 1024 - 400 * 1024))
            return mnt, filler, None
        # prlimit sets the limit and execs recd: no Python code between fork
        # and exec (a preexec_fn can deadlock on a lock grpcio's threads hold).
        return mnt, None, ["prlimit", "--fsize=%d:%d" % (300 * 1024, 300 * 1024), "--"]

    def test_full_disk_refuses_then_recovers(self):
        import grpc
        E = pb["events"]
        mnt, filler, limit = self.small_fs()
        log = os.path.join(mnt, "log")
        bundle = shop_bundle("shop_full_disk")
        d = Recd(bundle, "--event_log=" + log, "--event_segment_mb=1") if not limit else None
        if limit:  # the limit applies to recd only
            d = Recd.__new__(Recd)
            d.log = open(os.path.join(TMP, "recd-full-%d.log" % time.monotonic_ns()), "a+")
            d.proc = subprocess.Popen(
                limit + [os.path.join(ARGS.build, "server/recd"), "--bundle=" + bundle, "--listen=127.0.0.1:0",
                         "--admin_listen=127.0.0.1:0", "--admin_grpc_listen=127.0.0.1:0", "--event_log=" + log,
                         "--event_segment_mb=1"],
                stdout=d.log, stderr=subprocess.STDOUT)
            d.port = d._wait_for(r'msg="serving" port=(\d+)')
            d.addr = "127.0.0.1:%d" % d.port
            d.channel = grpc.insecure_channel(d.addr)
            d.ranking = pb["ranking_grpc"].RankingStub(d.channel)
        stub = pb["events_grpc"].EventsStub(d.channel)
        acked, refused = [], []
        try:
            for n in range(2000):  # bounded: the disk fills long before
                batch = [E.Event(user_id="full-%d-%d" % (n, j), item_id="I%02d" % (j % 45),
                                 type=E.EVENT_TYPE_VIEW) for j in range(50)]
                try:
                    r = stub.Record(E.RecordRequest(events=batch), timeout=10)
                    acked.append(r.last_sequence)
                except grpc.RpcError as e:
                    refused.append((e.code(), e.details()))
                    if len(refused) >= 3:
                        break
            self.assertTrue(acked)
            self.assertEqual(len(refused), 3, "the log never filled up")
            for code, details in refused:
                self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
                self.assertIn("not recorded", details)
            r = d.ranking.Recommend(pb["ranking"].RecommendRequest(user_id="U04", k=5), timeout=10)
            self.assertEqual(len(r.items), 5)  # serving goes on
        finally:
            self.assertEqual(d.close(), 0, d.output())
        if filler:
            os.remove(filler)  # room again
        d2 = Recd(bundle, "--event_log=" + log, "--event_segment_mb=1")
        try:
            out = recctl("events-csv", "--log", log)
            self.assertEqual(out.returncode, 0, out.stderr)
            rows = out.stdout.splitlines()[1:]
            self.assertEqual(len(rows), 50 * len(acked))  # every acknowledged event, no refused one
            self.assertEqual(max(acked), 50 * len(acked))
            r = pb["events_grpc"].EventsStub(d2.channel).Record(
                E.RecordRequest(events=[E.Event(user_id="after", item_id="I01", type=E.EVENT_TYPE_VIEW)]), timeout=10)
            self.assertEqual(r.last_sequence, max(acked) + 1)
        finally:
            self.assertEqual(d2.close(), 0, d2.output())


class ProcessTest(unittest.TestCase):
    """recd's command line, startup refusals and shutdown; recctl's failures."""

    def run_recd(self, *args):
        return subprocess.run([os.path.join(ARGS.build, "server/recd")] + list(args),
                              capture_output=True, text=True, timeout=60)

    def test_bad_command_line_is_one_line_and_exit_2(self):
        for args, msg in [((), "bundle: required"),
                          (("--bundle=/x", "--threads=lots"), "threads: must be an integer"),
                          (("--bundle=/x", "--frobnicate=1"), "unknown option --frobnicate")]:
            r = self.run_recd(*args)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
            self.assertIn(msg, r.stderr)

    def test_broken_bundle_is_refused_with_exit_1(self):
        broken = os.path.join(TMP, "broken")
        shutil.rmtree(broken, ignore_errors=True)
        recctl("synth", "--out", broken, "--items", "100", "--users", "10", check=True)
        with open(os.path.join(broken, "items.tsv"), "a") as f:
            f.write("extra\tline\t1\t1\t1\n")
        r = self.run_recd("--bundle=" + broken, "--listen=127.0.0.1:0", "--admin_listen=127.0.0.1:0",
                          "--admin_grpc_listen=127.0.0.1:0")
        self.assertEqual(r.returncode, 1)
        self.assertIn("items.tsv", r.stderr)
        self.assertIn("bundle refused", r.stderr)

    def test_sigterm_stops_cleanly(self):
        bundle = os.path.join(TMP, "small")
        if not os.path.exists(bundle):
            recctl("synth", "--out", bundle, "--items", "200", "--users", "20", check=True)
        d = Recd(bundle)
        self.assertEqual(recctl("health", "--addr", d.addr).returncode, 0)
        self.assertEqual(d.close(), 0)
        self.assertIn('msg="stopped"', d.output())

    def test_overload_fails_fast_and_recovers(self):
        import grpc
        bundle = os.path.join(TMP, "small")
        if not os.path.exists(bundle):
            recctl("synth", "--out", bundle, "--items", "200", "--users", "20", check=True)
        d = Recd(bundle, "--max_inflight=1")
        try:
            req = pb["ranking"].RecommendRequest(user_id="U00001", k=50, explain=True)
            codes = []
            for _ in range(5):  # bounded: 5 bursts of 64 concurrent calls
                futures = [d.ranking.Recommend.future(req, timeout=10) for _ in range(64)]
                for f in futures:
                    try:
                        f.result()
                        codes.append(grpc.StatusCode.OK)
                    except grpc.RpcError as e:
                        codes.append(e.code())
                        if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                            self.assertIn("overloaded", e.details())
                if grpc.StatusCode.RESOURCE_EXHAUSTED in codes:
                    break
            self.assertIn(grpc.StatusCode.RESOURCE_EXHAUSTED, codes)
            self.assertEqual(set(codes), {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED})
            # Still serving: a call the cap refuses says to retry with backoff
            # (the burst's last calls may still be counted for a moment).
            for attempt in range(20):
                try:
                    self.assertEqual(len(d.ranking.Recommend(req, timeout=10).items), 50)
                    break
                except grpc.RpcError as e:
                    self.assertEqual(e.code(), grpc.StatusCode.RESOURCE_EXHAUSTED, e.details())
                    self.assertLess(attempt, 19, "still refused after 20 tries")
                    time.sleep(0.05 * (attempt + 1))
            self.assertEqual(recctl("health", "--addr", d.addr).returncode, 0)
        finally:
            self.assertEqual(d.close(), 0)

    def test_sigterm_drains(self):
        import grpc
        bundle = os.path.join(TMP, "small")
        if not os.path.exists(bundle):
            recctl("synth", "--out", bundle, "--items", "200", "--users", "20", check=True)
        d = Recd(bundle, "--drain_grace_ms=3000")
        h = pb["health"]
        check = d.channel.unary_unary("/grpc.health.v1.Health/Check",
                                      request_serializer=h.HealthCheckRequest.SerializeToString,
                                      response_deserializer=h.HealthCheckResponse.FromString)
        self.assertEqual(check(h.HealthCheckRequest(), timeout=5).status, h.HealthCheckResponse.SERVING)
        d.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 2
        status = None
        while time.monotonic() < deadline:
            status = check(h.HealthCheckRequest(), timeout=5).status
            if status == h.HealthCheckResponse.NOT_SERVING:
                break
            time.sleep(0.05)
        self.assertEqual(status, h.HealthCheckResponse.NOT_SERVING)
        # Still answering during the grace period...
        r = d.ranking.Recommend(pb["ranking"].RecommendRequest(user_id="U00001", k=3), timeout=5)
        self.assertEqual(len(r.items), 3)
        # ...then it stops cleanly; later calls find nobody.
        d.proc.wait(timeout=20)
        self.assertEqual(d.proc.returncode, 0)
        with self.assertRaises(grpc.RpcError) as cm:
            d.ranking.Recommend(pb["ranking"].RecommendRequest(user_id="U00001", k=3), timeout=5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        d.close()

    def test_recctl_reports_connection_failure(self):
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now
        r = recctl("recommend", "--addr", "127.0.0.1:%d" % port, "--user", "u", "--timeout-ms", "3000")
        self.assertEqual(r.returncode, 1)
        self.assertIn("UNAVAILABLE", r.stderr)
        r = recctl("recommend", "--user")
        self.assertEqual(r.returncode, 2)


def run(tmp_prefix="recd_e2e."):
    """The command line of every e2e file: --build, --proto, then unittest's
    own arguments for the tests of the calling __main__ module, in a fresh
    TMP removed afterwards. Returns the exit code."""
    global ARGS, TMP
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True)
    p.add_argument("--proto", required=True)
    ARGS, rest = p.parse_known_args()
    ARGS.build = os.path.abspath(ARGS.build)
    TMP = tempfile.mkdtemp(prefix=tmp_prefix)
    try:
        generate_stubs(os.path.abspath(ARGS.proto), os.path.join(TMP, "stubs"))
        prog = unittest.main(module="__main__", argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
        return 0 if prog.result.wasSuccessful() else 1
    finally:
        shutil.rmtree(TMP, ignore_errors=True)


def main():
    return run()


if __name__ == "__main__":
    sys.exit(main())
