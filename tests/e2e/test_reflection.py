#!/usr/bin/python3
"""End-to-end tests of gRPC server reflection (grpc.reflection.v1 and
v1alpha) on a real recd: a grpcio client that has none of recd's .proto
files lists the services, fetches the descriptors of a symbol, builds the
messages from them and calls Ranking.Recommend with them. The reflection
messages themselves are compiled from proto/grpc/reflection at test time
(the client side of the protocol, as grpcurl has it built in). Reuses
test_recd.py's machinery.

Usage: /usr/bin/python3 tests/e2e/test_reflection.py --build BUILD_DIR --proto PROTO_DIR
"""
import importlib.util
import os
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_recd as base  # noqa: E402

refl = {}  # "v1" / "v1alpha" -> reflection_pb2


def reflection_stubs():
    """reflection_pb2 for both packages, compiled into TMP and loaded by path
    (a 'grpc' package of our own would shadow grpcio's)."""
    if refl:
        return refl
    out = os.path.join(base.TMP, "refl")
    os.makedirs(out, exist_ok=True)
    for v in ("v1", "v1alpha"):
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", os.path.abspath(base.ARGS.proto),
                        "--python_out", out, "grpc/reflection/%s/reflection.proto" % v], check=True)
        spec = importlib.util.spec_from_file_location(
            "reflection_%s_pb2" % v, os.path.join(out, "grpc/reflection/%s/reflection_pb2.py" % v))
        m = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(m)
        refl[v] = m
    return refl


def info(channel, version, requests, metadata=None, timeout=10):
    """One ServerReflectionInfo stream: sends 'requests', half-closes, returns
    every answer."""
    m = reflection_stubs()[version]
    call = channel.stream_stream("/grpc.reflection.%s.ServerReflection/ServerReflectionInfo" % version,
                                 request_serializer=m.ServerReflectionRequest.SerializeToString,
                                 response_deserializer=m.ServerReflectionResponse.FromString)
    return list(call(iter(requests), timeout=timeout, metadata=metadata))


def req(version, **kw):
    return reflection_stubs()[version].ServerReflectionRequest(**kw)


def pool_of(file_descriptor_protos):
    """A descriptor pool of the files an answer carries (imports before
    their importers, whatever the order they came in)."""
    from google.protobuf import descriptor_pb2, descriptor_pool
    files = {}
    for raw in file_descriptor_protos:
        fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
        files[fd.name] = fd
    pool = descriptor_pool.DescriptorPool()
    added = set()

    def add(name):
        if name in added:
            return
        for dep in files[name].dependency:
            add(dep)
        pool.Add(files[name])
        added.add(name)
    for name in files:
        add(name)
    return pool


class ReflectionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bundle = os.path.join(base.TMP, "bundle")
        if not os.path.exists(cls.bundle):
            base.recctl("synth", "--out", cls.bundle, "--items", "500", "--users", "50", "--dim", "16",
                        "--seed", "3", check=True)
        cls.recd = base.Recd(cls.bundle)

    @classmethod
    def tearDownClass(cls):
        # recd stops cleanly after everything the tests did (a sanitizer's report would make it exit non-zero).
        cls.recd.close_clean()

    def test_lists_the_services_served(self):
        for v in ("v1", "v1alpha"):
            (r,) = info(self.recd.channel, v, [req(v, host="h", list_services="")])
            self.assertEqual(r.WhichOneof("message_response"), "list_services_response")
            self.assertEqual(r.valid_host, "h")
            self.assertEqual(r.original_request.list_services, "")
            names = [s.name for s in r.list_services_response.service]
            self.assertEqual(names, ["rec.v1.Ranking", "rec.v1.Retrieval", "rec.v1.Events", "grpc.health.v1.Health",
                                     "grpc.reflection.v1.ServerReflection",
                                     "grpc.reflection.v1alpha.ServerReflection"], v)

    def assert_listed_are_served(self, channel, metadata=None):
        """Every method of every listed service, called with an empty request
        built from the reflected descriptors, is answered by a handler: no
        UNIMPLEMENTED, no PERMISSION_DENIED pointing elsewhere."""
        import grpc
        from google.protobuf import message_factory
        (r,) = info(channel, "v1", [req("v1", list_services="")], metadata=metadata)
        names = [x.name for x in r.list_services_response.service]
        called = 0
        for name in names:
            if name.startswith("grpc.reflection."):
                continue  # a stream, exercised by every test here
            (f,) = info(channel, "v1", [req("v1", file_containing_symbol=name)], metadata=metadata)
            pool = pool_of(f.file_descriptor_response.file_descriptor_proto)
            factory = message_factory.MessageFactory(pool)
            for method in pool.FindServiceByName(name).methods:
                if method.name == "Watch":
                    continue  # a server stream that never ends by itself
                Req = factory.GetPrototype(method.input_type)
                Resp = factory.GetPrototype(method.output_type)
                call = channel.unary_unary("/%s/%s" % (name, method.name), request_serializer=Req.SerializeToString,
                                           response_deserializer=Resp.FromString)
                try:
                    call(Req(), timeout=10, metadata=metadata)
                except grpc.RpcError as e:
                    self.assertNotIn(e.code(), (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.PERMISSION_DENIED),
                                     "%s/%s: %s" % (name, method.name, e.details()))
                called += 1
        return names, called

    def test_every_listed_service_is_served_in_every_role(self):
        names, called = self.assert_listed_are_served(self.recd.channel)
        self.assertGreaterEqual(called, 5)
        shard = base.Recd(self.bundle, "--role=retrieval", "--shard=0/2")
        try:
            self.assertEqual(self.assert_listed_are_served(shard.channel)[0], names)
            rank = base.Recd(self.bundle, "--role=ranking", "--retrieval=" + shard.addr)
            try:
                self.assertEqual(self.assert_listed_are_served(rank.channel)[0], names)
            finally:
                rank.close()
        finally:
            shard.close()
        admin, _ = self.assert_listed_are_served(self.recd._admin_raw,
                                                 metadata=[("authorization", "Bearer " + base.ADMIN_TOKEN)])
        self.assertIn("rec.v1.Admin", admin)

    def test_admin_listener_lists_its_own_behind_the_token(self):
        import grpc
        with self.assertRaises(grpc.RpcError) as e:
            info(self.recd._admin_raw, "v1", [req("v1", list_services="")])
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        (r,) = info(self.recd._admin_raw, "v1", [req("v1", list_services="")],
                    metadata=[("authorization", "Bearer " + base.ADMIN_TOKEN)])
        names = [s.name for s in r.list_services_response.service]
        self.assertEqual(names[:2], ["rec.v1.Admin", "rec.v1.Catalog"])

    def test_descriptor_for_a_symbol_builds_a_working_call(self):
        """What grpcurl does: the file of rec.v1.Ranking and its imports, a
        request message built from them, a call, an answer decoded with them."""
        from google.protobuf import message_factory
        (r,) = info(self.recd.channel, "v1", [req("v1", file_containing_symbol="rec.v1.Ranking")])
        self.assertEqual(r.WhichOneof("message_response"), "file_descriptor_response", r)
        fdr = r.file_descriptor_response.file_descriptor_proto
        pool = pool_of(fdr)
        svc = pool.FindServiceByName("rec.v1.Ranking")
        self.assertEqual(svc.file.name, "rec/v1/ranking.proto")
        self.assertIn("rec/v1/common.proto", [pool.FindFileByName(n).name for n in ("rec/v1/common.proto",)])
        method = svc.methods_by_name["Recommend"]
        factory = message_factory.MessageFactory(pool)
        Req = factory.GetPrototype(method.input_type)
        Resp = factory.GetPrototype(method.output_type)
        call = self.recd.channel.unary_unary("/rec.v1.Ranking/Recommend", request_serializer=Req.SerializeToString,
                                             response_deserializer=Resp.FromString)
        resp = call(Req(user_id="U00001", k=5), timeout=10)
        self.assertEqual(len(resp.items), 5)
        self.assertTrue(all(i.item_id for i in resp.items))
        # The comments travel too: generic clients show them.
        from google.protobuf import descriptor_pb2
        fd = descriptor_pb2.FileDescriptorProto.FromString(fdr[0])
        self.assertEqual(fd.name, "rec/v1/ranking.proto")
        self.assertTrue(any(loc.leading_comments for loc in fd.source_code_info.location))

    def test_symbols_of_every_kind_and_files_by_name(self):
        cases = {"rec.v1.Ranking.Recommend": "rec/v1/ranking.proto",          # method
                 "rec.v1.RecommendRequest": "rec/v1/ranking.proto",           # message
                 "rec.v1.RecommendRequest.user_id": "rec/v1/ranking.proto",   # field
                 "rec.v1.EventType": "rec/v1/events.proto",                   # enum
                 "rec.v1.EVENT_TYPE_PURCHASE": "rec/v1/events.proto",         # enum value
                 "grpc.health.v1.HealthCheckResponse.ServingStatus": "grpc/health/v1/health.proto",  # nested enum
                 "grpc.health.v1.Health": "grpc/health/v1/health.proto",
                 "grpc.reflection.v1alpha.ServerReflection": "grpc/reflection/v1alpha/reflection.proto"}
        answers = info(self.recd.channel, "v1", [req("v1", file_containing_symbol=s) for s in cases])
        self.assertEqual(len(answers), len(cases))
        from google.protobuf import descriptor_pb2
        for (sym, want), r in zip(cases.items(), answers):
            self.assertEqual(r.WhichOneof("message_response"), "file_descriptor_response", sym)
            first = descriptor_pb2.FileDescriptorProto.FromString(r.file_descriptor_response.file_descriptor_proto[0])
            self.assertEqual(first.name, want, sym)
        (r,) = info(self.recd.channel, "v1alpha", [req("v1alpha", file_by_filename="rec/v1/retrieval.proto")])
        names = [descriptor_pb2.FileDescriptorProto.FromString(b).name
                 for b in r.file_descriptor_response.file_descriptor_proto]
        self.assertEqual(names, ["rec/v1/retrieval.proto", "rec/v1/common.proto"])

    def test_unknown_and_unsupported_questions_are_error_responses(self):
        import grpc
        asks = [req("v1", file_containing_symbol="rec.v1.NoSuchThing"),
                req("v1", file_by_filename="rec/v1/nope.proto"),
                req("v1", file_containing_extension=refl["v1"].ExtensionRequest(containing_type="rec.v1.Event",
                                                                                 extension_number=100)),
                req("v1", all_extension_numbers_of_type="rec.v1.Event"),
                req("v1", host="only-a-host"),
                req("v1", list_services="")]
        answers = info(self.recd.channel, "v1", asks)
        codes = [r.error_response.error_code if r.WhichOneof("message_response") == "error_response" else 0
                 for r in answers]
        self.assertEqual(codes, [grpc.StatusCode.NOT_FOUND.value[0]] * 4 +
                         [grpc.StatusCode.INVALID_ARGUMENT.value[0], 0])
        self.assertIn("rec.v1.NoSuchThing", answers[0].error_response.error_message)
        self.assertEqual(answers[0].original_request.file_containing_symbol, "rec.v1.NoSuchThing")

    def test_bad_bytes_and_big_requests_answered_and_stream_goes_on(self):
        """Garbage and an oversized request get error_responses; the stream
        still answers after them; recd stays up."""
        m = reflection_stubs()["v1"]
        call = self.recd.channel.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                               request_serializer=lambda b: b,
                                               response_deserializer=m.ServerReflectionResponse.FromString)
        ok = req("v1", list_services="").SerializeToString()
        big = req("v1", file_containing_symbol="x" * 20000).SerializeToString()
        answers = list(call(iter([b"\xff\xff\xff", big, ok]), timeout=10))
        self.assertEqual([r.WhichOneof("message_response") for r in answers],
                         ["error_response", "error_response", "list_services_response"])
        self.assertEqual(answers[0].error_response.error_code, 3)  # INVALID_ARGUMENT
        self.assertEqual(answers[1].error_response.error_code, 8)  # RESOURCE_EXHAUSTED
        self.assertIsNone(self.recd.proc.poll())

    def test_stream_is_bounded(self):
        import grpc
        asks = [req("v1", list_services="")] * 1001
        m = reflection_stubs()["v1"]
        call = self.recd.channel.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                               request_serializer=m.ServerReflectionRequest.SerializeToString,
                                               response_deserializer=m.ServerReflectionResponse.FromString)
        got = 0
        with self.assertRaises(grpc.RpcError) as e:
            for _ in call(iter(asks), timeout=30):
                got += 1
        self.assertEqual(e.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(got, 1000)

    def test_open_streams_are_capped(self):
        """64 streams held open on a listener; the 65th is refused at once;
        one closing makes room; other calls go on meanwhile."""
        import grpc
        m = reflection_stubs()["v1"]
        method = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        rec = base.Recd(self.bundle)
        held = []
        try:
            def open_one():
                ev = threading.Event()

                def gen():
                    yield req("v1", list_services="")
                    ev.wait(60)
                call = rec.channel.stream_stream(method, request_serializer=m.ServerReflectionRequest.SerializeToString,
                                                 response_deserializer=m.ServerReflectionResponse.FromString)
                it = call(gen(), timeout=60)
                first = next(it)
                held.append((it, ev))
                return first
            for _ in range(64):
                self.assertEqual(open_one().WhichOneof("message_response"), "list_services_response")
            with self.assertRaises(grpc.RpcError) as e:
                info(rec.channel, "v1", [req("v1", list_services="")])
            self.assertEqual(e.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn("64 reflection streams", e.exception.details())
            r = rec.ranking.Recommend(base.pb["ranking"].RecommendRequest(user_id="U00001", k=3), timeout=10)
            self.assertEqual(len(r.items), 3)
            it, ev = held.pop()
            ev.set()  # that client half-closes: its stream ends OK
            self.assertEqual(list(it), [])
            deadline = time.monotonic() + 10
            while True:  # the server frees the slot once the stream's last batch is done
                try:
                    (r,) = info(rec.channel, "v1", [req("v1", list_services="")])
                    break
                except grpc.RpcError as e:
                    if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            self.assertEqual(r.WhichOneof("message_response"), "list_services_response")
        finally:
            for it, ev in held:
                ev.set()
            self.assertEqual(rec.close(), 0, rec.output())

    def test_cancelled_and_idle_streams_end_cleanly(self):
        """A client that cancels mid-stream, and many that stop at once:
        recd keeps serving reflection and everything else, and stops cleanly."""
        import grpc
        m = reflection_stubs()["v1"]
        method = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        for _ in range(20):
            ev = threading.Event()

            def gen():
                yield req("v1", list_services="")
                ev.wait(5)  # the client holds the stream open, then cancels it
            call = self.recd.channel.stream_stream(method, request_serializer=m.ServerReflectionRequest.SerializeToString,
                                                   response_deserializer=m.ServerReflectionResponse.FromString)
            it = call(gen(), timeout=10)
            next(it)
            it.cancel()
            ev.set()
        (r,) = info(self.recd.channel, "v1", [req("v1", list_services="")])
        self.assertEqual(r.WhichOneof("message_response"), "list_services_response")
        # Streams held open while recd stops are cancelled, and recd exits 0.
        rec = base.Recd(self.bundle)
        try:
            held = []
            for _ in range(3):
                call = rec.channel.stream_stream(method, request_serializer=m.ServerReflectionRequest.SerializeToString,
                                                 response_deserializer=m.ServerReflectionResponse.FromString)
                ev = threading.Event()

                def hold(ev=ev):
                    yield req("v1", list_services="")
                    ev.wait(30)
                it = call(hold(), timeout=60)
                next(it)
                held.append((it, ev))
            t0 = time.monotonic()
            rc = rec.close()
            self.assertEqual(rc, 0, rec.output())
            self.assertLess(time.monotonic() - t0, 14)
            for it, ev in held:
                ev.set()
                with self.assertRaises(grpc.RpcError):
                    next(it)
        finally:
            rec.close()


if __name__ == "__main__":
    sys.exit(base.run("recd_refl."))
