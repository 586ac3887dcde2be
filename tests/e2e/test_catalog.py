#!/usr/bin/python3
"""End-to-end tests of the live catalog (rec.v1.Catalog): stock, prices, new
items and deletions applied while recd serves, effective on the next call,
atomic per batch, durable across SIGKILL, kept across reloads, and sent with
recctl from a CSV. A real recd on 127.0.0.1 over a trained shop bundle (30
users in 3 taste groups, 45 items in categories cat0..cat2; user Unn buys
from category cat(nn % 3)). Reuses test_recd.py's machinery.

Usage: /usr/bin/python3 tests/e2e/test_catalog.py --build BUILD_DIR --proto PROTO_DIR
"""
import os
import re
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_recd as base  # noqa: E402

pb = base.pb
T = 10  # seconds, per call


class CatalogCase(unittest.TestCase):
    def start(self, *extra, log=None):
        bundle = base.shop_bundle("shop_catalog")
        self.log_dir = log or os.path.join(base.TMP, "catlog-%d" % time.monotonic_ns())
        d = base.Recd(bundle, "--catalog_log=" + self.log_dir, *extra)
        self.addCleanup(lambda: d.proc.poll() is None and self.assertEqual(d.close(), 0, d.output()))
        self.d = d
        self.catalog = pb["catalog_grpc"].CatalogStub(d.admin_channel)
        self.ranking = d.ranking
        return d

    def upsert(self, *items):
        return self.catalog.Upsert(pb["catalog"].UpsertRequest(items=list(items)), timeout=T)

    def item(self, item_id, **kw):
        return pb["catalog"].CatalogItem(item_id=item_id, **kw)

    def recommend(self, user="U00", k=10, **kw):
        return self.ranking.Recommend(pb["ranking"].RecommendRequest(user_id=user, k=k, **kw), timeout=T)

    def similar(self, ids, k=10):
        return self.ranking.SimilarItems(pb["ranking"].SimilarItemsRequest(item_ids=ids, k=k), timeout=T)

    def refused(self, code, fn, *args, **kw):
        import grpc
        with self.assertRaises(grpc.RpcError) as cm:
            fn(*args, **kw)
        self.assertEqual(cm.exception.code(), code, cm.exception.details())
        return cm.exception.details()


