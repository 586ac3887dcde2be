#!/usr/bin/python3
"""End-to-end tests of recctl as a user meets it: every command's --help,
--version, the serving commands (similar, record) against a live recd on
127.0.0.1, and errors that say what to do (an address where nothing
listens, a missing or wrong admin token, a bad flag) instead of gRPC's own
text. Reuses test_recd.py's machinery.

Usage: /usr/bin/python3 tests/e2e/test_recctl.py --build BUILD_DIR --proto PROTO_DIR
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_recd as base  # noqa: E402

# gRPC's own words for a failed connection, which recctl must not pass on.
RAW_GRPC = ("failed to connect to all addresses", "ipv4:", "last error", "DNS resolution failed")


def recctl(*args, env=None):
    full = dict(os.environ)
    full.pop("RECCTL_TOKEN_FILE", None)
    full.update(env or {})
    return subprocess.run([os.path.join(base.ARGS.build, "tools/recctl")] + list(args), capture_output=True,
                          text=True, timeout=60, env=full)


def free_port():
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HelpTest(unittest.TestCase):
    def commands(self):
        r = recctl()
        self.assertEqual(r.returncode, 2)
        names = re.findall(r"^  ([a-z][a-z-]*) ", r.stderr, re.M)
        self.assertGreaterEqual(len(names), 14, r.stderr)
        return names

    def test_every_command_answers_help(self):
        names = self.commands()
        for want in ("recommend", "similar", "record", "health", "status", "reload", "catalog", "experiments",
                     "events-csv", "synth", "shard", "build", "eval", "import"):
            self.assertIn(want, names)
        for name in names:
            for flag in ("--help", "-h"):
                with self.subTest(command=name, flag=flag):
                    r = recctl(name, flag)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.assertEqual(r.stderr, "")
                    # build's text covers eval and import too
                    self.assertRegex(r.stdout, r"^usage: recctl (%s|build)\b" % re.escape(name))
        # Help after other options, and on a sub-command, still wins.
        r = recctl("catalog", "upsert", "--csv", "/nonexistent", "--help")
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        r = recctl("recommend", "--user", "U1", "--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("--why ID", r.stdout)
        r = recctl("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("recctl COMMAND --help", r.stdout)

    def test_version(self):
        r = recctl("--version")
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.fullmatch(r"recctl (\d+\.\d+\.\d+)(?: \((\S+)\))?\nbundle format (\d+)\n", r.stdout)
        self.assertIsNotNone(m, r.stdout)
        with open(os.path.join(base.ARGS.proto, "..", "CMakeLists.txt")) as f:
            self.assertIn("VERSION %s " % m.group(1), f.read())
        self.assertEqual(m.group(3), "1")  # docs/bundle.md: "format must be 1"
        src = os.path.join(base.ARGS.proto, "..")
        git = shutil.which("git")  # a machine without git builds a recctl without the commit
        g = subprocess.run([git, "-C", src, "rev-parse", "--short", "HEAD"], capture_output=True, text=True) \
            if git else None
        if g and g.returncode == 0:  # a checkout: the commit recctl was built from is named
            self.assertIsNotNone(m.group(2), r.stdout)

    def test_bad_flags_name_the_flag(self):
        cases = [(("recommend", "--usr", "U1"), "--usr"),
                 (("health", "--wait", "soon"), "--wait"),
                 (("recommend", "--user"), "--user"),
                 (("record", "--user", "U1", "--item", "P000001", "--type", "nap"), "--type"),
                 (("similar", "--item", "P1", "--price", "3"), "--price"),     # another command's option
                 (("recommend", "--user", "U1", "--token-file", "/x"), "--token-file"),
                 (("catalog", "upsert", "--batch", "0"), "--batch"),
                 (("experiments", "--bogus", "1"), "--bogus"),
                 (("build", "--epochs", "zero"), "--epochs")]
        for args, flag in cases:
            with self.subTest(args=args):
                r = recctl(*args)
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                self.assertIn(flag, r.stderr)
        r = recctl("similar")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--item", r.stderr)
        self.assertIn("recctl similar --help", r.stderr)

    def test_unreachable_address_is_named_with_what_to_do(self):
        port = free_port()
        addr = "127.0.0.1:%d" % port
        for args, listener in ((("recommend", "--user", "U1"), "serving port"), (("similar", "--item", "P1"), "serving port"),
                               (("health",), "serving port"), (("status",), "admin listener"),
                               (("catalog", "delete", "--id", "P1"), "admin listener"),
                               (("experiments",), "admin listener")):
            with self.subTest(args=args):
                r = recctl(*args, "--addr", addr, "--timeout-ms", "3000")
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertIn("cannot reach recd at %s" % addr, r.stderr)
                self.assertIn("Is recd running", r.stderr)
                self.assertIn(listener, r.stderr)
                self.assertIn("--addr", r.stderr)
                for raw in RAW_GRPC:
                    self.assertNotIn(raw, r.stderr)


class LiveTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bundle = os.path.join(base.TMP, "bundle")
        if not os.path.exists(cls.bundle):
            base.recctl("synth", "--out", cls.bundle, "--items", "500", "--users", "50", "--dim", "16",
                        "--seed", "3", check=True)
        cls.log = os.path.join(base.TMP, "events")
        cls.recd = base.Recd(cls.bundle, "--event_log=" + cls.log,
                             "--catalog_log=" + os.path.join(base.TMP, "catalog"))

    @classmethod
    def tearDownClass(cls):
        # recd stops cleanly after everything the tests did (a sanitizer's report would make it exit non-zero).
        cls.recd.close_clean()

    def test_similar(self):
        r = recctl("similar", "--addr", self.recd.addr, "--item", "P000001", "-k", "5", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        j = json.loads(r.stdout)
        ids = [i["item_id"] for i in j["items"]]
        self.assertEqual(len(ids), 5)
        self.assertNotIn("P000001", ids)
        # The same answer as the API's, in a table.
        want = self.recd.ranking.SimilarItems(base.pb["ranking"].SimilarItemsRequest(item_ids=["P000001"], k=5),
                                              timeout=10)
        self.assertEqual(ids, [i.item_id for i in want.items])
        r = recctl("similar", "--addr", self.recd.addr, "--item", "P000001", "--item", "P000002", "-k", "3")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("similar to P000001,P000002", r.stdout)
        self.assertEqual(len([l for l in r.stdout.splitlines() if re.match(r"\s+\d+\s+P\d{6}\s", l)]), 3)
        r = recctl("similar", "--addr", self.recd.addr, "--item", "NOPE", "-k", "3")
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"^recctl similar: 127\.0\.0\.1:\d+: [A-Z_]+: ")

    def test_record_is_durable(self):
        r = recctl("record", "--addr", self.recd.addr, "--user", "visitor-rc", "--item", "P000007", "--type",
                   "purchase", "--quantity", "2", "--price", "3.5", "--time-ms", "1700000000000")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^recorded 1 event \(durable\), sequence \d+\n$")
        rows = recctl("events-csv", "--log", self.log)
        self.assertEqual(rows.returncode, 0, rows.stderr)
        self.assertIn('"visitor-rc","P000007",1700000000,2,3.5000,purchase,', rows.stdout)
        r = recctl("record", "--addr", self.recd.addr, "--user", "visitor-rc", "--item", "P000007", "--type",
                   "purchase", "--quantity", "0")
        self.assertEqual(r.returncode, 1)
        self.assertIn("INVALID_ARGUMENT", r.stderr)

    def test_token_errors_name_the_flag_and_variable(self):
        addr = self.recd.admin_addr
        r = recctl("status", "--addr", addr, "--timeout-ms", "5000")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("UNAUTHENTICATED", r.stderr)
        self.assertIn("--token-file", r.stderr)
        self.assertIn("RECCTL_TOKEN_FILE", r.stderr)
        wrong = os.path.join(base.TMP, "wrong.token")
        fd = os.open(wrong, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("ops not-the-right-token-0123456789\n")
        r = recctl("status", "--addr", addr, "--token-file", wrong, "--timeout-ms", "5000")
        self.assertEqual(r.returncode, 1)
        self.assertIn("the token in %s is not one recd accepts" % wrong, r.stderr)
        # The variable stands in for the flag, for every admin command.
        env = {"RECCTL_TOKEN_FILE": base.admin_token_file()}
        r = recctl("status", "--addr", addr, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("items 500", r.stdout)
        r = recctl("experiments", "--addr", addr, env=env)
        self.assertNotIn("UNAUTHENTICATED", r.stderr)
        r = recctl("catalog", "delete", "--id", "P000499", "--addr", addr, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("1 deleted", r.stdout)
        # ... and the flag wins over it.
        r = recctl("status", "--addr", addr, "--token-file", wrong, env=env)
        self.assertEqual(r.returncode, 1)
        self.assertIn(wrong, r.stderr)

    def test_serving_port_is_not_the_admin_listener(self):
        """status at the serving port: recd's own answer points at the admin listener."""
        r = recctl("status", "--addr", self.recd.addr, "--token-file", base.admin_token_file())
        self.assertEqual(r.returncode, 1)
        self.assertIn("PERMISSION_DENIED", r.stderr)
        self.assertIn("admin", r.stderr)


