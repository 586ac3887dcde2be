#!/usr/bin/python3
"""End-to-end tests of recd's security surface: TLS and mutual TLS on the gRPC
listeners, the authenticated admin listener (tokens, client-certificate
identities), the admin HTTP port's bearer tokens, reloads confined to the
bundle root, certificates re-read on SIGHUP, mTLS from the ranking tier to
its shards, and recctl's TLS and token options.

Every certificate is made here with the openssl CLI; every process listens on
127.0.0.1 only, on ports the kernel picks. Reuses test_recd.py's machinery.

Usage: /usr/bin/python3 tests/e2e/test_security.py --build BUILD_DIR --proto PROTO_DIR
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_recd as base  # noqa: E402

pb = base.pb
RPC_TIMEOUT = 10  # seconds, for calls expected to succeed
FAIL_TIMEOUT = 5  # seconds, for calls expected to be refused


def recd_bin():
    return os.path.join(base.ARGS.build, "server/recd")


# --- certificates ----------------------------------------------------------

_CERTS = {}


def _openssl(*args):
    r = subprocess.run(["openssl"] + list(args), capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("openssl %s failed: %s" % (" ".join(args), r.stderr))


def _make_ca(d, name, cn):
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".crt")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
             "-days", "2", "-subj", "/CN=" + cn,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return key, crt


def _make_leaf(d, name, subj, ca_key, ca_crt, serial, server):
    key, csr, crt = (os.path.join(d, name + ext) for ext in (".key", ".csr", ".crt"))
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n")
        f.write("keyUsage=critical,digitalSignature,keyEncipherment\n")
        if server:
            f.write("extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
        else:
            f.write("extendedKeyUsage=clientAuth\n")
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", subj)
    _openssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-set_serial", str(serial),
             "-days", "2", "-out", crt, "-extfile", ext)
    return key, crt


def certs():
    """Paths of: ca, ca2 (another CA), server (CN=server, SAN IP:127.0.0.1 and
    DNS:localhost, by ca), server2 (the same by ca2), ops (client CN=ops,O=shop
    by ca), guest (client CN=guest by ca, on no allow list), intruder (client
    CN=intruder by ca2). Each as name -> {"crt", "key"}; made once."""
    if _CERTS:
        return _CERTS
    d = os.path.join(base.TMP, "certs")
    os.makedirs(d)
    ca_key, ca_crt = _make_ca(d, "ca", "e2e-ca")
    ca2_key, ca2_crt = _make_ca(d, "ca2", "e2e-other-ca")
    out = {"ca": {"crt": ca_crt, "key": ca_key}, "ca2": {"crt": ca2_crt, "key": ca2_key}}
    for n, (name, subj, by, server) in enumerate([
            ("server", "/CN=server", "ca", True),
            ("server2", "/CN=server", "ca2", True),
            ("ops", "/O=shop/CN=ops", "ca", False),
            ("guest", "/O=shop/CN=guest", "ca", False),
            ("intruder", "/CN=intruder", "ca2", False)]):
        key, crt = _make_leaf(d, name, subj, out[by]["key"], out[by]["crt"], 1000 + n, server)
        out[name] = {"crt": crt, "key": key}
    _CERTS.update(out)
    return _CERTS


def read(path):
    with open(path, "rb") as f:
        return f.read()


def tls_args(client_ca=None, client_auth=None, server="server"):
    c = certs()
    a = ["--tls_cert=" + c[server]["crt"], "--tls_key=" + c[server]["key"]]
    if client_ca:
        a.append("--tls_client_ca=" + c[client_ca]["crt"])
    if client_auth:
        a.append("--tls_client_auth=" + client_auth)
    return a


# A channel of its own per test channel, so that no connection (or failed
# handshake) is shared between channels with different credentials.
CHANNEL_OPTS = [("grpc.use_local_subchannel_pool", 1)]


def secure_channel(addr, ca="ca", client=None):
    import grpc
    c = certs()
    creds = grpc.ssl_channel_credentials(
        root_certificates=read(c[ca]["crt"]),
        private_key=read(c[client]["key"]) if client else None,
        certificate_chain=read(c[client]["crt"]) if client else None)
    return grpc.secure_channel(addr, creds, options=CHANNEL_OPTS)


def insecure_channel(addr):
    import grpc
    return grpc.insecure_channel(addr, options=CHANNEL_OPTS)


def small_bundle(name="sec_small", seed=1):
    d = os.path.join(base.TMP, name)
    if not os.path.exists(d):
        base.recctl("synth", "--out", d, "--items", "500", "--users", "50", "--seed", str(seed), check=True)
    return d


def token_file(name, content, mode=0o600):
    path = os.path.join(base.TMP, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    os.chmod(path, mode)  # whatever the umask
    return path


def recommend(channel, user="U00001", k=5, timeout=RPC_TIMEOUT):
    stub = pb["ranking_grpc"].RankingStub(channel)
    return stub.Recommend(pb["ranking"].RecommendRequest(user_id=user, k=k), timeout=timeout)


def admin_status(channel, timeout=RPC_TIMEOUT):
    return pb["admin_grpc"].AdminStub(channel).Status(pb["admin"].StatusRequest(), timeout=timeout)


def admin_reload(channel, path, timeout=60):
    return pb["admin_grpc"].AdminStub(channel).Reload(pb["admin"].ReloadRequest(bundle_path=path),
                                                      timeout=timeout)


def wait_log(d, pattern, timeout=5):
    """The first match of 'pattern' in recd d's output, waiting for it a while
    (the log line of a call may land just after its reply)."""
    deadline = time.monotonic() + timeout
    while True:
        m = re.search(pattern, d.output(), re.M)
        if m or time.monotonic() > deadline:
            return m
        time.sleep(0.05)


class Case(unittest.TestCase):
    def refused(self, code, fn, *args, **kw):
        """Calls fn, which must fail with 'code'; returns the details."""
        import grpc
        with self.assertRaises(grpc.RpcError) as cm:
            fn(*args, **kw)
        self.assertEqual(cm.exception.code(), code, cm.exception.details())
        return cm.exception.details() or ""

    def start(self, *args, **kw):
        """A base.Recd stopped (and checked to exit 0) when the test ends."""
        d = base.Recd(*args, **kw)
        self.addCleanup(self._stop, d)
        return d

    def _stop(self, d):
        rc = d.close()
        self.assertEqual(rc, 0, d.output())

    def channel(self, ch):
        self.addCleanup(ch.close)
        return ch


# --- 1, 2: TLS and mutual TLS on the serving port -----------------------------

class TlsTest(Case):
    def test_tls_serves_and_plaintext_is_refused(self):
        import grpc
        d = self.start(small_bundle(), *tls_args())
        self.assertRegex(d.output(), r'msg="listening".* tls=on ')
        r = recommend(self.channel(secure_channel(d.addr)))
        self.assertEqual(len(r.items), 5)
        # A client trusting another CA does not accept the server.
        self.refused(grpc.StatusCode.UNAVAILABLE, recommend,
                     self.channel(secure_channel(d.addr, ca="ca2")), timeout=FAIL_TIMEOUT)
        t0 = time.monotonic()
        self.refused(grpc.StatusCode.UNAVAILABLE, recommend, self.channel(insecure_channel(d.addr)),
                     timeout=FAIL_TIMEOUT)
        self.assertLess(time.monotonic() - t0, FAIL_TIMEOUT)
        # Still serving TLS clients after the refusals.
        self.assertEqual(len(recommend(self.channel(secure_channel(d.addr))).items), 5)


class MutualTlsTest(Case):
    def test_client_certificate_required(self):
        import grpc
        d = self.start(small_bundle(), *tls_args(client_ca="ca", client_auth="require"))
        self.assertRegex(d.output(), r'msg="listening".* tls=mtls ')
        r = recommend(self.channel(secure_channel(d.addr, client="ops")))
        self.assertEqual(len(r.items), 5)
        self.refused(grpc.StatusCode.UNAVAILABLE, recommend, self.channel(secure_channel(d.addr)),
                     timeout=FAIL_TIMEOUT)
        self.refused(grpc.StatusCode.UNAVAILABLE, recommend,
                     self.channel(secure_channel(d.addr, client="intruder")), timeout=FAIL_TIMEOUT)
        self.refused(grpc.StatusCode.UNAVAILABLE, recommend, self.channel(insecure_channel(d.addr)),
                     timeout=FAIL_TIMEOUT)
        self.assertEqual(len(recommend(self.channel(secure_channel(d.addr, client="ops"))).items), 5)


# --- 3, 4: the admin listener ------------------------------------------------

class AdminAuthTest(Case):
    def test_tokens_on_the_admin_listener_and_nothing_on_the_serving_port(self):
        import grpc
        d = self.start(small_bundle())
        raw = self.channel(insecure_channel(d.admin_addr))
        details = self.refused(grpc.StatusCode.UNAUTHENTICATED, admin_status, raw)
        self.assertNotIn(base.ADMIN_TOKEN, details)
        wrong = base.ADMIN_TOKEN[:-1] + ("x" if base.ADMIN_TOKEN[-1] != "x" else "y")
        details = self.refused(grpc.StatusCode.UNAUTHENTICATED, admin_status, base.with_token(raw, wrong))
        self.assertNotIn(base.ADMIN_TOKEN, details)
        self.refused(grpc.StatusCode.UNAUTHENTICATED, admin_status, base.with_token(raw, "x" * 16))
        st = admin_status(d.admin_channel)
        self.assertEqual(st.item_count, 500)
        self.assertTrue(st.serving)
        # The serving port has no admin RPCs, token or not.
        for ch in (d.channel, base.with_token(d.channel, base.ADMIN_TOKEN)):
            self.refused(grpc.StatusCode.PERMISSION_DENIED, admin_status, ch)
            self.refused(grpc.StatusCode.PERMISSION_DENIED, admin_reload, ch, small_bundle())
            self.refused(grpc.StatusCode.PERMISSION_DENIED, admin_reload, ch, "")
        # Who called is logged, the token never.
        ok = wait_log(d, r'^.*msg="admin call".*who="token:e2e".*method=/rec\.v1\.Admin/Status.*status=0\b.*$')
        self.assertTrue(ok, d.output())
        self.assertIn("listener=admin", ok.group(0))
        anon = wait_log(d, r'^.*msg="admin call".*who="anonymous".*method=/rec\.v1\.Admin/Status'
                           r'.*status=16\b.*$')
        self.assertTrue(anon, d.output())
        self.assertIn("listener=admin", anon.group(0))
        for path in ("/status", "/metrics"):
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (d.admin_port, path), timeout=10) as r:
                self.assertEqual(r.status, 200)
                self.assertNotIn(base.ADMIN_TOKEN, r.read().decode())
        self.assertNotIn(base.ADMIN_TOKEN, d.output())
        self.assertEqual(d.close(), 0, d.output())
        self.assertNotIn(base.ADMIN_TOKEN, d.output())


class AdminCertTest(Case):
    def test_allowed_certificate_needs_no_token(self):
        import grpc
        d = self.start(small_bundle(), *tls_args(client_ca="ca"), "--admin_allow=CN=ops")
        ops = self.channel(secure_channel(d.admin_addr, client="ops"))
        self.assertEqual(admin_status(ops).item_count, 500)
        line = wait_log(d, r'^.*msg="admin call".*who="cert:[^"]*".*method=/rec\.v1\.Admin/Status'
                           r'.*status=0\b.*$')
        self.assertTrue(line, d.output())
        who = re.search(r'who="cert:([^"]*)"', line.group(0)).group(1)
        self.assertIn("CN=ops", who)
        # A certificate from another CA: no handshake.
        self.refused(grpc.StatusCode.UNAVAILABLE, admin_status,
                     self.channel(secure_channel(d.admin_addr, client="intruder")), timeout=FAIL_TIMEOUT)
        # TLS, no certificate, no token.
        self.refused(grpc.StatusCode.UNAUTHENTICATED, admin_status,
                     self.channel(secure_channel(d.admin_addr)), timeout=FAIL_TIMEOUT)
        # A good certificate whose identity is not on --admin_allow is no admin.
        with self.assertRaises(grpc.RpcError) as cm:
            admin_status(self.channel(secure_channel(d.admin_addr, client="guest")), timeout=FAIL_TIMEOUT)
        self.assertIn(cm.exception.code(), (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED),
                      cm.exception.details())
        # The token still works over TLS without a certificate.
        st = admin_status(base.with_token(self.channel(secure_channel(d.admin_addr)), base.ADMIN_TOKEN))
        self.assertEqual(st.item_count, 500)
        # The serving port stays without client certificates (--tls_client_auth defaults to none)
        # and without admin RPCs even for the allowed certificate.
        self.assertEqual(len(recommend(self.channel(secure_channel(d.addr))).items), 5)
        self.refused(grpc.StatusCode.PERMISSION_DENIED, admin_status,
                     self.channel(secure_channel(d.addr, client="ops")))


class LongSubjectTest(Case):
    def test_identities_are_matched_whole(self):
        """A subject of 300 characters is allowed when listed whole, and one
        that shares its first 255 characters but not its end is not."""
        import grpc
        c = certs()
        d_ = os.path.join(base.TMP, "certs")
        loc = "x" * 120
        for name, tail in (("long_ok", "end-a"), ("long_evil", "end-b")):
            subj = "/O=shop/OU=%s/L=%s/ST=%s/CN=ops-%s" % ("u" * 60, loc, "s" * 100, tail)
            key, crt = _make_leaf(d_, name, subj, c["ca"]["key"], c["ca"]["crt"], 2000 + len(tail) + ord(tail[-1]),
                                  False)
            c[name] = {"crt": crt, "key": key}
        r = subprocess.run(["openssl", "x509", "-in", c["long_ok"]["crt"], "-noout", "-subject", "-nameopt",
                            "RFC2253"], capture_output=True, text=True, check=True)
        subject = r.stdout.strip().split("=", 1)[1].strip()  # "subject=CN=...,..."
        self.assertGreater(len(subject), 256)
        d = self.start(small_bundle(), *tls_args(client_ca="ca"), "--admin_allow=" + subject)
        st = admin_status(self.channel(secure_channel(d.admin_addr, client="long_ok")))
        self.assertEqual(st.item_count, 500)
        self.refused(grpc.StatusCode.UNAUTHENTICATED, admin_status,
                     self.channel(secure_channel(d.admin_addr, client="long_evil")), timeout=FAIL_TIMEOUT)


# --- 5: reloads under the bundle root ----------------------------------------

class BundleRootTest(Case):
    def test_reload_is_confined_to_the_bundle_root(self):
        import grpc
        root = os.path.join(base.TMP, "root5")
        outside = os.path.join(base.TMP, "outside5")
        os.makedirs(os.path.join(root, "sub"))
        for name, seed in (("b1", 1), ("b2", 2)):
            base.recctl("synth", "--out", os.path.join(root, name), "--items", "500", "--users", "50",
                        "--seed", str(seed), "--version", "root-" + name, check=True)
        base.recctl("synth", "--out", outside, "--items", "500", "--users", "50", "--seed", "3",
                    "--version", "outside", check=True)
        os.symlink(outside, os.path.join(root, "link"))
        with open(os.path.join(root, "afile"), "w") as f:
            f.write("not a bundle\n")
        v1, v2 = base.manifest_version(os.path.join(root, "b1")), base.manifest_version(os.path.join(root, "b2"))
        self.assertNotEqual(v1, v2)
        d = self.start(os.path.join(root, "b1"), "--bundle_root=" + root)
        self.assertIn("bundle_root=" + os.path.realpath(root), d.output())
        denied = grpc.StatusCode.PERMISSION_DENIED
        details = []
        for name in ("../x", "../outside5", outside, os.path.join(root, "..", "outside5"),
                     "link", "sub/../../outside5", "/etc", "/"):
            with self.subTest(name=name):
                det = self.refused(denied, admin_reload, d.admin_channel, name)
                self.assertIn("not under the bundle root", det)
                details.append(det)
        for name in ("b1\x00x", "\x00"):
            with self.subTest(name=repr(name)):
                details.append(self.refused(grpc.StatusCode.INVALID_ARGUMENT, admin_reload,
                                            d.admin_channel, name))
        with self.subTest(name="missing"):
            det = self.refused(grpc.StatusCode.NOT_FOUND, admin_reload, d.admin_channel, "nope")
            details.append(det)
            det = self.refused(grpc.StatusCode.NOT_FOUND, admin_reload, d.admin_channel, "afile/x")
            details.append(det)
        for det in details:
            self.assertNotIn("No such file", det)
            self.assertNotIn("Not a directory", det)
            self.assertNotIn(outside, det.replace("'%s'" % outside, ""))  # only as the name asked for
        # Nothing refused was loaded.
        self.assertEqual(admin_status(d.admin_channel).bundle_version, v1)
        r = admin_reload(d.admin_channel, "b2")
        self.assertEqual((r.previous_version, r.version), (v1, v2))
        self.assertEqual(admin_status(d.admin_channel).bundle_version, v2)
        r = admin_reload(d.admin_channel, "sub/../b1")
        self.assertEqual(r.version, v1)
        r = admin_reload(d.admin_channel, "./sub/../b2/")
        self.assertEqual(r.version, v2)
        r = admin_reload(d.admin_channel, os.path.join(root, "b1"))
        self.assertEqual(r.version, v1)
        self.assertEqual(recommend(d.channel).bundle_version, v1)


# --- 6, 7: the admin HTTP port; startup refusals -----------------------------

class AdminHttpAuthTest(Case):
    def get(self, port, path, token=None):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path))
        if token is not None:
            req.add_header("Authorization", "Bearer " + token)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def test_bearer_token_on_the_http_admin_port(self):
        d = self.start(small_bundle(), "--admin_http_auth=token")
        p = d.admin_port
        for path in ("/metrics", "/status"):
            with self.subTest(path=path):
                code, body = self.get(p, path)
                self.assertEqual(code, 401, body)
                self.assertNotIn(base.ADMIN_TOKEN, body)
                self.assertEqual(self.get(p, path, "wrong-token-0123456789")[0], 401)
                self.assertEqual(self.get(p, path, base.ADMIN_TOKEN[:-1])[0], 401)
                self.assertEqual(self.get(p, path, "")[0], 401)
                code, body = self.get(p, path, base.ADMIN_TOKEN)
                self.assertEqual(code, 200, body)
                self.assertNotIn(base.ADMIN_TOKEN, body)
        self.assertEqual(json.loads(self.get(p, "/status", base.ADMIN_TOKEN)[1])["items"], 500)
        self.assertIn("recd_requests_total", self.get(p, "/metrics", base.ADMIN_TOKEN)[1])
        self.assertEqual(self.get(p, "/healthz"), (200, "ok\n"))
        self.assertEqual(self.get(p, "/readyz")[0], 200)
        self.assertNotIn(base.ADMIN_TOKEN, d.output())

    def test_http_admin_off_loopback_needs_a_token_file(self):
        # Refused before anything binds: recd must exit at once.
        r = subprocess.run([recd_bin(), "--bundle=" + small_bundle(), "--listen=127.0.0.1:0",
                            "--admin_listen=0.0.0.0:0", "--admin_grpc_listen=127.0.0.1:0"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn("admin_token_file", r.stderr)
        self.assertNotIn('msg="serving"', r.stdout + r.stderr)


class TokenFileTest(Case):
    def run_recd(self, *args):
        return subprocess.run([recd_bin(), "--bundle=" + small_bundle(), "--listen=127.0.0.1:0",
                               "--admin_listen=127.0.0.1:0", "--admin_grpc_listen=127.0.0.1:0"] + list(args),
                              capture_output=True, text=True, timeout=30)

    def test_token_file_readable_by_others_is_refused(self):
        secret = "open-secret-token-58c1e2a9f0"
        path = token_file("open.token", "ops %s\n" % secret, mode=0o644)
        r = self.run_recd("--admin_token_file=" + path)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("chmod 600", r.stderr)
        self.assertNotIn(secret, r.stdout + r.stderr)
        self.assertNotIn('msg="serving"', r.stdout + r.stderr)
        # The same file at 0600 serves (so it is the mode that was refused).
        os.chmod(path, 0o600)
        d = self.start(small_bundle(), "--admin_token_file=" + path)
        st = admin_status(base.with_token(self.channel(insecure_channel(d.admin_addr)), secret))
        self.assertEqual(st.item_count, 500)
        self.assertTrue(wait_log(d, r'msg="admin call".*who="token:ops".*status=0\b'), d.output())
        self.assertNotIn(secret, d.output())


class DescriptorExhaustionTest(Case):
    """Connections that hold file descriptors and do nothing: the admin HTTP
    port caps and times them out, and when the serving listener stops
    accepting (gRPC 1.51 never accepts again after one EMFILE), the probes
    say so instead of answering "ok"."""

    def test_a_stuck_serving_listener_fails_the_probes(self):
        import socket

        d = base.Recd.__new__(base.Recd)
        d.log = open(os.path.join(base.TMP, "recd-fd-%d.log" % time.monotonic_ns()), "a+")
        # prlimit sets the limit and execs recd: no Python code between fork
        # and exec (a preexec_fn can deadlock on a lock grpcio's threads hold,
        # grpc/grpc#31885).
        d.proc = subprocess.Popen(
            ["prlimit", "--nofile=96:96", "--", recd_bin(), "--bundle=" + small_bundle(), "--listen=127.0.0.1:0",
             "--admin_listen=127.0.0.1:0", "--admin_grpc_listen=127.0.0.1:0", "--threads=2", "--selfprobe_ms=500"],
            stdout=d.log, stderr=subprocess.STDOUT)
        self.addCleanup(d.close)
        port = d._wait_for(r'msg="serving" port=(\d+)')
        admin = d._wait_for(r'admin_port=(\d+)')

        def probe(path):
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d%s" % (admin, path), timeout=5) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code
        self.assertEqual(probe("/healthz"), 200)
        held = []
        for _ in range(150):  # more than the process may open
            try:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                break
        time.sleep(1)
        for c in held:
            c.close()
        deadline, code = time.monotonic() + 20, 200
        while time.monotonic() < deadline and code == 200:
            time.sleep(0.25)
            code = probe("/healthz")
        self.assertEqual(code, 503, d.output())
        self.assertEqual(probe("/readyz"), 503)
        self.assertIn("the serving listener stopped accepting connections", d.output())


def h2_client(case, d, **config):
    """A raw HTTP/2 client connection to d's serving port (closed when the
    test ends): the socket and an h2 connection whose preface is sent."""
    import socket
    import h2.config
    import h2.connection
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    case.addCleanup(s.close)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, **config))
    return s, c


def recommend_headers(d):
    """A Recommend call's request headers, pseudo-headers first."""
    return [(":method", "POST"), (":scheme", "http"), (":authority", d.addr), (":path", "/rec.v1.Ranking/Recommend"),
            ("content-type", "application/grpc"), ("te", "trailers")]


