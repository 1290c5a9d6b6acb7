"""emud's VM endpoint against the real QEMU: same questions, same answer shapes.

Every test asks a fresh `qemu-system-x86_64 -machine none` and a fresh emud VM
(machine none) the same thing over QMP and compares the replies' *shape*: the
same keys, the same JSON types, the same error class. Values that must differ
(version numbers, timestamps, error descriptions) are not compared. On a
mismatch the test prints a unified diff of the two shapes and both raw replies.

Known differences are tests marked @unittest.expectedFailure whose docstring
quotes QEMU's exact reply: they state the behaviour QEMU has, and turn into
"unexpected success" (a failure) once emud matches, so the marker gets removed.

QEMU 7.2 is the reference here although emud implements the interface of
QEMU 2.10.1; members QEMU added later and emud already has are listed in
NEWER_QEMU_MEMBERS.
"""

import difflib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emud_harness import Emud, connect, wait_for_socket  # noqa: E402

QEMU = os.environ.get("QEMU", shutil.which("qemu-system-x86_64") or "")
VM_NAME = "compat"

# Mandatory members emud returns that QEMU 7.2 does not have yet: allowed extras.
NEWER_QEMU_MEMBERS = {
    ("MachineInfo", "acpi"),  # added in QEMU 8.0
}

# Commands and events every QMP endpoint of a 'none' machine shares with QEMU.
SHARED_COMMANDS = [
    "qmp_capabilities", "query-version", "query-commands", "query-qmp-schema", "query-status", "query-kvm",
    "query-target", "query-name", "query-uuid", "query-machines", "query-cpus-fast", "stop", "cont",
    "system_reset", "system_powerdown", "quit", "human-monitor-command",
]
SHARED_EVENTS = ["STOP", "RESUME", "RESET", "SHUTDOWN", "POWERDOWN"]


# --- shapes ---------------------------------------------------------------------------


