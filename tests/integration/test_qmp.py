"""QMP wire protocol and commands, against the real emud over real sockets."""

import json
import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emud_harness import EmudTestCase, Qmp  # noqa: E402


class Greeting(EmudTestCase):
    def test_greeting_and_negotiation(self):
        q = self.emud.qmp(negotiate=False)
        g = q.greeting["QMP"]
        self.assertEqual(g["capabilities"], [])
        self.assertEqual(set(g["version"]), {"qemu", "package"})
        self.assertEqual(set(g["version"]["qemu"]), {"major", "minor", "micro"})
        # Before qmp_capabilities, every other command is CommandNotFound.
        r = q.cmd("query-version", id="a")
        self.assertEqual(r["error"]["class"], "CommandNotFound")
        self.assertIn("qmp_capabilities", r["error"]["desc"])
        self.assertEqual(r["id"], "a")
        self.assertEqual(q.cmd("qmp_capabilities"), {"return": {}})
        r = q.cmd("qmp_capabilities")
        self.assertEqual(r["error"]["class"], "CommandNotFound")
        self.assertIn("return", q.cmd("query-version"))
        q.close()

    def test_id_is_echoed_verbatim(self):
        with self.emud.qmp() as q:
            for ident in ["x", 7, 2.5, {"a": [1, None]}, [1, "two"], None, True]:
                r = q.cmd("query-version", id=ident)
                self.assertIn("id", r)
                self.assertEqual(r["id"], ident)
            # Errors carry the id too.
            r = q.cmd("no-such-command", id={"k": 1})
            self.assertEqual(r["id"], {"k": 1})

    def test_unsupported_capability(self):
        q = self.emud.qmp(negotiate=False)
        r = q.cmd("qmp_capabilities", {"enable": ["oob"]})
        self.assertEqual(r["error"]["class"], "GenericError")
        r = q.cmd("qmp_capabilities", {"enable": ["bogus"]})
        self.assertEqual(r["error"]["class"], "GenericError")
        self.assertEqual(q.cmd("qmp_capabilities"), {"return": {}})
        q.close()

    def test_several_messages_in_one_packet_and_split_messages(self):
        with self.emud.qmp() as q:
            q.send_raw('{"execute":"query-target","id":1}{"execute":"query-target","id":2}\n')
            self.assertEqual(q.reply()["id"], 1)
            self.assertEqual(q.reply()["id"], 2)
            for part in ['{"exec', 'ute": "query', '-target", "id": "s', 'plit"}']:
                q.send_raw(part)
                time.sleep(0.02)
            self.assertEqual(q.reply(), {"return": {"arch": "x86_64"}, "id": "split"})
            q.send_raw('{"execute": "query-target",\n "id": "multi\\"line}"\n}\n')
            self.assertEqual(q.reply()["id"], 'multi"line}')


class DaemonTcp(EmudTestCase):
    emud_args = ("--listen", "127.0.0.1:0")

    def test_tcp_control_endpoint(self):
        # Port 0: the kernel picks one; emud logs the address it listens on.
        for _ in range(50):
            addrs = [l.split("listening on ")[1].strip() for l in self.emud.log_text().splitlines()
                     if "listening on tcp:" in l]
            if addrs:
                break
            time.sleep(0.05)
        self.assertTrue(addrs, self.emud.log_text())
        with Qmp(addrs[0]) as q:
            vm = q.ok("__org.emud_vm-create", {"config": {"machine": {"type": "none"}, "name": "tcpvm"}})
            self.assertEqual(vm["name"], "tcpvm")
            self.assertEqual([v["name"] for v in q.ok("__org.emud_vm-list")], ["tcpvm"])