class StalledReaderTest(Case):
    """Clients that ask and never open their HTTP/2 window (so no reply can
    be sent) hold no in-flight slot, and their calls last send_timeout_ms:
    everyone else is served meanwhile, and the stalled calls are cancelled,
    logged and counted DEADLINE_EXCEEDED."""

    def test_unread_replies_neither_hold_the_slots_nor_stay(self):
        import h2.settings
        d = self.start(small_bundle(), "--max_inflight=64", "--send_timeout_ms=1500")
        body = pb["ranking"].RecommendRequest(user_id="U00001", k=10).SerializeToString()
        msg = b"\x00" + len(body).to_bytes(4, "big") + body
        socks = []
        for _ in range(2):  # 2 x 40 = 80 stalled calls, past max_inflight
            s, c = h2_client(self, d)
            c.local_settings = h2.settings.Settings(client=True, initial_values={
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0, h2.settings.SettingCodes.ENABLE_PUSH: 0})
            c.initiate_connection()
            for _ in range(40):
                sid = c.get_next_available_stream_id()
                c.send_headers(sid, recommend_headers(d))
                c.send_data(sid, msg, end_stream=True)
            s.sendall(c.data_to_send())
            socks.append(s)  # never read: the window stays shut

        def inflight():
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % d.admin_port, timeout=5) as r:
                text = r.read().decode()
            return float(re.search(r"^recd_inflight_calls (\S+)", text, re.M).group(1))
        for _ in range(5):  # a client that reads is served at once
            r = d.ranking.Recommend(pb["ranking"].RecommendRequest(user_id="U00002", k=5), timeout=RPC_TIMEOUT)
            self.assertEqual(len(r.items), 5)
        deadline = time.monotonic() + 10  # the stalled calls hold no slot once handled
        while inflight() > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(inflight(), 0)
        # No other call from here on: the admin port's timer sweeps them.
        deadline, n = time.monotonic() + 10, 0
        while n < 80 and time.monotonic() < deadline:
            time.sleep(0.1)
            n = d.output().count("the client did not read the reply within 1500 ms: cancelled")
        self.assertEqual(n, 80, d.output()[-3000:])
        self.assertRegex(d.output(), r'method=/rec.v1.Ranking/Recommend status=4 ')


