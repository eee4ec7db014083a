# SPDX-License-Identifier: Apache-2.0
"""The Python helper against real mounts of a delta that sparse-genmodel and mksparse write.
BUILD names the build directory (sparsefs, mksparse, sparse-genmodel)."""

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import sparsefs  # noqa: E402

BUILD = os.environ.get("BUILD", "")


def read_tensor(path, name):
    """A tensor's dtype, shape and bytes, by the safetensors format alone: an 8-byte
    little-endian header length, a JSON header, then the data its offsets point into."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        t = header[name]
        begin, end = t["data_offsets"]
        f.seek(8 + n + begin)
        data = f.read(end - begin)
    if len(data) != end - begin:
        raise ValueError(f"{path}: {name} is cut short")
    return t["dtype"], t["shape"], data


def daemon_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is gone too
        return f.read().split(")")[-1].split()[0] != "Z"


def sparsefs_pids(mnt):
    out = subprocess.run(["pgrep", "-f", f"sparsefs -f .* {mnt}$"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


class FakeModel:
    """Stands for a transformers class: from_pretrained reads what it needs from the folder."""

    @classmethod
    def from_pretrained(cls, path, **kwargs):
        m = cls()
        m.path = path
        m.kwargs = kwargs
        with open(os.path.join(path, "config.json")) as f:
            m.config = json.load(f)
        m.tensor = read_tensor(os.path.join(path, "model.safetensors"), cls.tensor_name)
        return m


class MountTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not BUILD or not os.path.exists("/dev/fuse"):
            raise unittest.SkipTest("needs BUILD and /dev/fuse")
        cls.tmp = tempfile.mkdtemp(prefix="sparsefs-py-")
        cls.base, cls.ft = os.path.join(cls.tmp, "base"), os.path.join(cls.tmp, "ft")
        cls.delta = os.path.join(cls.tmp, "delta")
        subprocess.run([os.path.join(BUILD, "sparse-genmodel"), "demo", cls.base, cls.ft, "2"],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run([os.path.join(BUILD, "mksparse"), "-q", cls.base, cls.ft, "-o", cls.delta],
                       check=True)
        os.environ["SPARSEFS"] = os.path.join(BUILD, "sparsefs")
        st = os.path.join(cls.ft, "model.safetensors")
        with open(st, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            names = [k for k in json.loads(f.read(n)) if k != "__metadata__"]
        cls.name = max(names, key=lambda k: read_tensor(st, k)[2].__len__())
        cls.expected = read_tensor(st, cls.name)
        FakeModel.tensor_name = cls.name

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_mount_reads_and_unmounts(self):
        with sparsefs.mount(self.delta, options={"cache_size": "4M"}) as path:
            self.assertTrue(os.path.ismount(path))
            pids = sparsefs_pids(path)
            self.assertEqual(len(pids), 1)
            got = read_tensor(os.path.join(path, "model.safetensors"), self.name)
            self.assertEqual(got, self.expected)
        self.assertFalse(os.path.ismount(path))
        self.assertFalse(os.path.exists(path), "the temporary mount point is left")
        self.assertFalse(daemon_alive(pids[0]))

    def test_unmounts_when_the_body_raises(self):
        mnt = os.path.join(self.tmp, "mnt-raise")
        os.mkdir(mnt)
        with self.assertRaises(KeyError):
            with sparsefs.mount(self.delta, base=self.base, mountpoint=mnt) as path:
                pids = sparsefs_pids(path)
                read_tensor(os.path.join(path, "model.safetensors"), "no such tensor")
        self.assertFalse(os.path.ismount(mnt))
        self.assertTrue(os.path.isdir(mnt), "a given mount point must stay")
        self.assertFalse(daemon_alive(pids[0]))

    def test_kills_the_daemon_when_unmount_fails(self):
        with sparsefs.mount(self.delta) as path:
            pids = sparsefs_pids(path)
            held = open(os.path.join(path, "config.json"), "rb")  # busy: fusermount3 -u fails
        held.close()
        self.assertFalse(os.path.ismount(path))
        self.assertFalse(daemon_alive(pids[0]))

    def test_a_failed_mount_raises_with_the_reason(self):
        with self.assertRaisesRegex(sparsefs.MountError, "not found|No such"):
            with sparsefs.mount(self.delta, base=os.path.join(self.tmp, "nothing")):
                self.fail("mounted over a missing base")

    def test_from_pretrained_with_delta(self):
        m = sparsefs.from_pretrained_with_delta(self.delta, base_model_id=self.base,
                                                model_class=FakeModel, torch_dtype="auto")
        self.assertEqual(m.kwargs, {"torch_dtype": "auto"})
        with open(os.path.join(self.ft, "config.json")) as f:
            self.assertEqual(m.config, json.load(f))
        self.assertEqual(m.tensor, self.expected)
        self.assertFalse(os.path.ismount(m.path))


if __name__ == "__main__":
    unittest.main()
