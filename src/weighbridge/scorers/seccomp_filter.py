"""Writes the sandbox's seccomp program (classic BPF) to stdout, built with libseccomp.

Why a script and not an import: libseccomp's Python binding ships with the operating system
(Debian's ``python3-seccomp``) and is built for the system interpreter, not for whichever Python
runs weighbridge. weighbridge runs this file once per process with the system ``python3`` and
hands the bytes to bubblewrap (``--seccomp FD``). It uses only the standard library and
``seccomp``, so it runs under any Python 3 that has the binding.

Policy: allow by default (the Python standard library needs most of the kernel), refuse with an
error the calls that reach outside the sandbox or widen it: tracing, namespaces, mounts, kernel
modules and kexec, BPF, perf, io_uring (which bypasses this filter for the I/O it performs),
keyrings, file handles (``open_by_handle_at`` is a known container escape), pidfds, terminal
injection, and sockets of any family but AF_UNIX. Other architectures' system calls kill the
process (libseccomp's default for a foreign architecture).
"""

from __future__ import annotations

import errno
import sys

DENIED = [
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "setns", "unshare", "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr",
    "kexec_load", "kexec_file_load", "reboot", "init_module", "finit_module", "delete_module",
    "swapon", "swapoff", "acct", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "sethostname", "setdomainname", "iopl", "ioperm", "quotactl", "lookup_dcookie",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "keyctl", "add_key", "request_key", "name_to_handle_at", "open_by_handle_at",
    "pidfd_open", "pidfd_getfd", "pidfd_send_signal", "fanotify_init",
]
# clone() with any of these flags would make a namespace the sandbox did not plan for
NAMESPACE_FLAGS = {"CLONE_NEWTIME": 0x80, "CLONE_NEWNS": 0x20000, "CLONE_NEWCGROUP": 0x02000000,
                   "CLONE_NEWUTS": 0x04000000, "CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000,
                   "CLONE_NEWPID": 0x20000000, "CLONE_NEWNET": 0x40000000}
AF_UNIX = 1
TIOCSTI, TIOCLINUX = 0x5412, 0x541C


def build():  # type: ignore[no-untyped-def]
    import seccomp

    f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in DENIED:
        try:
            f.add_rule(seccomp.ERRNO(errno.EPERM), name)
        except (RuntimeError, ValueError, OSError):  # not a system call on this architecture
            continue
    for flag in NAMESPACE_FLAGS.values():
        f.add_rule(seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    # clone3 passes its flags in memory a filter cannot read: say "not implemented" so libc falls back to clone
    f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    f.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.GT, AF_UNIX))
    f.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.LT, AF_UNIX))
    for request in (TIOCSTI, TIOCLINUX):
        f.add_rule(seccomp.ERRNO(errno.EPERM), "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, request))
    return f


def main() -> int:
    try:
        f = build()
    except ImportError:
        sys.stderr.write("the libseccomp Python binding is not installed for this python3\n")
        return 3
    f.export_bpf(sys.stdout.buffer)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