class RawPathTest(Case):
    def test_an_unknown_method_is_named_back_in_path_characters_only(self):
        # A client's bytes in :path (escape sequences, CR, invalid UTF-8)
        # never come back as sent, in the status message or the log.
        import h2.events
        d = self.start(small_bundle())
        s, c = h2_client(self, d, validate_outbound_headers=False, normalize_outbound_headers=False,
                         validate_inbound_headers=False)
        c.initiate_connection()
        path = b"/no.Such/M\x1b[2J\r\xff\xfe" + b"a" * 400
        c.send_headers(1, [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", d.addr.encode()),
                           (b":path", path), (b"content-type", b"application/grpc"), (b"te", b"trailers")])
        c.send_data(1, b"\x00\x00\x00\x00\x00", end_stream=True)
        s.sendall(c.data_to_send())
        trailers, deadline = None, time.monotonic() + 10
        while trailers is None and time.monotonic() < deadline:
            data = s.recv(65536)
            if not data:
                break
            for e in c.receive_data(data):
                if isinstance(e, (h2.events.TrailersReceived, h2.events.ResponseReceived)):
                    h = dict(e.headers)
                    if b"grpc-status" in h:
                        trailers = h
            s.sendall(c.data_to_send())
        self.assertIsNotNone(trailers)
        self.assertEqual(trailers[b"grpc-status"], b"12")  # UNIMPLEMENTED
        m = urllib.parse.unquote_to_bytes(trailers[b"grpc-message"].decode())
        self.assertTrue(m.startswith(b"unknown method /no.Such/M??2J???aaa"), m)
        self.assertTrue(m.endswith(b"..."), m)
        self.assertLess(len(m), 200)
        self.assertNotIn(b"\x1b", d.output().encode())

    def test_a_reset_stream_is_counted_cancelled_not_a_bad_request(self):
        import h2.errors
        d = self.start(small_bundle())
        s, c = h2_client(self, d)
        c.initiate_connection()
        for i in range(20):  # HEADERS, then RST_STREAM before any message
            sid = c.get_next_available_stream_id()
            c.send_headers(sid, recommend_headers(d))
            c.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        s.sendall(c.data_to_send())
        time.sleep(1)
        d.ranking.Recommend(pb["ranking"].RecommendRequest(user_id="U00001", k=5), timeout=RPC_TIMEOUT)
        log = d.output()
        self.assertNotIn("request message missing", log)
        lines = [l for l in log.splitlines() if 'method=/rec.v1.Ranking/Recommend' in l]
        self.assertGreater(sum(" status=1 " in l for l in lines), 0, log)  # reset streams reach the handler
        self.assertTrue(all(" status=0 " in l or " status=1 " in l for l in lines), lines)
        self.assertTrue(all("cancelled: the client went away" in l for l in lines if " status=1 " in l), lines)


