"""Block graph operations on a VM's drives through QMP and HMP, checked with
the real qemu-img 7.2 (Debian qemu-utils) on the images afterwards:
blockdev-add/-del (and -blockdev through emuctl's flag translation), external
snapshots (blockdev-snapshot-sync, blockdev-snapshot, HMP snapshot_blkdev),
internal snapshots (and their HMP commands), block-commit (intermediate and
active, with its job events and query-block-jobs), HMP commit, and image
locking as qemu-img sees it (info without and with -U).

The VMs are 'pc' machines left in 'prelaunch' (no guest runs): the block
layer is what is under test, not a guest.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emud_harness import BUILD_DIR, EMUCTL, EmudTestCase, Qmp  # noqa: E402

QEMU_IMG = shutil.which("qemu-img")
# Machine 'pc' boots with -kernel only; the VMs never leave 'prelaunch'.
KERNEL = os.path.join(BUILD_DIR, "tests", "baremetal", "mb_smoke.bin")
QEMU_IO = shutil.which("qemu-io")
MIB = 1 << 20


def run(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


def info(path, *extra):
    return json.loads(run(QEMU_IMG, "info", "--output=json", "-U", *extra, path).stdout)


def chain(path):
    return [i["filename"] for i in info(path, "--backing-chain")]


def pattern(path, offset, length, byte, fmt="qcow2"):
    """Writes `byte` over a range with qemu-io (the image must not be in use)."""
    run(QEMU_IO, "-f", fmt, "-c", "write -P 0x%x %d %d" % (byte, offset, length), path)


def holds(path, offset, length, byte, fmt="qcow2"):
    """Does the image read `byte` over the range (through its backing chain)?"""
    r = run(QEMU_IO, "-r", "-U", "-f", fmt, "-c", "read -P 0x%x %d %d" % (byte, offset, length), path, check=False)
    return r.returncode == 0 and "Pattern verification failed" not in r.stdout


@unittest.skipUnless(QEMU_IMG and QEMU_IO, "qemu-img and qemu-io (Debian qemu-utils) are needed")
class BlockOps(EmudTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="emud-blockops-")
        self.q = None

    def tearDown(self):
        if self.q:
            self.q.close()
        super().tearDown()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def image(self, name, size=16 * MIB, backing=None):
        args = [QEMU_IMG, "create", "-q", "-f", "qcow2"]
        if backing:
            args += ["-b", backing, "-F", "qcow2"]
        run(*args, self.path(name), str(size))
        return self.path(name)

    def vm(self, name, config):
        config = dict(config, name=name, kernel=KERNEL)
        self.emud.create_vm(config, start=False)
        self.q = Qmp(self.emud.vm_socket(name))
        return self.q

    def error(self, name, args=None):
        reply = self.q.cmd(name, args)
        self.assertIn("error", reply, reply)
        return reply["error"]["desc"]

    def hmp(self, line):
        return self.q.ok("human-monitor-command", {"command-line": line})

    def inserted(self, device):
        for b in self.q.ok("query-block"):
            if b["device"] == device:
                return b["inserted"]
        self.fail("no drive %r" % device)

    # ---- blockdev-add / blockdev-del ----

    def test_blockdev_add_del_and_errors(self):
        base = self.image("base.qcow2")
        top = self.image("top.qcow2", backing=base)
        disk = self.image("disk.qcow2")
        q = self.vm("bd", {"drives": [{"file": disk, "if": "virtio"}]})
        q.ok("blockdev-add", {"driver": "file", "node-name": "f0", "filename": base, "read-only": True})
        q.ok("blockdev-add", {"driver": "qcow2", "node-name": "b0", "file": "f0", "read-only": True})
        q.ok("blockdev-add", {"driver": "qcow2", "node-name": "t0", "backing": "b0",
                              "file": {"driver": "file", "filename": top}, "cache": {"direct": False},
                              "discard": "unmap", "detect-zeroes": "unmap"})
        nodes = {n["node-name"]: n for n in q.ok("query-named-block-nodes")}
        self.assertEqual(nodes["t0"]["drv"], "qcow2")
        self.assertEqual(nodes["t0"]["file"], top)
        self.assertEqual(nodes["t0"]["backing_file_depth"], 1)
        self.assertEqual(nodes["t0"]["detect_zeroes"], "unmap")
        self.assertTrue(nodes["b0"]["ro"])
        self.assertEqual(nodes["f0"]["drv"], "file")
        self.assertIn("#block100", nodes)  # the -drive's node

        self.assertEqual(self.error("blockdev-add", {"driver": "raw", "node-name": "t0",
                                                     "file": {"driver": "file", "filename": disk}}),
                         "Duplicate node name")
        self.assertEqual(self.error("blockdev-add", {"driver": "raw", "node-name": "virtio0",
                                                     "file": {"driver": "file", "filename": base}}),
                         "node-name=virtio0 is conflicting with a device id")
        self.assertEqual(self.error("blockdev-add", {"driver": "qcow2", "file": {"driver": "file",
                                                                                 "filename": base}}),
                         "'node-name' must be specified for the root node")
        self.assertEqual(self.error("blockdev-add", {"driver": "qcow2", "node-name": "x",
                                                     "file": {"driver": "file", "filename": self.path("nope")}}),
                         "Could not open '%s': No such file or directory" % self.path("nope"))
        self.assertIn("is unexpected", self.error("blockdev-add", {"driver": "file", "node-name": "x",
                                                                   "filename": base, "bogus": 1}))
        # The drive's image is open for writing: a second writer is refused by its lock.
        self.assertIn('Failed to get "write" lock',
                      self.error("blockdev-add", {"driver": "qcow2", "node-name": "x",
                                                  "file": {"driver": "file", "filename": disk}}))

        self.assertEqual(self.error("blockdev-del", {"node-name": "b0"}),
                         "Node 'b0' is busy: node is used as backing hd of 't0'")
        self.assertEqual(self.error("blockdev-del", {"node-name": "f0"}), "Block device f0 is in use")
        self.assertEqual(self.error("blockdev-del", {"node-name": "#block100"}),
                         "Node #block100 is not owned by the monitor")
        self.assertEqual(self.error("blockdev-del", {"node-name": "zz"}),
                         "Failed to find node with node-name='zz'")
        q.ok("blockdev-del", {"node-name": "t0"})
        q.ok("blockdev-del", {"node-name": "b0"})
        q.ok("blockdev-del", {"node-name": "f0"})
        names = [n["node-name"] for n in q.ok("query-named-block-nodes")]
        self.assertFalse({"t0", "b0", "f0"} & set(names), names)
        # Closed: qemu-img may write to them again.
        run(QEMU_IMG, "check", top)

    def test_blockdev_through_emuctl_flags(self):
        disk = self.image("disk.qcow2")
        pattern(disk, 0, 65536, 0x5a)
        name = "flags"
        r = run(EMUCTL, "--socket", self.emud.socket, "run", "-name", name, "-S", "-daemonize",
                "-machine", "pc", "-display", "none", "-kernel", KERNEL,
                "-blockdev", "driver=file,node-name=proto,filename=%s" % disk,
                "-blockdev", "driver=qcow2,node-name=disk0,file=proto,read-only=off",
                "-device", "virtio-blk-pci,drive=disk0,id=vd0", check=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.q = Qmp(self.emud.vm_socket(name))
        blocks = self.q.ok("query-block")
        mine = [b for b in blocks if b.get("inserted", {}).get("node-name") == "disk0"]
        self.assertEqual(len(mine), 1, blocks)
        self.assertEqual(mine[0]["device"], "")
        self.assertEqual(mine[0]["inserted"]["file"], disk)
        self.assertEqual(self.error("blockdev-del", {"node-name": "disk0"}), "Node disk0 is in use")
        self.assertEqual(self.error("blockdev-del", {"node-name": "proto"}), "Block device proto is in use")
        # The node the device uses is the drive for snapshots too.
        self.q.ok("blockdev-snapshot-internal-sync", {"device": "disk0", "name": "s1"})
        self.q.close()
        self.q = None
        with self.emud.qmp() as d:
            d.ok("__org.emud_vm-destroy", {"name": name})
        snaps = run(QEMU_IMG, "snapshot", "-l", disk).stdout
        self.assertIn("s1", snaps)

    # ---- external snapshots ----

    def test_snapshot_sync_and_hmp_snapshot_blkdev(self):
        base = self.image("base.qcow2")
        pattern(base, 0, MIB, 0x11)
        q = self.vm("ext", {"drives": [{"file": base, "if": "virtio", "id": "d0"}]})
        s1 = self.path("s1.qcow2")
        q.ok("blockdev-snapshot-sync", {"device": "d0", "snapshot-file": s1, "snapshot-node-name": "snap1",
                                        "format": "qcow2"})
        ins = self.inserted("d0")
        self.assertEqual(ins["node-name"], "snap1")
        self.assertEqual(ins["file"], s1)
        self.assertEqual(ins["backing_file_depth"], 1)
        self.assertEqual(ins["image"]["backing-filename"], base)
        self.assertEqual(self.error("blockdev-snapshot-sync", {"device": "d0", "snapshot-file": self.path("x"),
                                                               "snapshot-node-name": "snap1"}),
                         "New snapshot node name already in use")
        self.assertEqual(self.error("blockdev-snapshot-sync", {"device": "nope", "snapshot-file": self.path("x")}),
                         "Cannot find device=nope nor node_name=")
        # The image below is no longer written: qemu-img may look at it without -U, not at the overlay.
        run(QEMU_IMG, "info", base)
        r = run(QEMU_IMG, "info", s1, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('Failed to get shared "write" lock', r.stderr)
        # By node name, and through HMP (with -n: an image made beforehand).
        s2 = self.path("s2.qcow2")
        q.ok("blockdev-snapshot-sync", {"node-name": "snap1", "snapshot-file": s2})
        s3 = self.image("s3.qcow2", backing=s2)
        self.assertEqual(self.hmp("snapshot_blkdev -n d0 %s qcow2" % s3), "")
        self.assertEqual(self.inserted("d0")["backing_file_depth"], 3)
        self.assertIn("Parameter 'snapshot-file' is missing", self.hmp("snapshot_blkdev d0"))
        q.close()
        self.q = None
        with self.emud.qmp() as d:
            d.ok("__org.emud_vm-destroy", {"name": "ext"})
        self.assertEqual(chain(s3), [s3, s2, s1, base])
        for p in (s3, s2, s1, base):
            run(QEMU_IMG, "check", p)
        self.assertTrue(holds(s3, 0, MIB, 0x11))

    def test_blockdev_snapshot_with_added_overlay(self):
        base = self.image("base.qcow2")
        pattern(base, 0, 65536, 0x22)
        over = self.image("over.qcow2", backing=base)
        q = self.vm("ref", {"drives": [{"file": base, "if": "virtio", "id": "d0", "node-name": "root0"}]})
        q.ok("blockdev-add", {"driver": "qcow2", "node-name": "ov", "backing": None,
                              "file": {"driver": "file", "filename": over}})
        q.ok("blockdev-add", {"driver": "qcow2", "node-name": "ov2",
                              "file": {"driver": "file", "filename": self.image("ov2.qcow2", backing=self.image("o.qcow2"))}})
        self.assertEqual(self.error("blockdev-snapshot", {"node": "root0", "overlay": "ov2"}),
                         "The snapshot already has a backing image")
        q.ok("blockdev-snapshot", {"node": "root0", "overlay": "ov"})
        ins = self.inserted("d0")
        self.assertEqual(ins["node-name"], "ov")
        self.assertEqual(ins["backing_file_depth"], 1)
        self.assertEqual(self.error("blockdev-snapshot", {"node": "ov", "overlay": "ov"}),
                         "The snapshot is already in use")
        self.assertEqual(self.error("blockdev-del", {"node-name": "ov"}), "Node ov is in use")
        q.ok("blockdev-del", {"node-name": "ov2"})

    # ---- internal snapshots ----

    def test_internal_snapshots(self):
        disk = self.image("disk.qcow2")
        raw = self.path("disk.raw")
        run(QEMU_IMG, "create", "-q", "-f", "raw", raw, "1M")
        q = self.vm("int", {"drives": [{"file": disk, "if": "virtio", "id": "d0"},
                                       {"file": raw, "format": "raw", "if": "virtio", "id": "r0"}]})
        q.ok("blockdev-snapshot-internal-sync", {"device": "d0", "name": "first"})
        self.assertEqual(self.hmp("snapshot_blkdev_internal d0 second"), "")
        self.assertEqual(self.error("blockdev-snapshot-internal-sync", {"device": "d0", "name": "first"}),
                         "Snapshot with name 'first' already exists on device 'd0'")
        self.assertEqual(self.error("blockdev-snapshot-internal-sync", {"device": "r0", "name": "x"}),
                         "Block format 'raw' used by device 'r0' does not support internal snapshots")
        self.assertEqual(self.error("blockdev-snapshot-internal-sync", {"device": "d0", "name": ""}),
                         "Name is empty")
        # While emud has it open, -U shows the snapshots.
        listed = run(QEMU_IMG, "snapshot", "-U", "-l", disk).stdout
        self.assertIn("first", listed)
        self.assertIn("second", listed)
        gone = q.ok("blockdev-snapshot-delete-internal-sync", {"device": "d0", "name": "first"})
        self.assertEqual(gone["name"], "first")
        self.assertEqual(gone["id"], "1")
        self.assertEqual(sorted(gone), ["date-nsec", "date-sec", "id", "name", "vm-clock-nsec", "vm-clock-sec",
                                        "vm-state-size"])
        self.assertEqual(self.error("blockdev-snapshot-delete-internal-sync", {"device": "d0", "name": "first"}),
                         "Snapshot with id '(null)' and name 'first' does not exist on device 'd0'")
        self.assertEqual(self.error("blockdev-snapshot-delete-internal-sync", {"device": "d0"}),
                         "Name or id must be provided")
        self.assertEqual(self.hmp("snapshot_delete_blkdev_internal d0 second 2"), "")
        q.ok("blockdev-snapshot-internal-sync", {"device": "d0", "name": "third"})
        q.close()
        self.q = None
        with self.emud.qmp() as d:
            d.ok("__org.emud_vm-destroy", {"name": "int"})
        listed = run(QEMU_IMG, "snapshot", "-l", disk).stdout
        self.assertNotIn("first", listed)
        self.assertNotIn("second", listed)
        self.assertIn("third", listed)
        run(QEMU_IMG, "check", disk)

    # ---- block-commit ----

    def three_layers(self):
        base = self.image("base.qcow2")
        mid = self.image("mid.qcow2", backing=base)
        top = self.image("top.qcow2", backing=mid)
        pattern(base, 0, MIB, 0xb0)
        pattern(mid, MIB, MIB, 0x30)
        pattern(top, 2 * MIB, MIB, 0x70)
        return base, mid, top

    def test_intermediate_commit(self):
        base, mid, top = self.three_layers()
        q = self.vm("ic", {"drives": [{"file": top, "if": "virtio", "id": "d0"}]})
        self.assertEqual(self.error("block-commit", {"device": "d0", "top": self.path("nope")}),
                         "Top image file %s not found" % self.path("nope"))
        self.assertEqual(self.error("block-commit", {"device": "d0", "top": mid, "base": top}),
                         "Base '%s' not found" % top)
        q.ok("block-commit", {"device": "d0", "top": mid, "base": base, "job-id": "j1"})
        ev = q.event("BLOCK_JOB_COMPLETED")
        self.assertEqual(ev["data"]["device"], "j1")
        self.assertEqual(ev["data"]["type"], "commit")
        self.assertEqual(ev["data"]["offset"], ev["data"]["len"])
        self.assertNotIn("error", ev["data"])
        self.assertEqual(q.ok("query-block-jobs"), [])
        self.assertEqual(self.inserted("d0")["backing_file_depth"], 1)
        self.assertEqual(chain(top), [top, base])
        # base now holds mid's data; the guest view is unchanged.
        self.assertTrue(holds(base, MIB, MIB, 0x30))
        self.assertTrue(holds(top, 0, MIB, 0xb0))
        self.assertTrue(holds(top, MIB, MIB, 0x30))
        self.assertTrue(holds(top, 2 * MIB, MIB, 0x70))
        run(QEMU_IMG, "info", base)  # read-only again: no write lock

    def test_active_commit_complete_and_cancel(self):
        base, mid, top = self.three_layers()
        q = self.vm("ac", {"drives": [{"file": top, "if": "virtio", "id": "d0"}]})
        q.ok("block-commit", {"device": "d0", "speed": 0})
        ready = q.event("BLOCK_JOB_READY")
        self.assertEqual(ready["data"]["device"], "d0")
        jobs = q.ok("query-block-jobs")
        self.assertEqual(len(jobs), 1)
        self.assertEqual(jobs[0]["type"], "commit")
        self.assertTrue(jobs[0]["ready"])
        self.assertEqual(jobs[0]["offset"], jobs[0]["len"])
        self.assertIn("Type commit, device d0: Completed", self.hmp("info block-jobs"))
        self.assertEqual(self.error("block-commit", {"device": "d0"}), "Job ID 'd0' already in use")
        self.assertIn("is busy: block device is in use by block job: commit",
                      self.error("blockdev-snapshot-internal-sync", {"device": "d0", "name": "x"}))
        # While the job runs the base is written: qemu-img needs -U for it.
        self.assertNotEqual(run(QEMU_IMG, "info", base, check=False).returncode, 0)
        q.ok("block-job-complete", {"device": "d0"})
        done = q.event("BLOCK_JOB_COMPLETED")
        self.assertNotIn("error", done["data"])
        ins = self.inserted("d0")
        self.assertEqual(ins["file"], base)
        self.assertEqual(ins["backing_file_depth"], 0)
        self.assertEqual(self.hmp("info block-jobs"), "No active jobs\r\n")
        q.close()
        self.q = None
        with self.emud.qmp() as d:
            d.ok("__org.emud_vm-destroy", {"name": "ac"})
        run(QEMU_IMG, "check", base)
        self.assertTrue(holds(base, 0, MIB, 0xb0))
        self.assertTrue(holds(base, MIB, MIB, 0x30))
        self.assertTrue(holds(base, 2 * MIB, MIB, 0x70))

    def test_commit_cancel_and_errors(self):
        base, mid, top = self.three_layers()
        q = self.vm("cc", {"drives": [{"file": top, "if": "virtio", "id": "d0"}]})
        self.assertEqual(self.error("block-job-complete", {"device": "nope"}), "Block job 'nope' not found")
        self.assertEqual(q.cmd("block-job-cancel", {"device": "nope"})["error"]["class"], "DeviceNotActive")
        # Slow enough to be cancelled before it is ready.
        q.ok("block-commit", {"device": "d0", "speed": 64 * 1024})
        self.assertEqual(self.error("block-job-complete", {"device": "d0"}),
                         "The active block job 'd0' cannot be completed")
        q.ok("block-job-set-speed", {"device": "d0", "speed": 128 * 1024})
        self.assertEqual(q.ok("query-block-jobs")[0]["speed"], 128 * 1024)
        self.hmp("block_job_cancel d0")
        ev = q.event("BLOCK_JOB_CANCELLED")
        self.assertEqual(ev["data"]["device"], "d0")
        self.assertEqual(self.inserted("d0")["backing_file_depth"], 2)
        # A ready active commit that is cancelled ends COMPLETED, the chain as it was.
        q.ok("block-commit", {"device": "d0", "top": top, "job-id": "again"})
        q.event("BLOCK_JOB_READY")
        q.ok("block-job-cancel", {"device": "again"})
        ev = q.event("BLOCK_JOB_COMPLETED")
        self.assertEqual(ev["data"]["device"], "again")
        self.assertEqual(self.inserted("d0")["file"], top)
        self.assertEqual(self.inserted("d0")["backing_file_depth"], 2)
        self.assertTrue(holds(base, 2 * MIB, MIB, 0x70))  # the point-in-time copy

    def test_hmp_commit(self):
        base = self.image("base.qcow2")
        pattern(base, 0, MIB, 0x01)
        top = self.image("top.qcow2", backing=base)
        pattern(top, MIB, MIB, 0x02)
        solo = self.image("solo.qcow2")
        q = self.vm("hc", {"drives": [{"file": top, "if": "virtio", "id": "d0"},
                                      {"file": solo, "if": "virtio", "id": "d1"}]})
        self.assertEqual(self.hmp("commit d0"), "")
        self.assertIn("'commit' error for 'd1': Operation not supported", self.hmp("commit d1"))
        self.assertIn("Device 'zz' not found", self.hmp("commit zz"))
        self.assertEqual(self.hmp("commit all"), "")
        self.assertEqual(self.inserted("d0")["file"], top)  # the active layer stays
        q.close()
        self.q = None
        with self.emud.qmp() as d:
            d.ok("__org.emud_vm-destroy", {"name": "hc"})
        self.assertTrue(holds(base, MIB, MIB, 0x02))
        self.assertTrue(holds(top, MIB, MIB, 0x02))
        m = json.loads(run(QEMU_IMG, "map", "--output=json", top).stdout)
        self.assertFalse(any(e["depth"] == 0 and e["data"] for e in m), m)  # top is empty again
        run(QEMU_IMG, "check", top)
        run(QEMU_IMG, "check", base)

    # ---- image locking ----

    def test_image_locking_against_qemu_img(self):
        disk = self.image("disk.qcow2")
        ro = self.image("ro.qcow2")
        self.vm("lk", {"drives": [{"file": disk, "if": "virtio", "id": "d0"},
                                  {"file": ro, "if": "virtio", "id": "d1", "readonly": "on"}]})
        r = run(QEMU_IMG, "info", disk, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('Failed to get shared "write" lock', r.stderr)
        self.assertEqual(info(disk)["filename"], disk)  # -U works
        run(QEMU_IMG, "info", ro)  # a read-only drive does not block readers
        self.assertNotEqual(run(QEMU_IO, "-c", "write 0 512", ro, check=False).returncode, 0)
        # A second VM that wants the image writable is refused, naming the lock.
        with self.emud.qmp() as d:
            r = d.cmd("__org.emud_vm-create", {"config": {"name": "lk2", "kernel": KERNEL,
                                                          "drives": [{"file": disk}]},
                                               "start": False})
        self.assertIn("error", r)
        self.assertIn('Failed to get "write" lock', r["error"]["desc"])
        with self.emud.qmp() as d:
            d.ok("__org.emud_vm-destroy", {"name": "lk"})
        run(QEMU_IMG, "info", disk)  # released


if __name__ == "__main__":
    unittest.main()
