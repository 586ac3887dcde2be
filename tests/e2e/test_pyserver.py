#!/usr/bin/python3
"""End-to-end test of the benchmark's Python alternative: recd and
bench/pyserver/recd_py.py serve the same bundle and bench/pyserver/
compare_slates.py asks both for the same slates -- known users, unknown ones,
category filters, second pages, excludes, anchors and price ranges -- and
finds them identical: synthetic bundles (no behavioural signals; HNSW, and
the benchmark's 100k-item shape) and real recctl-built ones (Superstore with Flat, HNSW and IVF indexes; MovieLens)
with item-CF, popularity lists, profiles, purchases and repurchase cycles.
Also: the Python server's health check, its errors, and --processes.

Real data comes from tools/data/fetch.sh into <repo>/.cache/data, as
test_offline.py gets it; a dataset that cannot be fetched is skipped, saying so.

Usage: /usr/bin/python3 tests/e2e/test_pyserver.py --build BUILD_DIR --proto PROTO_DIR
"""
import os
import re
import signal
import subprocess
import sys
import time
import unittest

import test_recd as base

ARGS = None
TMP = None
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYSERVER = os.path.join(REPO, "bench", "pyserver")
MIN_SLATES = 100  # identical slates each bundle must show, at the least


class Server:
    """A server process on a free loopback port, found in its log; stopped
    (and waited for) on close."""

    def __init__(self, cmd, pattern, name, timeout=60):
        self.log_path = os.path.join(TMP, "%s-%d.log" % (name, time.monotonic_ns()))
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.output())
            if m:
                self.port = int(m.group(1))
                self.addr = "127.0.0.1:%d" % self.port
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.close()
        raise AssertionError("%s did not start (%r not in its log):\n%s" % (name, pattern, self.output()))

    def output(self):
        with open(self.log_path) as f:
            return f.read()

    def close(self, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def recd(bundle):
    return Server([os.path.join(ARGS.build, "server/recd"), "--bundle=" + bundle, "--listen=127.0.0.1:0",
                   "--admin_listen=127.0.0.1:0", "--admin_grpc_listen=127.0.0.1:0", "--threads=2"],
                  r'msg="serving" port=(\d+)', "recd")


def pyserver(bundle, *extra):
    return Server([sys.executable, os.path.join(PYSERVER, "recd_py.py"), "--bundle", bundle, "--listen",
                   "127.0.0.1:0", "--workers", "2", "--proto", ARGS.proto] + list(extra),
                  r"recd_py: serving port=(\d+)", "recd_py")


def recctl(*args, timeout=300):
    r = subprocess.run([os.path.join(ARGS.build, "tools/recctl")] + list(args), capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode != 0:
        raise AssertionError("recctl %s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr))
    return r


def fetch(dataset):
    """The dataset's folder under <repo>/.cache/data, or None (with why) when it cannot be had."""
    cache = os.path.join(REPO, ".cache", "data")
    try:
        r = subprocess.run([os.path.join(REPO, "tools/data/fetch.sh"), cache, dataset], capture_output=True,
                           text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return None, "tools/data/fetch.sh %s timed out" % dataset
    if r.returncode != 0:
        return None, "tools/data/fetch.sh %s failed: %s" % (dataset, r.stderr.strip()[-300:])
    return os.path.join(cache, dataset), None


def users_file(bundle):
    path = os.path.join(TMP, "users-%d.txt" % time.monotonic_ns())
    with open(os.path.join(bundle, "users.tsv")) as f:
        users = f.read().split("\n")[1:]
    with open(path, "w") as f:
        f.write("\n".join(u for u in users if u) + "\n")
    return path


def categories(bundle):
    with open(os.path.join(bundle, "items.tsv")) as f:
        cats = {line.split("\t")[1] for line in f.read().split("\n")[1:] if line}
    return ",".join(sorted(c for c in cats if "," not in c))


def compare(a, b, bundle, n, k=10, *extra):
    """compare_slates.py's exit status and output."""
    r = subprocess.run([sys.executable, os.path.join(PYSERVER, "compare_slates.py"), "--a", a.addr, "--b", b.addr,
                        "--users", users_file(bundle), "--n", str(n), "-k", str(k), "--categories",
                        categories(bundle), "--proto", ARGS.proto] + list(extra),
                       capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout + r.stderr


class SameSlates(unittest.TestCase):
    """recd and the Python server on one bundle: every slate identical."""

    def same(self, bundle, n=150, runs=((10, "1"),), processes=1):
        a = recd(bundle)
        try:
            b = pyserver(bundle, "--processes", str(processes))
            try:
                for k, seed in runs:
                    rc, out = compare(a, b, bundle, n, k, "--seed", seed)
                    print("\n%s k=%d:\n%s" % (os.path.basename(bundle), k, out.rstrip()))
                    self.assertEqual(rc, 0, out)
                    m = re.search(r"identical slates: (\d+)/(\d+)", out)
                    self.assertTrue(m, out)
                    self.assertEqual(m.group(1), m.group(2), out)
                    self.assertGreaterEqual(int(m.group(1)), MIN_SLATES, out)
                    self.assertIn("0 identical errors", out)
            finally:
                self.assertEqual(b.close(), 0, b.output())
        finally:
            self.assertEqual(a.close(), 0, a.output())

    def test_synth_hnsw(self):
        out = os.path.join(TMP, "synth")
        recctl("synth", "--out", out, "--items", "20000", "--users", "2000", "--index", "HNSW32")
        self.same(out, runs=((10, "1"), (50, "2")))

    def test_synth_benchmark_shape(self):
        # bench/run.sh's bundle, with whatever index recctl synth picks for it.
        out = os.path.join(TMP, "synth-100k")
        recctl("synth", "--out", out, "--items", "100000", "--users", "20000", "--dim", "64", "--categories", "50")
        self.same(out, runs=((10, "7"),))

    def superstore(self, *index):
        data, why = fetch("superstore")
        if data is None:
            self.skipTest("Superstore data unavailable: " + why)
        out = os.path.join(TMP, "superstore-%d" % time.monotonic_ns())
        recctl("build", "--interactions", os.path.join(data, "interactions.csv"), "--catalog",
               os.path.join(data, "catalog.csv"), "--out", out, "--quiet", "--no-eval", "--no-tune", *index)
        return out

    def test_superstore_flat(self):
        # Prices, spending segments, repurchase cycles: every rule runs.
        self.same(self.superstore(), n=200, runs=((10, "1"), (100, "2")))

    def test_superstore_hnsw(self):
        self.same(self.superstore("--index", "HNSW32"), runs=((10, "3"),))

    def test_superstore_ivf(self):
        self.same(self.superstore("--index", "IVF16,Flat"), runs=((10, "4"),))

    def test_movielens(self):
        data, why = fetch("movielens")
        if data is None:
            self.skipTest("MovieLens data unavailable: " + why)
        out = os.path.join(TMP, "movielens")
        recctl("build", "--interactions", os.path.join(data, "interactions.csv"), "--catalog",
               os.path.join(data, "catalog.csv"), "--out", out, "--quiet", "--no-eval", "--no-tune")
        self.same(out, runs=((10, "5"), (30, "6")))


class PyServerItself(unittest.TestCase):
    """The Python server as a service: health, errors, several processes, a clean stop."""

    @classmethod
    def setUpClass(cls):
        cls.bundle = os.path.join(TMP, "synth-small")
        recctl("synth", "--out", cls.bundle, "--items", "2000", "--users", "300")

    def test_processes_health_errors(self):
        import grpc
        sys.path.insert(0, PYSERVER)
        try:
            from compare_slates import load_stubs
        finally:
            sys.path.remove(PYSERVER)
        pb, pb_grpc = load_stubs(ARGS.proto)
        a = recd(self.bundle)
        b = pyserver(self.bundle, "--processes", "2")
        try:
            pids = [int(p) for p in re.search(r"pids=([\d,]+)", b.output()).group(1).split(",")]
            self.assertEqual(len(pids), 2, b.output())
            rc, out = compare(a, b, self.bundle, 120, 10)
            self.assertEqual(rc, 0, out)
            with grpc.insecure_channel(b.addr) as ch:
                check = ch.unary_unary("/grpc.health.v1.Health/Check")  # raw bytes both ways
                self.assertEqual(check(b"", timeout=10), b"\x08\x01")  # status: SERVING
                with self.assertRaises(grpc.RpcError) as e:
                    check(b"\x0a\x04nope", timeout=10)  # service "nope"
                self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
                stub = pb_grpc.RankingStub(ch)
                with grpc.insecure_channel(a.addr) as ca:
                    ref = pb_grpc.RankingStub(ca)
                    for bad in (pb.RecommendRequest(user_id="U00001", k=0),
                                pb.RecommendRequest(user_id="", k=5),
                                pb.RecommendRequest(user_id="U00001", k=5, page_cursor="10@another-bundle"),
                                pb.RecommendRequest(user_id="U00001", k=5, filters={"include_categories": ["nope"]})):
                        for s in (stub, ref):
                            with self.assertRaises(grpc.RpcError) as e:
                                s.Recommend(bad, timeout=10)
                            self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT, bad)
                with self.assertRaises(grpc.RpcError) as e:
                    stub.Recommend(pb.RecommendRequest(user_id="U00001", k=5, explain=True), timeout=10)
                self.assertEqual(e.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
                r = stub.Recommend(pb.RecommendRequest(user_id="U00001", k=5, request_id="mine"), timeout=10)
                self.assertEqual(r.request_id, "mine")
                self.assertEqual(len(r.items), 5)
        finally:
            self.assertEqual(b.close(), 0, b.output())
            self.assertEqual(a.close(), 0, a.output())
        for pid in pids:  # the children went with the parent, which waited for them
            self.assertFalse(os.path.exists("/proc/%d" % pid), pid)


def setUpModule():
    """test_recd.run parses --build and --proto and makes TMP."""
    global ARGS, TMP
    ARGS, TMP = base.ARGS, base.TMP
    ARGS.proto = os.path.abspath(ARGS.proto)


def main():
    return base.run("recd_pyserver.")


if __name__ == "__main__":
    sys.exit(main())