class BadCertificateTest(Case):
    run_recd = TokenFileTest.run_recd

    def test_certificate_files_that_cannot_work_stop_recd_with_their_name(self):
        c = certs()
        junk = os.path.join(base.TMP, "junk.pem")
        with open(junk, "w") as f:
            f.write("not a certificate\n")
        for args, want in [
                (["--tls_cert=" + c["server"]["crt"], "--tls_key=" + c["ops"]["key"]], "is not the key of the certificate"),
                (["--tls_cert=" + junk, "--tls_key=" + c["server"]["key"]], junk + ": no PEM certificate"),
                (["--tls_cert=" + c["server"]["crt"], "--tls_key=" + junk], junk + ": no PEM private key"),
                (["--tls_cert=" + c["server"]["crt"], "--tls_key=" + c["server"]["key"],
                  "--tls_client_ca=" + junk, "--tls_client_auth=require"], junk + ": no PEM certificate"),
                (["--tls_cert=/no/such.crt", "--tls_key=" + c["server"]["key"]], "/no/such.crt")]:
            r = self.run_recd(*args)
            self.assertNotEqual(r.returncode, 0, r.stderr)
            self.assertIn(want, r.stderr)
            self.assertNotIn('msg="serving"', r.stderr)
            self.assertNotIn("BEGIN", r.stderr)  # no key material in the message


