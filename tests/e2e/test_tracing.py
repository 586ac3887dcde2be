#!/usr/bin/python3
"""End-to-end: W3C trace context through recd. A ranking process and a
retrieval shard on loopback; a call with a traceparent is logged under its
trace id by both tiers, the shard's line under a span of its own whose
parent is neither the caller's span nor the ranking tier's; a sampled call
logs its stages and goes to the decision log at rate 0; invalid
traceparents start a new trace and never show up in a log; x-request-id
comes back as metadata. Reuses test_recd.py's machinery.

Usage: /usr/bin/python3 tests/e2e/test_tracing.py --build BUILD_DIR --proto PROTO_DIR
"""
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_recd as base  # noqa: E402

pb = base.pb
T = 10
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"

INVALID = [
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # upper case
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",  # version 00 with more
    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",   # short trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",  # not hex
    "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",  # separators
    "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",  # a later version, no '-' after
    "",
]


def call_lines(d, method, request_id, timeout=10):
    """The call log lines of 'method' for 'request_id' (they come after the reply)."""
    pat = re.compile(r'.*msg="call" method=%s .*request_id="%s".*' % (re.escape(method), re.escape(request_id)))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = pat.findall(d.output())
        if lines:
            return lines
        time.sleep(0.05)
    raise AssertionError("no %s line for %s:\n%s" % (method, request_id, d.output()[-3000:]))


def field(line, name):
    m = re.search(r"\b%s=(\S+)" % name, line)
    return m.group(1) if m else None


class TracingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bundle = base.shop_bundle("shop_tracing")
        cls.dlog = os.path.join(base.TMP, "traced.log")
        cls.shard = base.Recd(cls.bundle, "--role=retrieval", "--shard=0/1")
        slow = ["--retrieval_timeout_ms=3000"] if "TSAN_OPTIONS" in os.environ else []
        # --slow_call_ms=0: only sampling adds the stage timings to a line. With
        # the default (50 ms) an unsampled call that a busy machine makes slow
        # (the first one also connects to the shard) logs them as well.
        cls.rank = base.Recd(cls.bundle, "--role=ranking", "--retrieval=" + cls.shard.addr,
                             "--decision_log=" + cls.dlog, "--decision_log_rate=0", "--slow_call_ms=0", *slow)

    @classmethod
    def tearDownClass(cls):
        assert cls.rank.close() == 0, cls.rank.output()
        assert cls.shard.close() == 0, cls.shard.output()

    def recommend(self, metadata, request_id="", user="U04"):
        q = pb["ranking"].RecommendRequest(user_id=user, k=5, request_id=request_id)
        return self.rank.ranking.Recommend.with_call(q, metadata=metadata, timeout=T)

    def test_trace_crosses_the_tiers(self):
        tp = "00-%s-%s-01" % (TRACE, PARENT)
        r, call = self.recommend([("traceparent", tp), ("x-request-id", "trace-cross-1")])
        self.assertEqual(len(r.items), 5)
        self.assertEqual(r.request_id, "trace-cross-1")  # the metadata's id, with no request_id field
        self.assertIn(("x-request-id", "trace-cross-1"), tuple(call.initial_metadata()))
        line = call_lines(self.rank, "/rec.v1.Ranking/Recommend", "trace-cross-1")[-1]
        self.assertEqual(field(line, "trace_id"), TRACE)
        self.assertEqual(field(line, "parent_id"), PARENT)
        self.assertEqual(field(line, "sampled"), "1")
        span = field(line, "span_id")
        self.assertRegex(span, r"^[0-9a-f]{16}$")
        self.assertNotEqual(span, PARENT)
        for stage in ("tower_ms", "ann_ms", "itemcf_ms", "sources_ms", "rank_ms", "mmr_ms"):
            self.assertRegex(line, r"\b%s=[0-9.]+" % stage)  # sampled: the stages are in the line
        shard_lines = call_lines(self.shard, "/rec.v1.Retrieval/Retrieve", "trace-cross-1")
        for sl in shard_lines:
            self.assertEqual(field(sl, "trace_id"), TRACE)
            self.assertNotIn(field(sl, "parent_id"), (PARENT, span, "-"))
            self.assertNotIn(field(sl, "span_id"), (PARENT, span))
            self.assertRegex(sl, r"\bann_ms=[0-9.]+")
        # Sampled by its caller: in the decision log although its rate is 0.
        self.rank.ranking.Recommend(pb["ranking"].RecommendRequest(user_id="U05", k=3), timeout=T)
        deadline = time.monotonic() + 10
        while True:
            with open(self.dlog, "rb") as f:
                data = f.read()
            if TRACE.encode() in data or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertIn(TRACE.encode(), data)
        self.assertIn(b"trace-cross-1", data)
        self.assertEqual(data.count(b"RDL1"), 1)  # the untraced call at rate 0 is not logged

    def test_no_traceparent_starts_a_trace(self):
        r, _ = self.recommend([], request_id="trace-none-1")
        line = call_lines(self.rank, "/rec.v1.Ranking/Recommend", "trace-none-1")[-1]
        self.assertRegex(field(line, "trace_id"), r"^[0-9a-f]{32}$")
        self.assertEqual(field(line, "parent_id"), "-")
        self.assertEqual(field(line, "sampled"), "0")
        shard_line = call_lines(self.shard, "/rec.v1.Retrieval/Retrieve", "trace-none-1")[-1]
        self.assertEqual(field(shard_line, "trace_id"), field(line, "trace_id"))

    def test_a_later_version_is_read_by_its_first_fields(self):
        tp = "cc-%s-%s-00-vendor-extra" % (TRACE.replace("4b", "5c"), PARENT)
        self.recommend([("traceparent", tp)], request_id="trace-later-1")
        line = call_lines(self.rank, "/rec.v1.Ranking/Recommend", "trace-later-1")[-1]
        self.assertEqual(field(line, "trace_id"), TRACE.replace("4b", "5c"))
        self.assertEqual(field(line, "sampled"), "0")
        self.assertNotIn("tower_ms", line)  # not sampled, and slow calls log nothing here

    def test_invalid_traceparents_start_new_traces_never_echoed(self):
        for i, bad in enumerate(INVALID):
            rid = "trace-bad-%d" % i
            r, call = self.recommend([("traceparent", bad)], request_id=rid)
            self.assertEqual(len(r.items), 5)
            line = call_lines(self.rank, "/rec.v1.Ranking/Recommend", rid)[-1]
            tid = field(line, "trace_id")
            self.assertRegex(tid, r"^[0-9a-f]{32}$")
            self.assertNotIn(tid, (TRACE, TRACE[:31]), bad)
            self.assertEqual(field(line, "parent_id"), "-", bad)
            for key, value in call.initial_metadata():
                self.assertNotIn(PARENT, value)
        out = self.rank.output() + self.shard.output()
        for bad in INVALID:
            if bad:
                self.assertNotIn(bad, out)
        self.assertNotIn(PARENT.upper(), out)


def main():
    return base.run("recd_tracing.")


if __name__ == "__main__":
    sys.exit(main())