class Introspection(EmudTestCase):
    def test_commands_events_and_schema_agree(self):
        self.emud.create_vm({"machine": {"type": "none"}, "name": "a"})
        for address in [self.emud.socket, self.emud.vm_socket("a")]:
            with Qmp(address) as q:
                commands = {c["name"] for c in q.ok("query-commands")}
                events = {e["name"] for e in q.ok("query-events")}
                schema = q.ok("query-qmp-schema")
                names = {e["name"] for e in schema}
                by_name = {e["name"]: e for e in schema}
                self.assertEqual(len(names), len(schema), "duplicate SchemaInfo names")
                self.assertEqual({e["name"] for e in schema if e["meta-type"] == "command"}, commands)
                self.assertEqual({e["name"] for e in schema if e["meta-type"] == "event"}, events)
                # Every type referenced is defined.
                for e in schema:
                    refs = []
                    if e["meta-type"] in ("command",):
                        refs = [e["arg-type"], e["ret-type"]]
                    elif e["meta-type"] == "event":
                        refs = [e["arg-type"]]
                    elif e["meta-type"] == "object":
                        refs = [m["type"] for m in e["members"]]
                    elif e["meta-type"] == "array":
                        refs = [e["element-type"]]
                    for r in refs:
                        self.assertIn(r, by_name, "%s refers to undefined %s" % (e["name"], r))
                self.assertIn("qmp_capabilities", commands)
                self.assertIn("query-qmp-schema", commands)
        with Qmp(self.emud.vm_socket("a")) as q:
            commands = {c["name"] for c in q.ok("query-commands")}
            for c in ["query-status", "stop", "cont", "system_reset", "system_powerdown", "quit",
                      "human-monitor-command", "query-cpus-fast", "query-name", "query-uuid",
                      "query-kvm", "query-target", "query-machines", "query-version"]:
                self.assertIn(c, commands)
            # A stock client on a VM endpoint sees one VM: no daemon commands.
            self.assertFalse([c for c in commands if "vm-create" in c])
            events = {e["name"] for e in q.ok("query-events")}
            self.assertTrue({"STOP", "RESUME", "RESET", "SHUTDOWN", "POWERDOWN"} <= events)