# --- 8: certificates re-read on SIGHUP ---------------------------------------

class CertReloadTest(Case):
    def test_sighup_rereads_the_certificate(self):
        import grpc
        c = certs()
        d_ = os.path.join(base.TMP, "live_certs")
        os.makedirs(d_)
        crt, key = os.path.join(d_, "tls.crt"), os.path.join(d_, "tls.key")
        shutil.copyfile(c["server"]["crt"], crt)
        shutil.copyfile(c["server"]["key"], key)
        os.chmod(key, 0o600)
        d = self.start(small_bundle(), "--tls_cert=" + crt, "--tls_key=" + key)
        self.assertEqual(len(recommend(self.channel(secure_channel(d.addr, ca="ca"))).items), 5)
        self.refused(grpc.StatusCode.UNAVAILABLE, recommend,
                     self.channel(secure_channel(d.addr, ca="ca2")), timeout=FAIL_TIMEOUT)
        # Swap in the server certificate of the other CA, each file atomically.
        for src, dst in ((c["server2"]["key"], key), (c["server2"]["crt"], crt)):
            tmp = dst + ".new"
            shutil.copyfile(src, tmp)
            os.chmod(tmp, 0o600)
            os.replace(tmp, dst)
        reads = d.output().count('msg="TLS certificate read"')
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while d.output().count('msg="TLS certificate read"') <= reads and time.monotonic() < deadline:
            time.sleep(0.05)
        # New connections get the new certificate (retried briefly: SIGHUP is asynchronous).
        last = None
        while time.monotonic() < deadline:
            try:
                r = recommend(self.channel(secure_channel(d.addr, ca="ca2")), timeout=FAIL_TIMEOUT)
                break
            except grpc.RpcError as e:
                last = e
                time.sleep(0.1)
        else:
            self.fail("after SIGHUP no new channel trusting the new CA got through: %s\n%s"
                      % (last and (last.code(), last.details()), d.output()))
        self.assertEqual(len(r.items), 5)
        self.refused(grpc.StatusCode.UNAVAILABLE, recommend,
                     self.channel(secure_channel(d.addr, ca="ca")), timeout=FAIL_TIMEOUT)
        # Both listeners: the admin one too.
        st = admin_status(base.with_token(self.channel(secure_channel(d.admin_addr, ca="ca2")),
                                          base.ADMIN_TOKEN))
        self.assertEqual(st.item_count, 500)
        self.refused(grpc.StatusCode.UNAVAILABLE, admin_status,
                     base.with_token(self.channel(secure_channel(d.admin_addr, ca="ca")), base.ADMIN_TOKEN),
                     timeout=FAIL_TIMEOUT)


