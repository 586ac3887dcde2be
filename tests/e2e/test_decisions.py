#!/usr/bin/python3
"""End-to-end: recd's decision log and `recctl replay`. A recd with the log
on for every call, an event log and a live catalog serves 1,000 varied
Recommend calls (users known and new, filters, excludes, anchors, pages,
explain) while sessions are recorded through Events.Record and the catalog
changes between calls, in three experiment arms; replay then reproduces
every slate exactly, and a changed settings file shows as differences. Reuses test_recd.py's machinery.

Usage: /usr/bin/python3 tests/e2e/test_decisions.py --build BUILD_DIR --proto PROTO_DIR
"""
import os
import random
import re
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_recd as base  # noqa: E402

pb = base.pb
T = 10  # seconds, per call
CALLS = 1000


def settings(path, popularity):
    with open(path, "w") as f:
        f.write("blend.popularity = %s\n" % popularity)
        f.write("promotions.boost = I05:1.5@2020-01-01T00:00:00Z/2100-01-01T00:00:00Z\n")
        f.write("repurchase.boost = 0.3\n")
    return path


def experiments(path):
    with open(path, "w") as f:
        f.write("layer.ranker.salt = decisions-1\n"
                "layer.ranker.arm.control.share = 4500\n"
                "layer.ranker.arm.lowmmr.share = 4500\n"
                "layer.ranker.arm.lowmmr.set.diversity.mmr_lambda = 0.5\n"
                "layer.ranker.arm.holdout.share = 1000\n"
                "layer.ranker.arm.holdout.holdout = true\n")
    return path


def request(rng, i):
    R, C = pb["ranking"], pb["common"]
    user = rng.choice(["U%02d" % rng.randrange(30), "visitor%d" % rng.randrange(20)])
    q = R.RecommendRequest(user_id=user, k=rng.choice([3, 5, 10]))
    if rng.random() < 0.3:
        q.request_id = "e2e-%d" % i
    if rng.random() < 0.3:
        q.filters.include_categories.append("cat%d" % rng.randrange(3))
    elif rng.random() < 0.2:
        q.filters.exclude_categories.append("cat%d" % rng.randrange(3))
    if rng.random() < 0.2:
        q.filters.price.CopyFrom(C.PriceRange(min_price=8, max_price=40))
    if rng.random() < 0.3:
        q.filters.in_stock_only = True
    if rng.random() < 0.2:
        q.exclude_item_ids.extend("I%02d" % rng.randrange(45) for _ in range(3))
    if rng.random() < 0.2:
        q.anchor_item_ids.append("I%02d" % rng.randrange(45))
    if rng.random() < 0.1:
        q.explain = True
    if rng.random() < 0.1:
        q.context.time_unix_ms = 1700000000000 + rng.randrange(10 ** 9)
    return q