class EffectiveOnTheNextCallTest(CatalogCase):
    def test_stock_price_and_deletion(self):
        import grpc
        self.start()
        r = self.recommend()
        self.assertEqual(r.catalog_generation, 0)
        top, second = r.items[0].item_id, r.items[1].item_id
        g = self.upsert(self.item(top, in_stock=False))
        self.assertEqual((g.generation, g.applied, g.added), (1, 1, 0))
        r = self.recommend(explain_item_ids=[top])
        self.assertEqual(r.catalog_generation, 1)
        self.assertNotIn(top, [i.item_id for i in r.items])
        self.assertEqual(r.verdicts[0].reason, "out of stock")
        self.assertNotIn(top, [i.item_id for i in self.similar([second], k=40).items])
        # Back in stock: back in the slate.
        self.upsert(self.item(top, in_stock=True))
        self.assertIn(top, [i.item_id for i in self.recommend().items])
        # A price change moves an item across a price filter at once.
        price = pb["common"].PriceRange(min_price=0, max_price=3)
        filt = pb["common"].Filters(price=price)
        r = self.recommend(filters=filt, explain_item_ids=[second])
        self.assertNotIn(second, [i.item_id for i in r.items])
        self.upsert(self.item(second, price=2.5))
        r = self.recommend(filters=filt)
        self.assertIn(second, [i.item_id for i in r.items])
        # A deleted item is gone everywhere: slates, similar items, as a seed.
        self.catalog.Delete(pb["catalog"].DeleteRequest(item_ids=[second]), timeout=T)
        r = self.recommend(k=40, explain_item_ids=[second])
        self.assertNotIn(second, [i.item_id for i in r.items])
        self.assertNotIn(second, [i.item_id for i in self.similar([top], k=40).items])
        self.refused(grpc.StatusCode.INVALID_ARGUMENT, self.similar, [second])
        st = pb["admin_grpc"].AdminStub(self.d.admin_channel).Status(pb["admin"].StatusRequest(), timeout=T)
        self.assertEqual((st.catalog_generation, st.catalog_overlay_items), (4, 2))

    def test_a_new_item_is_served_at_once_and_explained(self):
        self.start("--event_log=" + os.path.join(base.TMP, "ev-%d" % time.monotonic_ns()))
        # U00 buys from cat0: a new cat0 item is in U00's slate and in the
        # similar items of cat0 items within one call.
        g = self.upsert(self.item("NEW-cat0", category="cat0", price=8, name="a new thing"))
        self.assertEqual((g.generation, g.added), (1, 1))
        r = self.recommend("U00", k=10, explain=True)
        ids = [i.item_id for i in r.items]
        self.assertIn("NEW-cat0", ids)
        new = r.items[ids.index("NEW-cat0")]
        rules = {a.rule: a for a in new.explanation.adjustments}
        self.assertIn("new_item", rules)
        self.assertGreater(rules["new_item"].factor, 1)
        self.assertIn("added to the catalog live", rules["new_item"].note)
        # The similar items of cat0's items (I00, I03, ..., I42) are the new one
        # before any item of another category.
        cat0 = ["I%02d" % i for i in range(0, 45, 3)]
        self.assertEqual(self.similar(cat0, k=3).items[0].item_id, "NEW-cat0")
        self.assertIn("embedded_by_item_tower=1", self.d.output())  # the bundle's own item tower
        # Exploration has a cap: of five new cat0 items, at most
        # ceil(0.2 x 10) = 2 on a page of 10.
        self.upsert(*[self.item("NEW-cat0-%d" % i, category="cat0", price=8) for i in range(5)])
        r = self.recommend("U00", k=10)
        self.assertLessEqual(len([i for i in r.items if i.item_id.startswith("NEW-")]), 2)
        # The boost fades with the item's events.
        before = rules["new_item"].factor
        ev = pb["events"].Event(user_id="U01", item_id="NEW-cat0", type=pb["events"].EVENT_TYPE_VIEW)
        events = pb["events_grpc"].EventsStub(self.d.channel)
        events.Record(pb["events"].RecordRequest(events=[ev] * 40), timeout=T)
        r = self.recommend("U00", k=40, explain=True)
        after = [a.factor for i in r.items if i.item_id == "NEW-cat0" for a in i.explanation.adjustments
                 if a.rule == "new_item"]
        self.assertTrue(after and after[0] < before, (before, after))


class PinsTest(CatalogCase):
    def test_a_deleted_or_sold_out_item_loses_its_pin(self):
        conf = os.path.join(base.TMP, "pins-%d.conf" % time.monotonic_ns())
        with open(conf, "w") as f:
            f.write("promotions.pin = I05@1, NEW-pin@2\n")
        self.start("--ranking_config=" + conf)
        self.assertEqual(self.recommend("U00").items[0].item_id, "I05")
        # A pin on an id the catalog does not hold yet takes effect once it is added.
        self.upsert(self.item("NEW-pin", category="cat1", price=9))
        self.assertEqual([i.item_id for i in self.recommend("U00").items[:2]], ["I05", "NEW-pin"])
        self.upsert(self.item("NEW-pin", in_stock=False))
        self.assertNotIn("NEW-pin", [i.item_id for i in self.recommend("U00", k=40).items])
        self.catalog.Delete(pb["catalog"].DeleteRequest(item_ids=["I05"]), timeout=T)
        r = self.recommend("U00", k=40, explain_item_ids=["I05"])
        self.assertNotIn("I05", [i.item_id for i in r.items])
        self.assertEqual(r.verdicts[0].stage, "unknown_item")