# --- 9: ranking tier to its shards over mTLS ---------------------------------

class ShardTlsTest(Case):
    def test_ranking_reaches_mtls_shards(self):
        c = certs()
        bundle = base.shop_bundle("shop_sec_tiers")
        shard = self.start(bundle, "--role=retrieval", "--shard=0/1",
                           *tls_args(client_ca="ca", client_auth="require"))
        target = "--retrieval=127.0.0.1:%d" % shard.port
        req = dict(user="U04", k=6)
        # The first call also connects (TLS handshake): a generous shard budget.
        rank = self.start(bundle, "--role=ranking", target, "--retrieval_timeout_ms=5000",
                          "--shard_tls_ca=" + c["ca"]["crt"], "--shard_tls_cert=" + c["ops"]["crt"],
                          "--shard_tls_key=" + c["ops"]["key"])
        r = recommend(rank.channel, **req)
        self.assertEqual(len(r.items), 6)
        self.assertNotIn("retrieval_unavailable", r.degraded_reasons)
        self.assertFalse([x for x in r.degraded_reasons if "shard" in x or "retrieval" in x],
                         r.degraded_reasons)
        self.assertEqual(r.strategy, pb["ranking"].STRATEGY_PERSONALIZED)
        # Plaintext to the shard: refused by it, so popularity, flagged.
        plain = self.start(bundle, "--role=ranking", target)
        r = recommend(plain.channel, **req)
        self.assertEqual(len(r.items), 6)
        self.assertIn("retrieval_unavailable", r.degraded_reasons)
        self.assertEqual(r.strategy, pb["ranking"].STRATEGY_POPULARITY_FALLBACK)
        # TLS to the shard but no client certificate: refused by it too.
        nocert = self.start(bundle, "--role=ranking", target, "--shard_tls_ca=" + c["ca"]["crt"])
        r = recommend(nocert.channel, **req)
        self.assertEqual(len(r.items), 6)
        self.assertIn("retrieval_unavailable", r.degraded_reasons)
        # The mTLS ranking process still gets through.
        r = recommend(rank.channel, **req)
        self.assertNotIn("retrieval_unavailable", r.degraded_reasons)