class DecisionLogTest(unittest.TestCase):
    def test_replay_reproduces_1000_calls_and_sees_a_settings_change(self):
        import grpc
        E = pb["events"]
        bundle = base.shop_bundle("shop_decisions")
        conf = settings(os.path.join(base.TMP, "decisions.conf"), "0.2")
        dlog = os.path.join(base.TMP, "decisions.log")
        catlog = os.path.join(base.TMP, "decisions-catalog")
        exps = experiments(os.path.join(base.TMP, "decisions.exp"))
        d = base.Recd(bundle, "--event_log=" + os.path.join(base.TMP, "decisions-events"),
                      "--catalog_log=" + catlog, "--ranking_config=" + conf, "--decision_log=" + dlog,
                      "--decision_log_rate=1", "--experiments=" + exps,
                      "--experiments_state=" + os.path.join(base.TMP, "decisions.state"))
        try:
            events = pb["events_grpc"].EventsStub(d.channel)
            catalog = pb["catalog_grpc"].CatalogStub(d.admin_channel)
            rng = random.Random(15)
            generations, arms, cursors = set(), set(), 0
            for i in range(CALLS):
                if i % 7 == 3:
                    user = "visitor%d" % rng.randrange(20) if rng.random() < 0.6 else "U%02d" % rng.randrange(30)
                    kind = rng.choice([E.EVENT_TYPE_VIEW, E.EVENT_TYPE_PURCHASE])
                    events.Record(E.RecordRequest(events=[E.Event(user_id=user, item_id="I%02d" % rng.randrange(45),
                                                                  type=kind, quantity=1, price=9.0)]), timeout=T)
                if i % 50 == 25:
                    C = pb["catalog"]
                    item = "I%02d" % rng.randrange(45)
                    change = rng.choice([C.CatalogItem(item_id=item, in_stock=rng.random() < 0.5),
                                         C.CatalogItem(item_id=item, price=5.0 + rng.randrange(60)),
                                         C.CatalogItem(item_id="NEW%d" % i, category="cat%d" % (i % 3),
                                                       price=12.0, in_stock=True)])
                    catalog.Upsert(C.UpsertRequest(items=[change]), timeout=T)
                q = request(rng, i)
                r = d.ranking.Recommend(q, timeout=T)
                generations.add(r.catalog_generation)
                arms.update(a.arm for a in r.arms)
                if r.next_cursor and rng.random() < 0.2:  # a second page, from the cursor
                    q2 = pb["ranking"].RecommendRequest()
                    q2.CopyFrom(q)
                    q2.page_cursor = r.next_cursor
                    q2.request_id = ""
                    d.ranking.Recommend(q2, timeout=T)
                    cursors += 1
            self.assertGreater(len(generations), 5, "the catalog changed between calls")
            self.assertEqual(arms, {"control", "lowmmr", "holdout"})
            with self.assertRaises(grpc.RpcError):  # a refused call is not logged
                d.ranking.Recommend(pb["ranking"].RecommendRequest(user_id="", k=3), timeout=T)
        finally:
            self.assertEqual(d.close(), 0, d.output())
        logged = CALLS + cursors

        # Every call: the same slate, item by item and score by score.
        r = base.recctl("replay", "--log", dlog, "--all", "--bundle", bundle, "--catalog-log", catlog)
        self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr)
        self.assertIn("replayed %d records: %d identical, 0 different, 0 not replayed" % (logged, logged), r.stdout)

        # One call by its id.
        r = base.recctl("replay", "--log", dlog, "--request-id", "e2e-3", "--bundle", bundle,
                        "--catalog-log", catlog)
        if "no record" not in r.stderr:
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("e2e-3: identical", r.stdout)
        with open(dlog, "rb") as f:
            rid = re.search(r"(e2e-\d+)", f.read().decode("latin-1")).group(1)
        r = base.recctl("replay", "--log", dlog, "--request-id", rid, "--bundle", bundle, "--catalog-log", catlog)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("%s: identical" % rid, r.stdout)

        # Other settings: the replay says where the slates part.
        other = settings(os.path.join(base.TMP, "decisions-other.conf"), "0.9")
        r = base.recctl("replay", "--log", dlog, "--all", "--bundle", bundle, "--catalog-log", catlog,
                        "--settings", other)
        self.assertEqual(r.returncode, 1, r.stdout[-3000:] + r.stderr)
        self.assertIn("the settings or experiments differ from those logged", r.stdout)
        m = re.search(r"replayed (\d+) records: (\d+) identical, (\d+) different, 0 not replayed", r.stdout)
        self.assertIsNotNone(m, r.stdout[-2000:])
        self.assertGreater(int(m.group(3)), 0)
        self.assertRegex(r.stdout, r"#\d+ (logged \S+ [-0-9.e]+, replayed|\S+ score [-0-9.e]+ -> )")

        # Without the catalog log, calls that saw a later generation are not replayed.
        r = base.recctl("replay", "--log", dlog, "--all", "--bundle", bundle)
        self.assertEqual(r.returncode, 1)
        self.assertIn("give recd's catalog log with --catalog-log DIR", r.stdout)

    def test_rotation_and_a_damaged_record(self):
        bundle = base.shop_bundle("shop_decisions")
        dlog = os.path.join(base.TMP, "rotated.log")
        d = base.Recd(bundle, "--decision_log=" + dlog, "--decision_log_rate=1",
                      "--decision_log_max_bytes=8192", "--decision_log_keep=2")
        try:
            for i in range(200):
                d.ranking.Recommend(pb["ranking"].RecommendRequest(user_id="U%02d" % (i % 30), k=10), timeout=T)
        finally:
            self.assertEqual(d.close(), 0, d.output())
        self.assertTrue(os.path.exists(dlog + ".1") and os.path.exists(dlog + ".2"))
        self.assertFalse(os.path.exists(dlog + ".3"))
        for f in (dlog, dlog + ".1", dlog + ".2"):
            self.assertLessEqual(os.path.getsize(f), 8192)
        r = base.recctl("replay", "--log", dlog + ".1", "--all", "--bundle", bundle)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # A flipped byte in the second record: named by its offset.
        with open(dlog + ".1", "rb") as f:
            data = bytearray(f.read())
        first = 16 + struct.unpack("<I", bytes(data[4:8]))[0]
        data[first + 20] ^= 0xFF
        with open(dlog + ".1", "wb") as f:
            f.write(data)
        r = base.recctl("replay", "--log", dlog + ".1", "--all", "--bundle", bundle)
        self.assertEqual(r.returncode, 1)
        self.assertIn("offset %d: checksum mismatch" % first, r.stdout)


def main():
    return base.run("recd_decisions.")


if __name__ == "__main__":
    sys.exit(main())
