#!/usr/bin/python3
"""Writes the request seeds of tests/fuzz/corpus/rpc: valid rec.v1 requests
packed by protobuf (python3-grpc-tools' protoc), each behind fuzz_rpc's
selector byte (the method in the low 3 bits, bit 3 a deadline already past;
6 is server reflection's ServerReflectionRequest).
The ids match fuzz_rpc's synthetic bundle (60 items P000000.., 40 users
U00000.., categories electronics, books, garden; version synth-11-60).

Usage: /usr/bin/python3 tests/fuzz/seeds.py   (rewrites corpus/rpc/seed-*)
"""
import glob
import os
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
proto = os.path.join(here, "..", "..", "proto")
out = os.path.join(here, "corpus", "rpc")

RECOMMEND, SIMILAR, RETRIEVE, RECORD, STATUS, RELOAD, REFLECT = range(7)
PAST = 8


def main():
    tmp = tempfile.mkdtemp(prefix="recd_seeds.")
    protos = ["rec/v1/common.proto", "rec/v1/ranking.proto", "rec/v1/retrieval.proto",
              "rec/v1/events.proto", "rec/v1/admin.proto", "grpc/reflection/v1/reflection.proto"]
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", proto, "--python_out", tmp] + protos,
                   check=True)
    sys.path.insert(0, tmp)
    from rec.v1 import admin_pb2, common_pb2, events_pb2, ranking_pb2, retrieval_pb2
    import importlib.util  # grpc/reflection/v1 would shadow grpcio's 'grpc': load it by path
    spec = importlib.util.spec_from_file_location("reflection_pb2",
                                                  os.path.join(tmp, "grpc/reflection/v1/reflection_pb2.py"))
    rf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rf)

    filters = common_pb2.Filters(include_categories=["books", "garden"], exclude_categories=["electronics"],
                                 price=common_pb2.PriceRange(min_price=1, max_price=80), in_stock_only=True)
    ev = events_pb2
    seeds = {
        "recommend-known": (RECOMMEND, ranking_pb2.RecommendRequest(
            user_id="U00001", k=5, context=common_pb2.Context(surface="home", device="web",
                                                             time_unix_ms=1700000000000),
            filters=filters, exclude_item_ids=["P000003"], explain=True,
            explain_item_ids=["P000003", "P000010"], request_id="seed-1")),
        "recommend-visitor": (RECOMMEND, ranking_pb2.RecommendRequest(
            user_id="visitor-1", k=3, anchor_item_ids=["P000002", "P000007"])),
        "recommend-page-2": (RECOMMEND, ranking_pb2.RecommendRequest(
            user_id="U00002", k=4, page_cursor="4@synth-11-60")),
        "recommend-late": (RECOMMEND | PAST, ranking_pb2.RecommendRequest(user_id="U00003", k=10)),
        "similar": (SIMILAR, ranking_pb2.SimilarItemsRequest(
            item_ids=["P000001", "P000020"], k=5, filters=filters, exclude_item_ids=["P000002"],
            request_id="seed-2")),
        "retrieve": (RETRIEVE, retrieval_pb2.RetrieveRequest(
            user_id="U00004", num_candidates=20, filters=filters, exclude_item_ids=["P000005"],
            recent_item_ids=["P000006", "P000009"], segment=2)),
        "record": (RECORD, ev.RecordRequest(events=[
            ev.Event(user_id="visitor-2", item_id="P000011", type=ev.EVENT_TYPE_VIEW,
                     time_unix_ms=1700000000000, quantity=1),
            ev.Event(user_id="visitor-2", item_id="P000012", type=ev.EVENT_TYPE_PURCHASE,
                     time_unix_ms=1700000060000, quantity=2, price=19.5)], request_id="seed-3")),
        "status": (STATUS, admin_pb2.StatusRequest()),
        "reload-default": (RELOAD, admin_pb2.ReloadRequest()),
        "reload-path": (RELOAD, admin_pb2.ReloadRequest(bundle_path="/nonexistent/bundle")),
        "reflect-list": (REFLECT, rf.ServerReflectionRequest(host="h", list_services="")),
        "reflect-symbol": (REFLECT, rf.ServerReflectionRequest(file_containing_symbol="rec.v1.RecommendRequest")),
        "reflect-file": (REFLECT, rf.ServerReflectionRequest(file_by_filename="rec/v1/retrieval.proto")),
        "reflect-extension": (REFLECT, rf.ServerReflectionRequest(
            file_containing_extension=rf.ExtensionRequest(containing_type="rec.v1.Event", extension_number=9))),
    }
    for old in glob.glob(os.path.join(out, "seed-*")):
        os.remove(old)
    os.makedirs(out, exist_ok=True)
    for name, (selector, msg) in seeds.items():
        with open(os.path.join(out, "seed-" + name), "wb") as f:
            f.write(bytes([selector]) + msg.SerializeToString())
    print("wrote %d seeds to %s" % (len(seeds), out))


if __name__ == "__main__":
    main()