class VmCommands(EmudTestCase):
    def test_queries(self):
        self.emud.create_vm({"machine": {"type": "none"}, "name": "alpha", "uuid": "12345678-1234-1234-1234-123456789abc",
                             "machine": {"type": "none"}, "memory": {"size": 64 << 20}})
        with Qmp(self.emud.vm_socket("alpha")) as q:
            self.assertEqual(q.ok("query-name"), {"name": "alpha"})
            self.assertEqual(q.ok("query-uuid"), {"UUID": "12345678-1234-1234-1234-123456789abc"})
            self.assertEqual(q.ok("query-status"), {"running": True, "singlestep": False, "status": "running"})
            self.assertEqual(q.ok("query-target"), {"arch": "x86_64"})
            kvm = q.ok("query-kvm")
            self.assertEqual(kvm["enabled"], False)
            self.assertEqual(kvm["present"], True)  # built in, as QEMU says
            kvm_usable = os.access("/dev/kvm", os.R_OK | os.W_OK)
            self.assertEqual(q.ok("query-cpus-fast"), [])
            models = {m["name"] for m in q.ok("query-cpu-definitions")}
            self.assertTrue({"qemu64", "max", "base"} <= models)
            self.assertEqual("host" in models, kvm_usable)
            machines = q.ok("query-machines")
            none = [m for m in machines if m["name"] == "none"]
            self.assertEqual(len(none), 1)
            self.assertEqual(none[0]["cpu-max"], 1)

    def test_stop_cont_events(self):
        self.emud.create_vm({"machine": {"type": "none"}, "name": "b"})
        q1 = Qmp(self.emud.vm_socket("b"))
        q2 = Qmp(self.emud.vm_socket("b"))
        self.assertEqual(q1.ok("stop"), {})
        for q in (q1, q2):
            ev = q.event("STOP")
            self.assertNotIn("data", ev)
            self.assertEqual(set(ev["timestamp"]), {"seconds", "microseconds"})
            self.assertLess(abs(ev["timestamp"]["seconds"] - time.time()), 5)
        self.assertEqual(q2.ok("query-status")["status"], "paused")
        # Stopping a stopped VM is fine and emits nothing.
        self.assertEqual(q1.ok("stop"), {})
        self.assertEqual(q1.ok("cont"), {})
        for q in (q1, q2):
            q.event("RESUME")
        self.assertEqual(q1.ok("query-status")["status"], "running")
        self.assertEqual(q1.events, [])
        q1.close()
        q2.close()

    def test_reset_and_powerdown_events(self):
        self.emud.create_vm({"machine": {"type": "none"}, "name": "c"})
        with Qmp(self.emud.vm_socket("c")) as q:
            self.assertEqual(q.ok("system_reset"), {})
            ev = q.event("RESET")
            self.assertEqual(ev["data"], {"guest": False, "reason": "host-qmp-system-reset"})
            self.assertEqual(q.ok("system_powerdown"), {})
            q.event("POWERDOWN")
            # Machine 'none' has no ACPI: the VM keeps running.
            self.assertEqual(q.ok("query-status")["status"], "running")

    def test_start_paused_is_prelaunch(self):
        self.emud.create_vm({"machine": {"type": "none"}, "name": "p", "start-paused": True})
        with Qmp(self.emud.vm_socket("p")) as q:
            self.assertEqual(q.ok("query-status"), {"running": False, "singlestep": False, "status": "prelaunch"})
            self.assertEqual(q.ok("cont"), {})
            q.event("RESUME")
            self.assertEqual(q.ok("query-status")["status"], "running")

    def test_quit_ends_only_that_vm(self):
        self.emud.create_vm({"machine": {"type": "none"}, "name": "q1"})
        self.emud.create_vm({"machine": {"type": "none"}, "name": "q2"})
        d = self.emud.qmp()
        q = Qmp(self.emud.vm_socket("q1"))
        self.assertEqual(q.cmd("quit", id="bye"), {"return": {}, "id": "bye"})
        ev = q.event("SHUTDOWN")
        self.assertEqual(ev["data"], {"guest": False, "reason": "host-qmp-quit"})
        with self.assertRaises((EOFError, ConnectionError)):
            for _ in range(10):
                q.read_message()
        q.close()
        d.event("__org.emud_VM_DESTROYED")
        self.assertEqual([v["name"] for v in d.ok("__org.emud_vm-list")], ["q2"])
        self.assertFalse(os.path.exists(self.emud.vm_socket("q1")))
        with Qmp(self.emud.vm_socket("q2")) as q2:
            self.assertEqual(q2.ok("query-status")["status"], "running")
        d.close()

    def test_internal_error_is_contained(self):
        self.emud.create_vm({"machine": {"type": "none"}, "name": "bad"})
        self.emud.create_vm({"machine": {"type": "none"}, "name": "good"})
        with Qmp(self.emud.vm_socket("bad")) as q:
            q.ok("__org.emud_inject-internal-error", {"reason": "test fault"})
            q.event("STOP")
            ev = q.event("__org.emud_INTERNAL_ERROR")
            self.assertEqual(ev["data"]["reason"], "test fault")
            self.assertEqual(q.ok("query-status")["status"], "internal-error")
            r = q.cmd("cont")
            self.assertEqual(r["error"]["class"], "GenericError")
            self.assertIn("Resetting", r["error"]["desc"])
            q.ok("system_reset")
            # As QEMU: a reset of a VM that is not running leaves it in prelaunch.
            self.assertEqual(q.ok("query-status")["status"], "prelaunch")
            q.ok("cont")
            self.assertEqual(q.ok("query-status")["status"], "running")
        with self.emud.qmp() as d:
            states = {v["name"]: v["status"] for v in d.ok("__org.emud_vm-list")}
            self.assertEqual(states, {"bad": "running", "good": "running"})


