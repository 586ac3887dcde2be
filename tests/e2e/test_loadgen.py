#!/usr/bin/python3
"""End-to-end tests of bench/recd-loadgen's open loop against a real recd on
127.0.0.1: arrivals at the asked rate, bounded by --max-calls, filters from
--categories, and latency measured from each call's intended send time, so
a server stalled for a second (SIGSTOP) shows a second of latency instead of
fewer calls sent (no coordinated omission).

Usage: /usr/bin/python3 tests/e2e/test_loadgen.py --build BUILD_DIR --proto PROTO_DIR
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_recd as base  # noqa: E402


class OpenLoopTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bundle = os.path.join(base.TMP, "lg")
        base.recctl("synth", "--out", cls.bundle, "--items", "3000", "--users", "300", "--dim", "16",
                    "--categories", "4", "--seed", "4", check=True)
        cls.d = base.Recd(cls.bundle, "--call_log=off")
        cls.users = os.path.join(base.TMP, "users.txt")
        with open(cls.users, "w") as f:
            f.write("".join("U%05d\n" % u for u in range(0, 300, 7)) + "cold-1\n")
        with open(os.path.join(cls.bundle, "items.tsv")) as f:
            next(f)
            cls.cats = sorted({line.split("\t")[1] for line in f})

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    def loadgen(self, *args):
        r = subprocess.run([os.path.join(base.ARGS.build, "bench/recd-loadgen"), "--addr", self.d.addr,
                            "--method", "recommend", "--json", *args], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return json.loads(r.stdout)

    def test_rate_count_and_filters(self):
        out = self.loadgen("--rate", "200", "--arrivals", "constant", "--max-calls", "300", "--warmup-s", "0",
                           "--duration-s", "30", "--users-file", self.users, "--categories", ",".join(self.cats),
                           "--filter-share", "0.5")
        self.assertEqual(out["mode"], "open")
        self.assertEqual(out["calls"], 300)  # --max-calls bounds the run
        self.assertEqual(out["errors"], 0)
        self.assertAlmostEqual(out["offered_per_s"], 200, delta=20)
        self.assertAlmostEqual(out["seconds"], 1.5, delta=0.3)
        # Filtered calls reached recd (a bad category would have failed them).
        self.assertGreater(out["latency_us"]["p50"], 0)

    def test_a_stall_shows_as_latency_not_as_fewer_calls(self):
        def stall():
            time.sleep(1.0)
            os.kill(self.d.proc.pid, signal.SIGSTOP)
            time.sleep(1.0)
            os.kill(self.d.proc.pid, signal.SIGCONT)
        t = threading.Thread(target=stall)
        t.start()
        try:
            out = self.loadgen("--rate", "100", "--arrivals", "poisson", "--warmup-s", "0", "--duration-s", "3",
                               "--concurrency", "8", "--users-file", self.users, "--seed", "7")
        finally:
            t.join()
            os.kill(self.d.proc.pid, signal.SIGCONT)
        # About 300 calls were meant to go in 3 s, and all were sent and answered ...
        self.assertAlmostEqual(out["offered_per_s"], 100, delta=25)
        self.assertEqual(out["errors"], 0)
        # ... and the ~100 due during the stall waited for it: latency counted from
        # when they were due reaches most of a second for a tenth of the calls.
        self.assertGreater(out["latency_us"]["max"], 800000)
        self.assertGreater(out["latency_us"]["p90"], 200000)

    def test_runs_as_sched_batch_unless_told(self):
        """The generator does not preempt the server it shares cores with:
        it runs as SCHED_BATCH, threads included, and says so; --sched
        normal opts out; anything else is refused."""
        args = [os.path.join(base.ARGS.build, "bench/recd-loadgen"), "--addr", self.d.addr, "--method", "health",
                "--json", "--rate", "100", "--max-calls", "150", "--warmup-s", "0", "--duration-s", "30"]
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(0.5)
            policies = set()
            for tid in os.listdir("/proc/%d/task" % p.pid):
                with open("/proc/%d/task/%s/stat" % (p.pid, tid)) as f:
                    policies.add(int(f.read().rsplit(")", 1)[1].split()[38]))  # field 41: policy
            out, err = p.communicate(timeout=60)
        finally:
            p.kill()
            p.wait()
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(policies, {os.SCHED_BATCH})
        self.assertEqual(json.loads(out)["sched"], "batch")
        out = self.loadgen("--rate", "100", "--max-calls", "50", "--warmup-s", "0", "--sched", "normal")
        self.assertEqual(out["sched"], "normal")
        r = subprocess.run(args + ["--sched", "fifo"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown scheduling 'fifo'", r.stderr)


if __name__ == "__main__":
    sys.exit(base.run("recd_loadgen."))