# --- 10: recctl ----------------------------------------------------------------

class RecctlTest(Case):
    def test_recctl_tokens_and_tls(self):
        c = certs()
        d = self.start(small_bundle(), *tls_args(client_ca="ca"), "--admin_allow=CN=ops")
        tls = ["--tls-ca", c["ca"]["crt"]]
        r = base.recctl("status", "--addr", d.admin_addr, "--token-file", base.admin_token_file(), *tls)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("items 500", r.stdout)
        self.assertNotIn(base.ADMIN_TOKEN, r.stdout + r.stderr)
        r = base.recctl("status", "--addr", d.admin_addr, *tls, "--timeout-ms", "5000")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("UNAUTHENTICATED", r.stderr)
        # The allowed certificate instead of a token.
        r = base.recctl("status", "--addr", d.admin_addr, *tls, "--tls-cert", c["ops"]["crt"],
                        "--tls-key", c["ops"]["key"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("items 500", r.stdout)
        # --tls-name checks the name the certificate carries.
        r = base.recctl("recommend", "--addr", d.addr, "--user", "U00002", "-k", "4", *tls,
                        "--tls-name", "localhost")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = base.recctl("recommend", "--addr", d.addr, "--user", "U00002", "-k", "4", *tls,
                        "--tls-name", "not-the-server", "--timeout-ms", "5000")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        # Recommend over TLS.
        r = base.recctl("recommend", "--addr", d.addr, "--user", "U00002", "-k", "4", "--json", *tls)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(json.loads(r.stdout)["items"]), 4)
        # Plaintext to a TLS port, or trusting the wrong CA: UNAVAILABLE, exit 1.
        for extra in ([], ["--tls-ca", c["ca2"]["crt"]]):
            with self.subTest(extra=extra):
                r = base.recctl("recommend", "--addr", d.addr, "--user", "U00002", "-k", "4",
                                "--timeout-ms", "5000", *extra)
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertIn("UNAVAILABLE", r.stderr)

    def test_recctl_status_plaintext_admin(self):
        d = self.start(small_bundle())
        r = base.recctl("status", "--addr", d.admin_addr, "--token-file", base.admin_token_file())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("items 500", r.stdout)
        r = base.recctl("status", "--addr", d.admin_addr, "--timeout-ms", "5000")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("UNAUTHENTICATED", r.stderr)
        wrong = token_file("wrong.token", "ops wrong-token-0123456789abc\n")
        r = base.recctl("status", "--addr", d.admin_addr, "--token-file", wrong, "--timeout-ms", "5000")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("UNAUTHENTICATED", r.stderr)
        # reload with the token, confined to the bundle root like any Reload.
        r = base.recctl("reload", "--addr", d.admin_addr, "--token-file", base.admin_token_file(),
                        "--bundle", small_bundle())
        self.assertEqual(r.returncode, 0, r.stderr)
        r = base.recctl("reload", "--addr", d.admin_addr, "--token-file", base.admin_token_file(),
                        "--bundle", "/etc", "--timeout-ms", "5000")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("PERMISSION_DENIED", r.stderr)
        # recctl's status against the serving port: admin RPCs are not there.
        r = base.recctl("status", "--addr", d.addr, "--token-file", base.admin_token_file(),
                        "--timeout-ms", "5000")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("PERMISSION_DENIED", r.stderr)


def main():
    return base.run("recd_sec.")


if __name__ == "__main__":
    sys.exit(main())