class DaemonCommands(EmudTestCase):
    def test_create_list_destroy(self):
        with self.emud.qmp() as d:
            vm = d.ok("__org.emud_vm-create", {"config": {"machine": {"type": "none"}, "name": "x1"}, "start": False})
            self.assertEqual(vm["status"], "prelaunch")
            protos = {e["protocol"]: e["address"] for e in vm["endpoints"]}
            self.assertEqual(protos["qmp"], "unix:" + self.emud.vm_socket("x1"))
            self.assertTrue(os.path.exists(self.emud.vm_socket("x1", "hmp")))
            d.event("__org.emud_VM_CREATED")
            auto = d.ok("__org.emud_vm-create", {"config": {"machine": {"type": "none"}}})
            self.assertTrue(auto["name"].startswith("vm"))
            self.assertEqual(len(d.ok("__org.emud_vm-list")), 2)
            r = d.cmd("__org.emud_vm-create", {"config": {"machine": {"type": "none"}, "name": "x1"}})
            self.assertIn("already exists", r["error"]["desc"])
            self.assertEqual(d.ok("__org.emud_vm-get-config", {"name": "x1"})["name"], "x1")
            self.assertEqual(d.ok("__org.emud_vm-execute", {"name": "x1", "execute": "query-status"})["status"],
                             "prelaunch")
            r = d.cmd("__org.emud_vm-execute", {"name": "x1", "execute": "nope"})
            self.assertEqual(r["error"]["class"], "CommandNotFound")
            r = d.cmd("__org.emud_vm-destroy", {"name": "missing"})
            self.assertEqual(r["error"]["class"], "DeviceNotFound")
            d.ok("__org.emud_vm-destroy", {"name": "x1"})
            self.assertEqual(len(d.ok("__org.emud_vm-list")), 1)
            self.assertFalse(os.path.exists(self.emud.vm_socket("x1")))
            # Daemon endpoint has no VM commands.
            r = d.cmd("query-status")
            self.assertEqual(r["error"]["class"], "CommandNotFound")

    def test_config_errors_name_the_cause(self):
        cases = [
            ({"name": "bad name"}, "invalid"),
            ({"uuid": "xyz"}, "uuid"),
            ({"machine": {"type": "nosuch"}}, "nosuch"),
            ({"machine": {"type": "none", "props": {"foo": "bar"}}}, "foo"),
            ({"machine": {"type": "none"}, "smp": {"cpus": 4}}, "max CPUs"),
            ({"smp": {"cpus": 256}}, "max CPUs"),
            ({"memory": {"size": 100}}, "memory"),
            ({"accel": [{"type": "hax"}]}, "hax"),
            ({"cpu": {"model": "pentium9"}}, "pentium9"),
            ({"drives": [{"file": "/nonexistent/x"}]}, "Could not open '/nonexistent/x'"),
            ({"netdevs": [{"type": "user"}]}, "netdevs"),
            ({"devices": [{"driver": "e1000"}]}, "e1000"),
            ({"vnc": {"display": ":1"}}, "VNC"),
            ({"incoming": "tcp:0:4444"}, "incoming"),
            ({"snapshot": "yes"}, "snapshot"),
            ({"display": {"type": "sdl"}}, "sdl"),
            ({"chardevs": [{"id": "c", "backend": "spicevmc"}]}, "SPICE"),
            ({"serials": ["nochardev"]}, "nochardev"),
            ({"kernel": "/boot/vmlinuz"}, "kernel"),
            ({"append": "console=ttyS0"}, "-kernel"),
            ({"memory": {"size": "1G"}}, "config.memory.size"),
            ({"nonsense": 1}, "config.nonsense"),
        ]
        with self.emud.qmp() as d:
            for config, word in cases:
                r = d.cmd("__org.emud_vm-create", {"config": config})
                self.assertIn("error", r, config)
                self.assertEqual(r["error"]["class"], "GenericError", config)
                self.assertIn(word, r["error"]["desc"], config)
            self.assertEqual(d.ok("__org.emud_vm-list"), [])

    def test_monitor_endpoints_from_config(self):
        qmp_path = os.path.join(self.emud.dir, "extra-qmp.sock")
        hmp_path = os.path.join(self.emud.dir, "extra-hmp.sock")
        self.emud.create_vm({
            "machine": {"type": "none"},
            "name": "mon",
            "chardevs": [
                {"id": "q", "backend": "socket", "props": {"path": qmp_path, "server": "on", "wait": "off"}},
                {"id": "h", "backend": "socket", "props": {"path": hmp_path, "server": "on", "wait": "off"}},
            ],
            "monitors": [{"chardev": "q", "mode": "control"}, {"chardev": "h", "mode": "readline"}],
        })
        with Qmp(qmp_path) as q:
            self.assertEqual(q.ok("query-name"), {"name": "mon"})
        s = socket.socket(socket.AF_UNIX)
        s.connect(hmp_path)
        s.settimeout(5)
        data = b""
        while not data.endswith(b"(qemu) "):
            data += s.recv(4096)
        s.sendall(b"info name\n")
        data = b""
        while not data.endswith(b"(qemu) "):
            data += s.recv(4096)
        self.assertEqual(data, b"mon\r\n(qemu) ")
        s.close()

    def test_wait_server_holds_start_until_client(self):
        qmp_path = os.path.join(self.emud.dir, "wait-qmp.sock")
        self.emud.create_vm({
            "machine": {"type": "none"},
            "name": "w",
            "chardevs": [{"id": "q", "backend": "socket", "props": {"path": qmp_path, "server": "on"}}],
            "monitors": [{"chardev": "q", "mode": "control"}],
        })
        with Qmp(self.emud.vm_socket("w")) as q:
            self.assertEqual(q.ok("query-status")["status"], "prelaunch")
            with Qmp(qmp_path):
                # The VM starts as the client connects (before it negotiates,
                # so, as with QEMU, that client does not see RESUME).
                q.event("RESUME")
            self.assertEqual(q.ok("query-status")["status"], "running")

    def test_daemon_quit(self):
        self.emud.create_vm({"machine": {"type": "none"}, "name": "z"})
        vmq = Qmp(self.emud.vm_socket("z"))
        with self.emud.qmp() as d:
            self.assertEqual(d.ok("quit"), {})
        ev = vmq.event("SHUTDOWN")
        self.assertEqual(ev["data"]["guest"], False)
        self.emud.proc.wait(10)
        self.assertEqual(self.emud.proc.returncode, 0)
        self.assertFalse(os.path.exists(self.emud.socket))
        vmq.close()
        # tearDown expects a live daemon; restart one so it has something to stop.
        self.emud.stop()
        from emud_harness import Emud
        self.emud = Emud()


