"""Disks in the VM: Debian's kernel on machine 'pc' reads and writes ext2 file
systems on qcow2 images through virtio-blk and IDE, reads an ATAPI CD-ROM whose
medium QMP ejects and changes, sees a virtio disk grow, and stops on a write
error with werror=stop until the host has room again; afterwards the host
checks every image (qemu-img check) and the files the guest wrote (debugfs).
A virtio disk lives on emu-nbd (a qcow2 it serves over a unix socket): the
guest reads what the host put there and writes through NBD. A second guest
writes flushed blocks while emud is killed with SIGKILL: the qcow2 image
stays consistent and every flushed block is there.

Images come from real tools: mke2fs (e2fsprogs), qemu-img (the virtio disk)
and emu-img (the IDE disk). Two boots of the kit's vmlinux, one vCPU each.
"""
import hashlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emud_harness import BUILD_DIR, EmudTestCase, Qmp  # noqa: E402
from test_boot import BOOT_TIMEOUT, MARKER, PROMPT, Console, guest_file  # noqa: E402

EMU_IMG = os.environ.get("EMU_IMG", os.path.join(BUILD_DIR, "clients", "emu-img"))
EMU_NBD = os.environ.get("EMU_NBD", os.path.join(BUILD_DIR, "clients", "emu-nbd"))
MKE2FS = shutil.which("mke2fs") or "/sbin/mke2fs"
DEBUGFS = shutil.which("debugfs") or "/sbin/debugfs"
SEQ = "".join("%d\n" % i for i in range(1, 20001))