class AdminUnderLoadTest(unittest.TestCase):
    """The admin listener's worker leaves socket I/O to the serving workers
    under gRPC's epoll1 poller (polling itself only while every serving
    worker is busy) and polls as before under any other: either way an admin
    call is answered while recd-loadgen keeps both serving workers busy,
    and recd says which mode it chose."""

    def check(self, strategy, mode):
        bundle = os.path.join(base.TMP, "bundle-admin-load")
        if not os.path.exists(bundle):
            base.recctl("synth", "--out", bundle, "--items", "2000", "--users", "100", "--dim", "32",
                        "--seed", "5", check=True)
        env = dict(os.environ)
        env.pop("GRPC_POLL_STRATEGY", None)
        if strategy:
            env["GRPC_POLL_STRATEGY"] = strategy
        recd = base.Recd(bundle, env=env)
        try:
            self.assertRegex(recd.output(), r'msg="listener I/O" listener=admin io=%s poller=%s' % mode)
            load = subprocess.Popen([os.path.join(base.ARGS.build, "bench/recd-loadgen"), "--addr", recd.addr,
                                     "--method", "recommend", "--users", "100", "--concurrency", "64",
                                     "--channels", "8", "--duration-s", "4", "--warmup-s", "0"],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                tok = {"RECCTL_TOKEN_FILE": base.admin_token_file()}
                for _ in range(5):
                    r = recctl("status", "--addr", recd.admin_addr, "--timeout-ms", "5000", env=tok)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.assertIn("items 2000", r.stdout)
                    self.assertIsNone(load.poll(), "the load ended before the admin calls did")
            finally:
                out, _ = load.communicate(timeout=60)
            self.assertEqual(load.returncode, 0, out)
            self.assertRegex(out, r"(?m)^errors +0$")
            r = recctl("status", "--addr", recd.admin_addr, env={"RECCTL_TOKEN_FILE": base.admin_token_file()})
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            recd.close_clean()

    def test_epoll1_the_default(self):
        self.check(None, ("passive", "epoll1"))

    def test_poll(self):
        self.check("poll", ("polling", "poll"))


if __name__ == "__main__":
    sys.exit(base.run("recd_recctl."))