class Hmp(EmudTestCase):
    def hmp(self, vm):
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.emud.vm_socket(vm, "hmp"))
        s.settimeout(5)
        banner = b""
        while not banner.endswith(b"(qemu) "):
            banner += s.recv(4096)
        self.assertIn(b"monitor - type 'help' for more information", banner)
        return s

    def run_hmp(self, s, line):
        s.sendall(line.encode() + b"\n")
        data = b""
        while not data.endswith(b"(qemu) "):
            chunk = s.recv(4096)
            if not chunk:
                return data.decode()
            data += chunk
        return data[:-len(b"(qemu) ")].decode()

    def test_info_and_actions(self):
        self.emud.create_vm({"machine": {"type": "none"}, "name": "h", "uuid": "12345678-1234-1234-1234-123456789abc"})
        s = self.hmp("h")
        self.assertEqual(self.run_hmp(s, "info status"), "VM status: running\r\n")
        self.assertEqual(self.run_hmp(s, "info name"), "h\r\n")
        self.assertEqual(self.run_hmp(s, "info uuid"), "12345678-1234-1234-1234-123456789abc\r\n")
        self.assertRegex(self.run_hmp(s, "info version"), r"^2\.10\.1 \(emud")
        self.assertRegex(self.run_hmp(s, "info kvm"), r"^kvm support: ")
        self.assertEqual(self.run_hmp(s, "info cpus"), "")
        self.assertEqual(self.run_hmp(s, "stop"), "")
        self.assertEqual(self.run_hmp(s, "info status"), "VM status: paused\r\n")
        self.assertEqual(self.run_hmp(s, "c"), "")
        self.assertEqual(self.run_hmp(s, "info status"), "VM status: running\r\n")
        self.assertEqual(self.run_hmp(s, "system_reset"), "")
        self.assertEqual(self.run_hmp(s, "system_powerdown"), "")
        self.assertEqual(self.run_hmp(s, "frobnicate"), "unknown command: 'frobnicate'\r\n")
        self.assertEqual(self.run_hmp(s, "info frob"), "unknown command: 'info frob'\r\n")
        help_text = self.run_hmp(s, "help")
        for c in ["stop", "cont", "system_reset", "system_powerdown", "quit", "info status", "info cpus"]:
            self.assertIn(c, help_text)
        self.assertEqual(self.run_hmp(s, ""), "")
        self.assertIn("longer than", self.run_hmp(s, "x" * 10000))
        self.assertEqual(self.run_hmp(s, "quit"), "")
        s.close()
        with self.emud.qmp() as d:
            for _ in range(100):
                if not d.ok("__org.emud_vm-list"):
                    break
                time.sleep(0.02)
            self.assertEqual(d.ok("__org.emud_vm-list"), [])

    def test_human_monitor_command_over_qmp(self):
        self.emud.create_vm({"machine": {"type": "none"}, "name": "hq", "start-paused": True})
        with Qmp(self.emud.vm_socket("hq")) as q:
            self.assertEqual(q.ok("human-monitor-command", {"command-line": "info status"}),
                             "VM status: paused (prelaunch)\r\n")
            self.assertEqual(q.ok("human-monitor-command", {"command-line": "cont"}), "")
            q.event("RESUME")
            r = q.cmd("human-monitor-command", {"command-line": 5})
            self.assertEqual(r["error"]["desc"], "Invalid parameter type for 'command-line', expected: string")


if __name__ == "__main__":
    unittest.main()