def sh(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


class DiskGuest(EmudTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="emud-disks-")
        self.con = self.q = None
        self.nbd = None

    def tearDown(self):
        for c in (self.con, self.q):
            if c:
                c.close()
        super().tearDown()
        if self.nbd and self.nbd.poll() is None:
            self.nbd.kill()
            self.nbd.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def boot(self, name, drives):
        self.emud.create_vm({"name": name, "kernel": guest_file("vmlinux"),
                             "initrd": guest_file("initramfs.cpio.gz"),
                             "append": "console=ttyS0 panic=-1 emu_mode=shell", "memory": {"size": 256 << 20},
                             "chardevs": [{"id": "con", "backend": "console"}], "serials": ["con"],
                             "drives": drives}, start=False)
        self.con = Console(self.emud.vm_socket(name, "console"))
        self.q = Qmp(self.emud.vm_socket(name))
        self.q.ok("cont")
        self.con.expect(MARKER, BOOT_TIMEOUT)
        self.con.expect(PROMPT)

    def wait_gone(self, name, timeout=30):
        deadline = time.time() + timeout
        with self.emud.qmp() as d:
            while any(v["name"] == name for v in d.ok("__org.emud_vm-list")):
                self.assertLess(time.time(), deadline, "VM %s still exists" % name)
                time.sleep(0.1)

    def sh(self, command, timeout=60):
        return self.con.run(command, timeout)

    def hmp(self, line):
        return self.q.ok("human-monitor-command", {"command-line": line})

    def ext2_image(self, name, size="32M"):
        src = self.path(name + ".src")
        os.mkdir(src)
        with open(os.path.join(src, "hello"), "w") as f:
            f.write("hello from the host\n")
        raw = self.path(name + ".raw")
        sh(MKE2FS, "-q", "-F", "-t", "ext2", "-d", src, raw, size)
        return raw

    def guest_file(self, qcow2, name):
        raw = qcow2 + ".check.raw"
        sh("qemu-img", "convert", "-O", "raw", qcow2, raw)
        return sh(DEBUGFS, "-R", "cat /" + name, raw)

    def test_virtio_ide_cdrom_resize_and_werror_stop(self):
        base = self.ext2_image("base")
        vd = self.path("vd.qcow2")
        sd = self.path("sd.qcow2")
        sh("qemu-img", "convert", "-O", "qcow2", base, vd)           # made by qemu-img
        sh(EMU_IMG, "convert", "-O", "qcow2", base, sd)             # made by emu-img
        cd1, cd2 = self.path("cd1.iso"), self.path("cd2.iso")
        for p in (cd1, cd2):
            with open(p, "wb") as f:
                f.write(os.urandom(1 << 20))
        err = self.path("err.raw")
        with open(err, "wb") as f:
            f.truncate(16 << 20)
        md5 = {}
        for p in (cd1, cd2):
            with open(p, "rb") as f:
                md5[p] = hashlib.md5(f.read(2048)).hexdigest()
        # emu-nbd serves a qcow2 that starts with the host's bytes.
        seed = self.path("nbd.raw")
        with open(seed, "wb") as f:
            f.write(b"HOST-ON-NBD")
            f.truncate(8 << 20)
        nbd_image = self.path("nbd.qcow2")
        sh(EMU_IMG, "convert", "-O", "qcow2", seed, nbd_image)
        nbd_sock = self.path("nbd.sock")
        self.nbd = subprocess.Popen([EMU_NBD, "-t", "-f", "qcow2", "-k", nbd_sock, nbd_image],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 10
        while not os.path.exists(nbd_sock):
            self.assertIsNone(self.nbd.poll(), "emu-nbd exited")
            self.assertLess(time.time(), deadline, "emu-nbd did not listen")
            time.sleep(0.05)
        self.boot("disks", [
            {"file": vd, "if": "virtio", "serial": "VDSERIAL"},
            {"file": sd, "if": "ide", "index": "0"},
            {"file": cd1, "media": "cdrom", "index": "2"},
            {"file": err, "if": "virtio", "format": "raw", "werror": "stop", "id": "err"},
            {"file": "nbd+unix:///?socket=" + nbd_sock, "if": "virtio", "format": "raw", "id": "nbd0",
             "serial": "NBDDISK"},
        ])
        # The disk on emu-nbd: the host's bytes, then the guest's, flushed.
        serial = self.sh("grep -l NBDDISK /sys/block/vd*/serial")
        self.assertRegex(serial, r"^/sys/block/vd[a-z]/serial$")
        nbd_dev = serial.split("/")[3]
        self.assertEqual(self.sh("dd if=/dev/%s bs=11 count=1 2>/dev/null; echo" % nbd_dev), "HOST-ON-NBD")
        self.sh("printf GUEST-OVER-NBD | dd of=/dev/%s bs=512 seek=4096 conv=fsync 2>/dev/null" % nbd_dev)
        self.assertEqual(self.sh("dd if=/dev/%s bs=512 skip=4096 count=1 2>/dev/null | head -c 14; echo"
                                 % nbd_dev), "GUEST-OVER-NBD")
        # Both disks: the host's file, then the guest's own.
        for dev, mnt in (("vda", "/mnt"), ("sda", "/m2")):
            self.assertEqual(self.sh("mkdir -p %s && mount -t ext2 /dev/%s %s && cat %s/hello"
                                     % (mnt, dev, mnt, mnt)).splitlines()[-1], "hello from the host")
            self.sh("seq 1 20000 > %s/seq && echo %s > %s/who && umount %s && echo ok" % (mnt, dev, mnt, mnt))
        self.assertEqual(self.sh("cat /sys/block/vda/serial"), "VDSERIAL")
        self.assertEqual(self.sh("dd if=/dev/sr0 bs=2048 count=1 2>/dev/null | md5sum").split()[0], md5[cd1])

        block = {b["device"]: b for b in self.q.ok("query-block")}
        self.assertEqual(sorted(block), ["err", "ide0-hd0", "ide1-cd0", "nbd0", "virtio0"])
        self.assertEqual(block["virtio0"]["inserted"]["drv"], "qcow2")
        self.assertEqual(block["virtio0"]["inserted"]["image"]["virtual-size"], 32 << 20)
        self.assertTrue(block["ide1-cd0"]["removable"])
        self.assertFalse(block["ide1-cd0"]["tray_open"])
        self.assertTrue(block["ide1-cd0"]["inserted"]["ro"])
        stats = {s["device"]: s["stats"] for s in self.q.ok("query-blockstats")}
        for dev in ("virtio0", "ide0-hd0"):
            self.assertGreater(stats[dev]["rd_operations"], 0, dev)
            self.assertGreater(stats[dev]["wr_bytes"], 80000, dev)  # seq is 108,894 bytes
            self.assertGreater(stats[dev]["flush_operations"], 0, dev)
        self.assertGreaterEqual(stats["ide1-cd0"]["rd_bytes"], 2048)
        self.assertIn("ide1-cd0 (#block102): %s (raw, read-only)" % cd1, self.hmp("info block"))

        # The CD-ROM: eject, then another medium.
        self.q.ok("eject", {"device": "ide1-cd0"})
        self.assertEqual(self.q.event("DEVICE_TRAY_MOVED")["data"]["tray-open"], True)
        self.assertNotIn("inserted", {b["device"]: b for b in self.q.ok("query-block")}["ide1-cd0"])
        self.assertIn("No medium", self.sh("dd if=/dev/sr0 bs=2048 count=1 of=/dev/null 2>&1; true"))
        self.q.ok("blockdev-change-medium", {"device": "ide1-cd0", "filename": cd2, "format": "raw"})
        self.assertEqual(self.q.event("DEVICE_TRAY_MOVED")["data"]["tray-open"], False)
        self.sh("dd if=/dev/sr0 bs=2048 count=1 of=/dev/null 2>/dev/null; true")  # the drive reports the change
        self.assertEqual(self.sh("dd if=/dev/sr0 bs=2048 count=1 2>/dev/null | md5sum").split()[0], md5[cd2])

        # block_resize: the virtio disk grows under the guest.
        self.q.ok("block_resize", {"device": "virtio0", "size": 48 << 20})
        deadline = time.time() + 30
        while self.sh("cat /sys/block/vda/size") != str(48 << 11):
            self.assertLess(time.time(), deadline, "the guest did not see the new size")
            time.sleep(0.5)
        self.assertIn("Shrinking", self.q.cmd("block_resize", {"device": "virtio0", "size": 1 << 20})["error"]["desc"])

        # werror=stop: a write past the file size limit stops the VM until
        # the host has room and 'cont' retries it.
        resource.prlimit(self.emud.pid, resource.RLIMIT_FSIZE, (8 << 20, resource.RLIM_INFINITY))
        self.con.sock.sendall(b"printf WRITTEN-AFTER-CONT | dd of=/dev/vdb bs=512 seek=24576 conv=fsync"
                              b" 2>/dev/null; echo dd-done\n")
        ev = self.q.event("BLOCK_IO_ERROR", timeout=60)
        self.assertEqual((ev["data"]["device"], ev["data"]["operation"], ev["data"]["action"]),
                         ("err", "write", "stop"))
        self.q.event("STOP")
        self.assertEqual(self.q.ok("query-status")["status"], "io-error")
        self.assertEqual({b["device"]: b for b in self.q.ok("query-block")}["err"]["io-status"], "failed")
        resource.prlimit(self.emud.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        self.q.ok("cont")
        self.con.expect(b"dd-done", 60)
        self.con.expect(PROMPT)
        with open(err, "rb") as f:
            f.seek(12 << 20)
            self.assertEqual(f.read(18), b"WRITTEN-AFTER-CONT")

        self.con.sock.sendall(b"poweroff\n")
        self.q.event("SHUTDOWN", timeout=60)
        self.wait_gone("disks")  # the images are closed (and unlocked) with the VM
        for image in (vd, sd):
            self.assertEqual(subprocess.run(["qemu-img", "check", image], capture_output=True).returncode, 0,
                             sh("qemu-img", "info", image))
        self.assertEqual(self.guest_file(vd, "seq"), SEQ)
        self.assertEqual(self.guest_file(sd, "seq"), SEQ)
        self.assertEqual(self.guest_file(vd, "who"), "vda\n")
        self.assertEqual(self.guest_file(sd, "who"), "sda\n")
        # emu-nbd wrote what the guest flushed into its qcow2.
        self.nbd.send_signal(signal.SIGTERM)
        self.assertEqual(self.nbd.wait(10), 0, self.nbd.stderr.read())
        self.assertEqual(subprocess.run(["qemu-img", "check", nbd_image], capture_output=True).returncode, 0)
        back = self.path("nbd.back.raw")
        sh("qemu-img", "convert", "-O", "raw", nbd_image, back)
        with open(back, "rb") as f:
            self.assertEqual(f.read(11), b"HOST-ON-NBD")
            f.seek(4096 * 512)
            self.assertEqual(f.read(14), b"GUEST-OVER-NBD")

    def test_sigkill_during_writes_keeps_flushed_blocks(self):
        disk = self.path("crash.qcow2")
        sh(EMU_IMG, "create", "-f", "qcow2", disk, "64M")
        self.boot("crash", [{"file": disk, "if": "virtio", "cache": "writeback"}])
        # Block i (64 KiB) is filled with the letter "ABCD"[i % 4]; after its
        # fsync the guest says so. Writes keep coming until the kill.
        self.sh("for c in A B C D; do printf $c > /tmp/$c; k=0; while [ $k -lt 16 ]; do "
                "cat /tmp/$c /tmp/$c > /tmp/x; mv /tmp/x /tmp/$c; k=$((k+1)); done; done; ls -l /tmp/D", 120)
        self.con.sock.sendall(b"i=0; while [ $i -lt 1000 ]; do c=$(echo ABCD | cut -c$((i % 4 + 1))); "
                              b"dd if=/tmp/$c of=/dev/vda bs=65536 seek=$i conv=fsync 2>/dev/null "
                              b"&& echo FLUSHED-$i; i=$((i+1)); done\n")
        try:
            self.con.expect(b"FLUSHED-40\r\n", 240)
        except (AssertionError, OSError):
            self.fail("no FLUSHED-40; console:\n" + self.con.text()[-2000:])
        out = self.con.text()
        flushed = max(int(n) for n in re.findall(r"FLUSHED-(\d+)", "FLUSHED-40\n" + out))
        os.kill(self.emud.pid, signal.SIGKILL)
        self.emud.proc.wait()
        self.emud.stop()  # cleans up after the dead one
        from emud_harness import Emud
        self.emud = Emud()  # tearDown expects a live emud
        check = subprocess.run(["qemu-img", "check", disk], capture_output=True, text=True)
        self.assertIn(check.returncode, (0, 3), "corruption after SIGKILL:\n" + check.stdout + check.stderr)
        self.assertNotIn("ERROR", check.stdout)
        raw = self.path("crash.raw")
        sh("qemu-img", "convert", "-O", "raw", disk, raw)
        with open(raw, "rb") as f:
            for i in range(flushed + 1):
                f.seek(i * 65536)
                self.assertEqual(f.read(65536), b"ABCD"[i % 4:i % 4 + 1] * 65536, "flushed block %d" % i)


if __name__ == "__main__":
    unittest.main()