class BatchesTest(CatalogCase):
    def test_a_bad_row_fails_the_whole_batch(self):
        import grpc
        self.start()
        top = self.recommend().items[0].item_id
        for items, want in [
                ([self.item(top, in_stock=False), self.item("I01", price=-1)], "items[1].price"),
                ([self.item(top, in_stock=False), self.item("NEW-x", price=3)], "items[1]: new item 'NEW-x' needs"),
                ([self.item(top, in_stock=False), self.item("NEW-y", category="nope", price=3)],
                 "items[1].category: unknown category 'nope'"),
                ([self.item(top, in_stock=False), self.item(top, price=3)], "items[1]: item '%s' is also items[0]" % top),
                ([self.item(top, in_stock=False), self.item("bad\tid", price=3)], "items[1].item_id"),
                ([self.item(top, in_stock=False), self.item("I02", margin=2)], "items[1].margin")]:
            details = self.refused(grpc.StatusCode.INVALID_ARGUMENT, self.upsert, *items)
            self.assertIn(want, details)
            r = self.recommend()
            self.assertEqual(r.catalog_generation, 0)          # nothing applied
            self.assertIn(top, [i.item_id for i in r.items])
        details = self.refused(grpc.StatusCode.INVALID_ARGUMENT, self.catalog.Delete,
                               pb["catalog"].DeleteRequest(item_ids=[top, "no-such-item"]), timeout=T)
        self.assertIn("item_ids[1]: unknown item 'no-such-item'", details)
        self.refused(grpc.StatusCode.INVALID_ARGUMENT, self.upsert)  # an empty batch
        self.assertEqual(self.recommend().catalog_generation, 0)

    def test_only_the_admin_listener_with_a_token_writes(self):
        import grpc
        self.start()
        on_serving = pb["catalog_grpc"].CatalogStub(self.d.channel)
        self.refused(grpc.StatusCode.PERMISSION_DENIED, on_serving.Upsert,
                     pb["catalog"].UpsertRequest(items=[self.item("I01", in_stock=False)]), timeout=T)
        anonymous = pb["catalog_grpc"].CatalogStub(self.d._admin_raw)
        self.refused(grpc.StatusCode.UNAUTHENTICATED, anonymous.Upsert,
                     pb["catalog"].UpsertRequest(items=[self.item("I01", in_stock=False)]), timeout=T)
        self.assertEqual(self.recommend().catalog_generation, 0)
        # The call's log line is written once the call is over: just after the reply.
        pattern, deadline = r'who="anonymous" method=/rec.v1.Catalog/Upsert status=16', time.monotonic() + 10
        while not re.search(pattern, self.d.output()) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertRegex(self.d.output(), pattern)

    def test_without_a_catalog_log_writes_are_refused(self):
        import grpc
        d = base.Recd(base.shop_bundle("shop_catalog"))
        try:
            c = pb["catalog_grpc"].CatalogStub(d.admin_channel)
            details = self.refused(grpc.StatusCode.FAILED_PRECONDITION, c.Upsert,
                                   pb["catalog"].UpsertRequest(items=[self.item("I01", in_stock=False)]), timeout=T)
            self.assertIn("--catalog_log", details)
        finally:
            self.assertEqual(d.close(), 0, d.output())


class PartitionTest(CatalogCase):
    def test_each_shard_applies_only_its_items(self):
        """The same batches go to every retrieval shard (docs/catalog.md); a
        shard holding only its partition (recctl shard) applies its own
        items and acknowledges the others' without holding them."""
        import shutil
        from rec.v1 import retrieval_pb2, retrieval_pb2_grpc
        bundle = base.shop_bundle("shop_catalog")
        split = os.path.join(base.TMP, "shop_catalog_split")
        shutil.rmtree(split, ignore_errors=True)
        base.recctl("shard", "--bundle", bundle, "--shards", "2", "--out", split, check=True)
        held, shards = [], []
        for i in range(2):
            part = os.path.join(split, "shard-%d-of-2" % i)
            with open(os.path.join(part, "items.tsv")) as f:
                held.append({line.split("\t")[0] for line in f.read().splitlines()[1:]})
            d = base.Recd(part, "--role=retrieval", "--shard=%d/2" % i,
                          "--catalog_log=" + os.path.join(base.TMP, "catlog-part-%d-%d" % (i, time.monotonic_ns())))
            self.addCleanup(lambda d=d: d.proc.poll() is None and self.assertEqual(d.close(), 0, d.output()))
            shards.append(d)
        new = ["NEW-%02d" % i for i in range(8)]
        gone = sorted(held[1])[0]  # another shard's item, for shard 0
        for d in shards:
            cat = pb["catalog_grpc"].CatalogStub(d.admin_channel)
            r = cat.Upsert(pb["catalog"].UpsertRequest(items=[self.item(i, category="cat0", price=3) for i in new] +
                                                      [self.item(sorted(held[0])[0], in_stock=False)]), timeout=T)
            self.assertEqual(r.generation, 1)
            cat.Delete(pb["catalog"].DeleteRequest(item_ids=[gone]), timeout=T)
        served = []
        for i, d in enumerate(shards):
            r = retrieval_pb2_grpc.RetrievalStub(d.channel).Retrieve(
                retrieval_pb2.RetrieveRequest(user_id="U00", num_candidates=60, segment=-1), timeout=T)
            ids = {c.item_id for c in r.candidates}
            self.assertLessEqual(ids - set(new), held[i] - {gone})
            served.append(ids & set(new))
        self.assertFalse(served[0] & served[1])        # each new item on one shard
        self.assertEqual(served[0] | served[1], set(new))


