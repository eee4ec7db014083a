# SPDX-License-Identifier: Apache-2.0
"""Mount sparse deltas from Python, and load the models they hold.

    import sparsefs
    with sparsefs.mount("my-sft.delta") as path:
        model = AutoModelForCausalLM.from_pretrained(path)

    model = sparsefs.from_pretrained_with_delta("my-sft.delta",
                                                base_model_id="meta-llama/Llama-2-7b-hf")

Standard library only: the sparsefs program does the work; this module starts it, waits until
the mount is ready, and unmounts it when done (also when the body raises), ending the daemon by
its pid if the unmount fails.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

__all__ = ["MountError", "mount", "from_pretrained_with_delta"]
__version__ = "0.1.0"


class MountError(RuntimeError):
    """sparsefs could not mount the delta (its message says why)."""


def _program(sparsefs):
    prog = sparsefs or os.environ.get("SPARSEFS") or shutil.which("sparsefs")
    if not prog:
        raise MountError("sparsefs: not found on PATH (set SPARSEFS or pass sparsefs=)")
    return prog


def _option_list(base, options):
    """-o values from base= and options: a mapping (True for a bare flag) or strings."""
    opts = [f"base={base}"] if base else []
    if isinstance(options, dict):
        opts += [k if v is True else f"{k}={v}" for k, v in options.items() if v is not False]
    elif isinstance(options, str):
        opts.append(options)
    elif options:
        opts += list(options)
    return [a for o in opts for a in ("-o", str(o))]


def _wait_mounted(proc, mountpoint, log, timeout):
    deadline = time.monotonic() + timeout
    while not os.path.ismount(mountpoint):
        if proc.poll() is not None:
            log.seek(0)
            msg = log.read().decode(errors="replace").strip()
            raise MountError(msg or f"sparsefs exited with status {proc.returncode}")
        if time.monotonic() > deadline:
            raise MountError(f"{mountpoint}: not mounted after {timeout} s")
        time.sleep(0.05)


def _unmount(mountpoint):
    cmd = ["fusermount3", "-u", mountpoint]
    if not shutil.which("fusermount3"):
        cmd = ["umount", mountpoint]
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def _detach(proc, mountpoint):
    """Lazy unmount: the daemon serves what is still open or mapped, then exits by itself."""
    if subprocess.run(["fusermount3", "-uz", mountpoint], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode:
        return False
    threading.Thread(target=proc.wait, daemon=True).start()
    return True


def _stop(proc, mountpoint, timeout, lazy):
    """Unmounts; if that fails (a file still open, say), detaches lazily when asked to, else
    ends the daemon by its pid and detaches what is left of the mount."""
    if os.path.ismount(mountpoint) and _unmount(mountpoint):
        try:
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            pass
    if lazy and proc.poll() is None and _detach(proc, mountpoint):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                continue
    if os.path.ismount(mountpoint):
        subprocess.run(["fusermount3", "-uz", mountpoint], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


@contextlib.contextmanager
def mount(delta, base=None, mountpoint=None, options=None, sparsefs=None, timeout=30.0,
          lazy=False):
    """Mounts delta (a delta directory, or a directory of them) and yields the mount point.

    base: the base folder or a Hugging Face hub id (default: the one the delta records).
    mountpoint: where to mount (default: a new temporary folder, removed afterwards).
    options: more -o options, as {"cache_size": "256M", "allow_other": True} or strings.
    sparsefs: the program (default: $SPARSEFS, else sparsefs on PATH).
    lazy: when the unmount fails because something is still open or mapped, detach the mount
    and let the daemon serve that until it is closed, instead of ending the daemon.
    """
    made = mountpoint is None
    mnt = tempfile.mkdtemp(prefix="sparsefs-") if made else os.fspath(mountpoint)
    cmd = [_program(sparsefs), "-f", *_option_list(base, options), os.fspath(delta), mnt]
    try:
        with tempfile.TemporaryFile() as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=log)
            try:
                _wait_mounted(proc, mnt, log, timeout)
                yield mnt
            finally:
                _stop(proc, mnt, 10.0, lazy)
    finally:
        if made:
            with contextlib.suppress(OSError):
                os.rmdir(mnt)


def from_pretrained_with_delta(delta, base_model_id=None, model_class=None, mount_options=None,
                               **kwargs):
    """Loads the model a delta holds: mounts it over base_model_id (a hub id in the local cache
    or a folder; default: the base the delta records), calls model_class.from_pretrained on the
    mount (default transformers.AutoModelForCausalLM) with kwargs, and unmounts. Weights the
    model still maps keep being served: the unmount is then lazy."""
    if model_class is None:
        from transformers import AutoModelForCausalLM as model_class
    with mount(delta, base=base_model_id, options=mount_options, lazy=True) as path:
        return model_class.from_pretrained(path, **kwargs)