def json_type(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def shape(v):
    """Keys and JSON types of a value; arrays become the merged shape of their elements."""
    if isinstance(v, dict):
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        merged = {}
        for x in v:
            s = shape(x)
            if isinstance(s, dict):
                for k, t in s.items():
                    merged.setdefault(k, t)
            else:
                merged.setdefault("<element>", s)
        return ["array", merged] if v else ["array"]
    return json_type(v)


def render(s):
    return json.dumps(s, indent=2, sort_keys=True).splitlines()


def unify(sq, se):
    """An empty array carries no element shape: it matches any array."""
    if isinstance(sq, dict) and isinstance(se, dict):
        for k in set(sq) & set(se):
            sq[k], se[k] = unify(sq[k], se[k])
    elif isinstance(sq, list) and isinstance(se, list):
        if sq == ["array"]:
            sq = se
        elif se == ["array"]:
            se = sq
        elif len(sq) == len(se) == 2:
            sq[1], se[1] = unify(sq[1], se[1])
    return sq, se


def shape_diff(what, qemu, emud):
    """'' when the shapes agree, else a diff-like report."""
    sq, se = unify(shape(qemu), shape(emud))
    if sq == se:
        return ""
    lines = ["shape mismatch: " + what]
    lines += difflib.unified_diff(render(sq), render(se), "qemu", "emud", lineterm="")
    lines += ["qemu replied: " + json.dumps(qemu), "emud replied: " + json.dumps(emud)]
    return "\n".join(lines)


def normalize(reply):
    """Drops what legitimately differs in value but not in shape."""
    if isinstance(reply, dict) and "error" in reply:
        reply = dict(reply, error={"class": reply["error"]["class"], "desc": "..."})
    return reply


# --- peers ---------------------------------------------------------------------------


class Conn:
    """A raw QMP connection: sends bytes, reads CRLF-terminated JSON lines."""

    def __init__(self, path, negotiate=True):
        self.sock = connect(path, 10.0)
        self.buf = b""
        self.greeting = self.read(10.0)
        self.raw_lines = []
        if negotiate:
            reply, _ = self.exchange('{"execute":"qmp_capabilities"}')
            assert reply == {"return": {}}, reply

    def close(self):
        self.sock.close()

    def read(self, timeout):
        """The next message, None on timeout, 'EOF' when the peer closed."""
        deadline = time.time() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.time()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return "EOF"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        assert line.endswith(b"\r"), "QMP lines end in CRLF: %r" % line
        return json.loads(line)

    def exchange(self, text, settle=0.0, timeout=10.0, expect=0):
        """Sends one input line; returns (reply, events seen before it and
        within `settle` seconds after it). With `expect`, waits (up to the
        timeout) until that many events have arrived before settling: a
        loaded machine may deliver asynchronous events late."""
        if not text.endswith("\n"):
            text += "\n"
        self.sock.sendall(text.encode())
        events, reply = [], None
        deadline = time.time() + timeout
        while reply is None:
            msg = self.read(deadline - time.time())
            if msg is None or msg == "EOF":
                raise AssertionError("no reply to %r (got %r)" % (text, msg))
            if "event" in msg:
                events.append(msg)
            else:
                reply = msg
        while len(events) < expect:
            msg = self.read(deadline - time.time())
            if msg is None or msg == "EOF":
                break
            events.append(msg)
        end = time.time() + settle
        while time.time() < end:
            msg = self.read(end - time.time())
            if msg is None or msg == "EOF":
                break
            events.append(msg)
        return reply, events


@unittest.skipUnless(QEMU and os.access(QEMU, os.X_OK),
                     "qemu-system-x86_64 not found (install qemu-system-x86 or set QEMU=path): "
                     "the compatibility test needs the real QEMU as its reference")
class QemuCompatTest(unittest.TestCase):
    """One emud for the class; a fresh emud VM and a fresh QEMU per test."""

    @classmethod
    def setUpClass(cls):
        cls.emud = Emud()

    @classmethod
    def tearDownClass(cls):
        alive = cls.emud.alive()
        log = cls.emud.log_text()
        code = cls.emud.stop()
        assert alive and code == 0, "emud died or failed on SIGTERM (%s):\n%s" % (code, log)

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="emud-compat-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.qemu_sock = os.path.join(self.tmp, "qemu.sock")
        self.qemu_log = open(os.path.join(self.tmp, "qemu.log"), "w")
        self.addCleanup(self.qemu_log.close)
        self.qemu = subprocess.Popen(
            [QEMU, "-machine", "none", "-display", "none", "-nodefaults", "-name", VM_NAME,
             "-qmp", "unix:%s,server=on,wait=off" % self.qemu_sock],
            stdin=subprocess.DEVNULL, stdout=self.qemu_log, stderr=subprocess.STDOUT)
        self.addCleanup(self.end_qemu)
        self.emud.create_vm({"name": VM_NAME, "machine": {"type": "none"}})
        self.addCleanup(self.end_vm)
        self.emud_sock = self.emud.vm_socket(VM_NAME)
        wait_for_socket(self.qemu_sock, self.qemu)
        self.conns = []
        self.addCleanup(self.close_conns)

    def close_conns(self):
        for c in self.conns:
            c.close()
        self.conns = []

    def end_qemu(self):
        if self.qemu.poll() is None:
            self.qemu.terminate()
        try:
            self.qemu.wait(10)
        except subprocess.TimeoutExpired:
            self.qemu.kill()
            self.qemu.wait()

    def end_vm(self):
        self.assertTrue(self.emud.alive(), "emud died:\n" + self.emud.log_text())
        ctl = Conn(self.emud.socket)
        # Fails harmlessly when the test already ended the VM with 'quit'.
        ctl.exchange(json.dumps({"execute": "__org.emud_vm-destroy", "arguments": {"name": VM_NAME}}))
        ctl.close()

    # helpers

    def pair(self, negotiate=True):
        """New connections to both. QEMU serves one QMP client at a time (the
        next waits in the backlog), so earlier connections are closed first."""
        self.close_conns()
        q, e = Conn(self.qemu_sock, negotiate), Conn(self.emud_sock, negotiate)
        self.conns = [q, e]
        return q, e

    def ask_both(self, text, negotiate=True, settle=0.0):
        q, e = self.pair(negotiate)
        return q.exchange(text, settle), e.exchange(text, settle)

    def assert_same_shape(self, what, qemu, emud):
        report = shape_diff(what, qemu, emud)
        if report:
            self.fail(report)

    def assert_same_error(self, what, qemu, emud):
        self.assertIn("error", qemu, "QEMU did not fail %s: %r" % (what, qemu))
        self.assert_same_shape(what, normalize(qemu), normalize(emud))
        if qemu["error"]["class"] != emud["error"]["class"]:
            self.fail("error class differs for %s:\n--- qemu\n+++ emud\n-%s\n+%s" %
                      (what, json.dumps(qemu), json.dumps(emud)))

    # greeting and simple queries

    def test_greeting(self):
        q, e = self.pair(negotiate=False)
        self.assert_same_shape("greeting", q.greeting, e.greeting)
        self.assertIsInstance(e.greeting["QMP"]["capabilities"], list)

    def test_simple_queries(self):
        for cmd in ("query-version", "query-status", "query-kvm", "query-target", "query-name", "query-uuid",
                    "query-cpus-fast"):
            with self.subTest(cmd):
                (rq, _), (re_, _) = self.ask_both('{"execute":"%s"}' % cmd)
                self.assert_same_shape(cmd, rq, re_)
        (rq, _), (re_, _) = self.ask_both('{"execute":"query-status","id":{"n":[1,"x"]}}')
        self.assertEqual(rq["id"], re_["id"])
        self.assertEqual(rq["return"], re_["return"])

    def test_values_that_must_agree(self):
        q, e = self.pair()
        for cmd in ("query-status", "query-target", "query-name", "query-uuid", "query-cpus-fast"):
            with self.subTest(cmd):
                self.assertEqual(q.exchange('{"execute":"%s"}' % cmd)[0], e.exchange('{"execute":"%s"}' % cmd)[0])

    def test_query_machines_none(self):
        q, e = self.pair()
        qm = [m for m in q.exchange('{"execute":"query-machines"}')[0]["return"] if m["name"] == "none"]
        em = [m for m in e.exchange('{"execute":"query-machines"}')[0]["return"] if m["name"] == "none"]
        self.assertEqual(len(qm), 1)
        self.assertEqual(len(em), 1, "emud lists no machine 'none'")
        qm, em = qm[0], em[0]
        optional = {"alias", "is-default", "default-cpu-type", "default-ram-id"}
        extra = {k for k in em if k not in qm and k not in optional and ("MachineInfo", k) not in NEWER_QEMU_MEMBERS}
        missing = {k for k in qm if k not in em and k not in optional}
        self.assertFalse(extra | missing, shape_diff("query-machines 'none' entry", qm, em))
        for k in set(qm) & set(em):
            self.assertEqual(json_type(qm[k]), json_type(em[k]), k)
        for k in ("cpu-max", "hotpluggable-cpus", "numa-mem-supported", "deprecated"):
            self.assertEqual(qm[k], em[k], k)

    # introspection

    def test_commands_and_events_are_shared(self):
        q, e = self.pair()
        qemu_cmds = {c["name"] for c in q.exchange('{"execute":"query-commands"}')[0]["return"]}
        emud_cmds = {c["name"] for c in e.exchange('{"execute":"query-commands"}')[0]["return"]}
        self.assertEqual(sorted(set(SHARED_COMMANDS) - qemu_cmds), [], "QEMU lacks a shared command")
        self.assertEqual(sorted(set(SHARED_COMMANDS) - emud_cmds), [], "emud lacks a shared command")
        # emud's own commands are vendor extensions; query-events and
        # query-cpus and change are QEMU's before 6.0 (emud implements 2.10's
        # interface).
        ours = {c for c in emud_cmds if not c.startswith("__org.emud_")} - {"query-events", "query-cpus", "change"}
        self.assertEqual(sorted(ours - qemu_cmds), [], "emud commands that QEMU does not know")

        schema = q.exchange('{"execute":"query-qmp-schema"}')[0]["return"]
        qemu_events = {x["name"] for x in schema if x["meta-type"] == "event"}
        reply = q.exchange('{"execute":"query-events"}')[0]
        if "return" in reply:
            qemu_events = {x["name"] for x in reply["return"]}
        emud_events = {x["name"] for x in e.exchange('{"execute":"query-events"}')[0]["return"]}
        self.assertEqual(sorted(set(SHARED_EVENTS) - qemu_events), [])
        self.assertEqual(sorted(set(SHARED_EVENTS) - emud_events), [], "emud lacks a shared event")
        ours = {x for x in emud_events if not x.startswith("__org.emud_")}
        self.assertEqual(sorted(ours - qemu_events), [], "emud events that QEMU does not know")

    def test_qmp_schema_entry_keys(self):
        q, e = self.pair()
        qs = q.exchange('{"execute":"query-qmp-schema"}')[0]["return"]
        es = e.exchange('{"execute":"query-qmp-schema"}')[0]["return"]
        problems = []

        def key_types(entries):
            """meta-type (and nested list) -> {key: json type}, plus the keys every entry has."""
            table = {}
            for ent in entries:
                groups = [(ent["meta-type"], ent)]
                for k, v in ent.items():
                    if isinstance(v, list):
                        groups += [("%s.%s[]" % (ent["meta-type"], k), x) for x in v if isinstance(x, dict)]
                for group, obj in groups:
                    kt, always = table.setdefault(group, ({}, None))
                    for k, v in obj.items():
                        kt.setdefault(k, set()).add(json_type(v))
                    table[group] = (kt, set(obj) if always is None else always & set(obj))
            return table

        tq, te = key_types(qs), key_types(es)
        for group, (kt_e, always_e) in sorted(te.items()):
            if group not in tq:
                problems.append("emud has %s entries, QEMU has none" % group)
                continue
            kt_q, always_q = tq[group]
            for k in sorted(set(kt_e) - set(kt_q)):
                problems.append("%s: emud has key %r, QEMU never does" % (group, k))
            for k in sorted(always_q - always_e):
                problems.append("%s: QEMU always has key %r, emud not always" % (group, k))
            for k in sorted(set(kt_e) & set(kt_q)):
                if not kt_e[k] <= kt_q[k]:
                    problems.append("%s.%s: emud types %s, QEMU %s" % (group, k, sorted(kt_e[k]), sorted(kt_q[k])))
        self.assertEqual(problems, [], "query-qmp-schema entries differ:\n" + "\n".join(problems))

    def test_qmp_schema_shared_signatures(self):
        """Shared commands and events take and return the same wire shapes."""
        q, e = self.pair()
        Q = {x["name"]: x for x in q.exchange('{"execute":"query-qmp-schema"}')[0]["return"]}
        E = {x["name"]: x for x in e.exchange('{"execute":"query-qmp-schema"}')[0]["return"]}
        problems = []

        def wire(S, name, depth=0):
            """A schema type as it looks on the wire: enums are strings."""
            x = S[name]
            m = x["meta-type"]
            if m == "builtin":
                return x["json-type"]
            if m == "enum":
                return "string"
            if m == "array":
                return ["array", wire(S, x["element-type"], depth + 1)]
            if m == "alternate":
                return ["alternate"] + sorted(json.dumps(wire(S, mm["type"], depth + 1)) for mm in x["members"])
            if m == "object" and depth < 6:
                return {mm["name"]: (wire(S, mm["type"], depth + 1), "default" in mm) for mm in x["members"]}
            return m

        def compare(where, tq, te, type_name=None):
            if tq == "value" or te == "value":
                return  # 'any' on either side accepts every shape
            if isinstance(tq, dict) and isinstance(te, dict):
                for member, (t, optional) in tq.items():
                    if member not in te:
                        if not optional:
                            problems.append("%s: emud lacks mandatory member %r" % (where, member))
                        continue
                    compare("%s.%s" % (where, member), t, te[member][0])
                for member, (t, optional) in te.items():
                    if member not in tq and not optional:
                        problems.append("%s: emud has mandatory member %r that QEMU 7.2 lacks" % (where, member))
                return
            if isinstance(tq, list) and isinstance(te, list) and tq[:1] == te[:1] == ["array"]:
                compare(where + "[]", tq[1], te[1])
                return
            if tq != te:
                problems.append("%s: QEMU %s, emud %s" % (where, json.dumps(tq), json.dumps(te)))

        shared = [n for n in SHARED_COMMANDS + SHARED_EVENTS if n in Q and n in E]
        self.assertEqual(len(shared), len(SHARED_COMMANDS) + len(SHARED_EVENTS))
        for n in shared:
            for k in ("arg-type", "ret-type"):
                if k in Q[n] and k in E[n]:
                    compare("%s %s" % (n, k), wire(Q, Q[n][k]), wire(E, E[n][k]))
        allowed = {"query-machines ret-type[]: emud has mandatory member %r that QEMU 7.2 lacks" % m
                   for t, m in NEWER_QEMU_MEMBERS if t == "MachineInfo"}
        problems = [p for p in problems if p not in allowed]
        self.assertEqual(problems, [], "shared command signatures differ:\n" + "\n".join(problems))

    # run-state commands and their events

    def run_state_step(self, q, e, cmd, want_events):
        n = len(want_events)
        (rq, evq), (re_, eve) = (q.exchange(cmd, settle=0.2, expect=n), e.exchange(cmd, settle=0.2, expect=n))
        self.assert_same_shape(cmd, rq, re_)
        self.assertEqual(rq, {"return": {}})
        names_q = [x["event"] for x in evq]
        names_e = [x["event"] for x in eve]
        self.assertEqual(names_q, want_events, "QEMU's events for %s" % cmd)
        self.assertEqual(names_e, names_q, "events for %s:\n--- qemu\n+++ emud\n-%r\n+%r" % (cmd, evq, eve))
        for a, b in zip(evq, eve):
            self.assert_same_shape("%s event of %s" % (a["event"], cmd), a, b)
            self.assertEqual(a.get("data"), b.get("data"), "%s event data" % a["event"])

    def test_stop_cont_reset_powerdown(self):
        q, e = self.pair()
        self.run_state_step(q, e, '{"execute":"stop"}', ["STOP"])
        self.run_state_step(q, e, '{"execute":"stop"}', [])
        status = '{"execute":"query-status"}'
        self.assertEqual(q.exchange(status)[0], e.exchange(status)[0])
        self.run_state_step(q, e, '{"execute":"system_reset"}', ["RESET"])
        # (the run state after a reset while paused: test_reset_while_paused)
        self.run_state_step(q, e, '{"execute":"cont"}', ["RESUME"])
        self.run_state_step(q, e, '{"execute":"cont"}', [])
        self.run_state_step(q, e, '{"execute":"system_reset"}', ["RESET"])
        self.run_state_step(q, e, '{"execute":"system_powerdown"}', ["POWERDOWN"])
        self.assertEqual(q.exchange(status)[0], e.exchange(status)[0])

    def test_reset_while_paused(self):
        """A reset of a VM that is not running leaves it in 'prelaunch' in QEMU
        (its main loop sets RUN_STATE_PRELAUNCH after any reset while not
        running). QEMU 7.2, after stop + system_reset, answers query-status with
        {"return": {"status": "prelaunch", "singlestep": false, "running": false}}
        emud answers {"return":{"running":false,"singlestep":false,"status":"paused"}}."""
        q, e = self.pair()
        self.run_state_step(q, e, '{"execute":"stop"}', ["STOP"])
        self.run_state_step(q, e, '{"execute":"system_reset"}', ["RESET"])
        status = '{"execute":"query-status"}'
        rq, re_ = q.exchange(status)[0], e.exchange(status)[0]
        self.assertEqual(rq["return"]["status"], "prelaunch")
        self.assertEqual(rq, re_, "run state after a reset while paused")

    def test_reset_while_paused_then_cont(self):
        q, e = self.pair()
        self.run_state_step(q, e, '{"execute":"stop"}', ["STOP"])
        self.run_state_step(q, e, '{"execute":"system_powerdown"}', ["POWERDOWN"])
        self.run_state_step(q, e, '{"execute":"system_reset"}', ["RESET"])
        self.run_state_step(q, e, '{"execute":"cont"}', ["RESUME"])
        status = '{"execute":"query-status"}'
        self.assertEqual(q.exchange(status)[0], e.exchange(status)[0])

    def test_quit(self):
        q, e = self.pair()
        results = []
        for conn in (q, e):
            reply, events = conn.exchange('{"execute":"quit"}', settle=0.0)
            # QEMU 7.2 sends SHUTDOWN before the reply and emud after it; both
            # are valid QMP, so only the set of messages is compared.
            while True:
                msg = conn.read(5)
                if msg is None or msg == "EOF":
                    break
                events.append(msg)
            self.assertEqual(msg, "EOF", "the connection closes after quit")
            results.append((reply, events))
        (rq, evq), (re_, eve) = results
        self.assert_same_shape("quit", rq, re_)
        self.assertEqual([x["event"] for x in evq], ["SHUTDOWN"])
        self.assertEqual([x["event"] for x in eve], ["SHUTDOWN"])
        self.assert_same_shape("SHUTDOWN event of quit", evq[0], eve[0])
        self.assertEqual(evq[0]["data"], eve[0]["data"])
        self.qemu.wait(10)
        self.assertEqual(self.qemu.returncode, 0)
        deadline = time.time() + 5
        while os.path.exists(self.emud_sock) and time.time() < deadline:
            time.sleep(0.02)
        self.assertFalse(os.path.exists(self.emud_sock), "the VM endpoint stays after quit")

    # errors

    ERROR_CASES = [
        # (name, input, negotiated first)
        ("command before qmp_capabilities", '{"execute":"query-status"}', False),
        ("unknown command before qmp_capabilities", '{"execute":"no-such-command"}', False),
        ("qmp_capabilities: wrong argument type", '{"execute":"qmp_capabilities","arguments":{"enable":5}}', False),
        ("qmp_capabilities: unknown capability", '{"execute":"qmp_capabilities","arguments":{"enable":["x"]}}',
         False),
        ("qmp_capabilities: unknown argument", '{"execute":"qmp_capabilities","arguments":{"x":1}}', False),
        ("malformed JSON before qmp_capabilities", '{"execute": }', False),
        ("non-object before qmp_capabilities", '[1, 2]', False),
        ("unknown command", '{"execute":"no-such-command"}', True),
        ("unknown command with id", '{"execute":"no-such-command","id":"x1"}', True),
        ("unknown argument", '{"execute":"query-status","arguments":{"bogus":1}}', True),
        ("unknown argument with id", '{"execute":"stop","arguments":{"bogus":1},"id":[7]}', True),
        ("wrong argument type", '{"execute":"human-monitor-command","arguments":{"command-line":5}}', True),
        ("wrong type of optional argument",
         '{"execute":"human-monitor-command","arguments":{"command-line":"info status","cpu-index":"0"}}', True),
        ("missing argument", '{"execute":"human-monitor-command","arguments":{}}', True),
        ("arguments not an object", '{"execute":"query-status","arguments":[]}', True),
        ("arguments null", '{"execute":"query-status","arguments":null}', True),
        ("malformed JSON", '{"execute": "query-status", }', True),
        ("stray closing brace", '}', True),
        ("invalid UTF-8", b'\xff'.decode("latin-1"), True),
        ("non-object input: array", '[1, 2]', True),
        ("non-object input: string", '"query-status"', True),
        ("non-object input: number", '42', True),
        ("missing execute", '{"arguments":{}}', True),
        ("empty object", '{}', True),
        ("execute not a string", '{"execute":5}', True),
        ("unexpected member", '{"execute":"query-status","bogus":1}', True),
        ("unexpected member with id", '{"execute":"query-status","bogus":1,"id":"i"}', True),
        ("qmp_capabilities twice", '{"execute":"qmp_capabilities"}', True),
    ]

    def test_error_replies(self):
        for name, text, negotiated in self.ERROR_CASES:
            with self.subTest(name):
                q, e = self.pair(negotiated)
                data = text.encode("latin-1") + b"\n"
                replies = []
                for conn in (q, e):
                    conn.sock.sendall(data)
                    replies.append(conn.read(5))
                rq, re_ = replies
                self.assertIsInstance(re_, dict, "emud gave no reply to %s: %r" % (name, re_))
                self.assert_same_error(name, rq, re_)
                # Both keep serving the connection afterwards.
                follow = '{"execute":"%s"}' % ("query-status" if negotiated else "qmp_capabilities")
                self.assert_same_shape("reply after " + name, q.exchange(follow)[0], e.exchange(follow)[0])

    def test_json_split_and_joined(self):
        q, e = self.pair()
        for conn in (q, e):
            conn.sock.sendall(b'{"execute":\n')
            self.assertIsNone(conn.read(0.2), "a partial JSON value gets no reply yet")
            conn.sock.sendall(b'"query-name"}{"execute":"query-kvm"}\n')
        self.assertEqual([q.read(5), q.read(5)], [e.read(5), e.read(5)])

    def test_qmp_capabilities_twice_with_bad_argument(self):
        """QEMU unmarshals the arguments before the handler notices that
        negotiation is over, so a type error wins. QEMU 7.2 replies to
        {"execute":"qmp_capabilities","arguments":{"enable":5}} after negotiation:
        {"error": {"class": "GenericError", "desc": "Invalid parameter type for 'enable', expected: array"}}
        emud replies CommandNotFound "Capabilities negotiation is already complete, command ignored"."""
        (rq, _), (re_, _) = self.ask_both('{"execute":"qmp_capabilities","arguments":{"enable":5}}')
        self.assertEqual(rq["error"]["class"], "GenericError")
        self.assert_same_error("qmp_capabilities twice, wrong argument type", rq, re_)


if __name__ == "__main__":
    unittest.main()