class DurableTest(CatalogCase):
    def test_sigkill_restart_and_reload_keep_every_acknowledged_change(self):
        d = self.start()
        top = self.recommend().items[0].item_id
        self.upsert(self.item(top, in_stock=False))
        self.upsert(self.item("NEW-kept", category="cat0", price=9))
        self.catalog.Delete(pb["catalog"].DeleteRequest(item_ids=["I03"]), timeout=T)
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(timeout=T)
        d.close()
        d2 = self.start(log=self.log_dir)
        r = self.recommend(k=40, explain_item_ids=[top, "I03"])
        self.assertEqual(r.catalog_generation, 3)
        ids = [i.item_id for i in r.items]
        self.assertNotIn(top, ids)
        self.assertNotIn("I03", ids)
        self.assertIn("NEW-kept", ids)
        # A reload (the same bundle again) keeps the updates made since its build.
        admin = pb["admin_grpc"].AdminStub(d2.admin_channel)
        admin.Reload(pb["admin"].ReloadRequest(), timeout=60)
        r = self.recommend(k=40)
        self.assertEqual(r.catalog_generation, 3)
        ids = [i.item_id for i in r.items]
        self.assertNotIn(top, ids)
        self.assertIn("NEW-kept", ids)
        self.assertRegex(d2.output(), r'msg="catalog log replayed".*generation=3 items=3')

    def test_a_torn_tail_is_cut_and_damage_stops_recd(self):
        d = self.start()
        self.upsert(self.item("I01", in_stock=False))
        self.upsert(self.item("I02", in_stock=False))
        d.close()
        path = os.path.join(self.log_dir, "catalog.log")
        size = os.path.getsize(path)
        with open(path, "ab") as f:
            f.write(b"RECC\x10\x00\x00")                    # a crash mid-append
        d = self.start(log=self.log_dir)
        self.assertEqual(self.recommend().catalog_generation, 2)
        self.assertIn("torn tail truncated", d.output())
        d.close()
        self.assertEqual(os.path.getsize(path), size)
        with open(path, "r+b") as f:                         # one flipped byte in the first record
            f.seek(20)
            b = f.read(1)
            f.seek(20)
            f.write(bytes([b[0] ^ 0xFF]))
        r = base.subprocess.run([os.path.join(base.ARGS.build, "server/recd"), "--bundle=" + base.shop_bundle("shop_catalog"),
                                 "--listen=127.0.0.1:0", "--admin_listen=127.0.0.1:0", "--admin_grpc_listen=127.0.0.1:0",
                                 "--catalog_log=" + self.log_dir], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("damaged record at byte 0", r.stderr)
        self.assertEqual(os.path.getsize(path), size)     # left as it was


class RecctlTest(CatalogCase):
    def test_recctl_catalog_sends_a_csv(self):
        self.start()
        top = self.recommend().items[0].item_id
        csv = os.path.join(base.TMP, "changes.csv")
        with open(csv, "w") as f:
            f.write('item_id,category,price,in_stock,name\n%s,,,0,\nNEW-csv,cat0,7.5,,"a new, quoted name"\n' % top)
        r = base.recctl("catalog", "upsert", "--csv", csv, "--addr", self.d.admin_addr,
                        "--token-file", base.admin_token_file(), check=True)
        self.assertIn("generation 1: 2 applied (1 new)", r.stdout)
        ids = [i.item_id for i in self.recommend(k=40).items]
        self.assertNotIn(top, ids)
        self.assertIn("NEW-csv", ids)
        r = base.recctl("catalog", "delete", "--id", "NEW-csv", "--addr", self.d.admin_addr,
                        "--token-file", base.admin_token_file(), check=True)
        self.assertIn("generation 2: 1 deleted", r.stdout)
        with open(csv, "w") as f:
            f.write("item_id,in_stock\nI01,perhaps\n")
        r = base.recctl("catalog", "upsert", "--csv", csv, "--addr", self.d.admin_addr,
                        "--token-file", base.admin_token_file())
        self.assertEqual(r.returncode, 1)
        self.assertIn("changes.csv:2: in_stock 'perhaps'", r.stderr)
        self.assertEqual(self.recommend().catalog_generation, 2)


def main():
    return base.run("recd_catalog.")


if __name__ == "__main__":
    sys.exit(main())
