"""Run a command in a network namespace where nothing can leave loopback, and record every packet that tries.

Usage (as root, or where unprivileged user namespaces are allowed, with ``--map-root-user``)::

    unshare --net --mount python tests/netns_trap.py --record trap.json --workdir DIR -- COMMAND ARGS…

Inside the new namespaces this script

* brings ``lo`` up (a new network namespace starts with it down, and nothing else);
* creates a TUN device, ``egress0``, and routes *everything* that is not loopback to it — IPv4
  (``0.0.0.0/0``) and IPv6 (``::/0``). No cable is behind it: every packet a process of the command sends
  toward any non-loopback address ends up in this script, which records it (protocol, destination,
  port) and answers nothing;
* points the DNS resolver (a bind mount over ``/etc/resolv.conf``, in the private mount namespace) at
  ``192.0.2.53`` (TEST-NET-1, behind ``egress0``), so a name lookup is recorded too, even on machines whose
  resolver is a loopback stub (``127.0.0.53``) that would forward it out;
* checks that the trap works before the command starts (a UDP datagram to ``192.0.2.1``, one to
  ``2001:db8::1`` and a DNS lookup must all be caught), then runs the command and writes
  ``{"controls": {...}, "packets": [...], "returncode": N}`` to ``--record``.

With ``--probe`` it only sets up and checks the trap (exit 0 when everything works): a test calls that
first and skips with the reason when the machine does not allow it (no ``unshare``, no
``/dev/net/tun``, a container without ``CAP_SYS_ADMIN``).

Packets the kernel sends by itself on a new interface — IPv6 router solicitations and multicast
listener reports (ICMPv6 to ``ff02::/16``), IGMP — are not the command's and are left out.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import fcntl
import ipaddress
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

IFF_UP = 0x1
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
TUNSETIFF = 0x400454CA
SIOCADDRT = 0x890B
SIOCSIFADDR = 0x8916
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
RTF_UP = 0x1
MS_BIND = 4096

DEVICE = "egress0"
TRAP_V4 = "10.255.0.1"
TRAP_V6 = "fd00:e9e5::1"
CONTROL_V4 = ("192.0.2.1", 9)
CONTROL_V6 = ("2001:db8::1", 9)
RESOLVER = "192.0.2.53"
CONTROL_NAME = "netns-trap-control.example"


class _SockAddr(ctypes.Structure):
    _fields_ = [("family", ctypes.c_ushort), ("data", ctypes.c_char * 14)]


class _RtEntry(ctypes.Structure):  # <net/route.h> struct rtentry (ctypes does the platform's padding)
    _fields_ = [("pad1", ctypes.c_ulong), ("dst", _SockAddr), ("gateway", _SockAddr), ("genmask", _SockAddr),
                ("flags", ctypes.c_ushort), ("pad2", ctypes.c_short), ("pad3", ctypes.c_ulong),
                ("pad4", ctypes.c_void_p), ("metric", ctypes.c_short), ("dev", ctypes.c_char_p),
                ("mtu", ctypes.c_ulong), ("window", ctypes.c_ulong), ("irtt", ctypes.c_ushort)]


def _set_up(sock: socket.socket, name: str) -> None:
    ifr = struct.pack("16sh", name.encode(), 0)
    flags = struct.unpack("16sh", fcntl.ioctl(sock, SIOCGIFFLAGS, ifr))[1]
    fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh", name.encode(), flags | IFF_UP))


def _bind_mount_resolver(workdir: Path) -> None:
    conf = workdir / "resolv.conf"
    conf.write_text(f"nameserver {RESOLVER}\noptions timeout:1 attempts:1\n")
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.mount(str(conf).encode(), b"/etc/resolv.conf", None, MS_BIND, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bind mount over /etc/resolv.conf: {os.strerror(err)}")


def setup_trap(workdir: Path) -> tuple[int, bool]:
    """lo up, ``egress0`` catching every non-loopback route; returns (tun fd, IPv6 routed too)."""
    _bind_mount_resolver(workdir)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _set_up(sock, "lo")
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", DEVICE.encode(), IFF_TUN | IFF_NO_PI))
    addr = struct.pack("16sH2s4s8s", DEVICE.encode(), socket.AF_INET, b"\0\0", socket.inet_aton(TRAP_V4), b"\0" * 8)
    fcntl.ioctl(sock, SIOCSIFADDR, addr)
    _set_up(sock, DEVICE)
    dev = ctypes.create_string_buffer(DEVICE.encode())
    route = _RtEntry(dst=_SockAddr(socket.AF_INET), genmask=_SockAddr(socket.AF_INET), flags=RTF_UP,
                     dev=ctypes.cast(dev, ctypes.c_char_p))
    fcntl.ioctl(sock, SIOCADDRT, bytes(route))  # 0.0.0.0/0 dev egress0
    ipv6 = False
    if socket.has_ipv6 and Path("/proc/sys/net/ipv6").exists():
        s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        index = socket.if_nametoindex(DEVICE)
        # struct in6_ifreq {addr, prefixlen, ifindex}; struct in6_rtmsg {dst, src, gateway, type, dst_len,
        # src_len, metric, info, flags, ifindex}: ::/0 dev egress0
        fcntl.ioctl(s6, SIOCSIFADDR, struct.pack("16sIi", socket.inet_pton(socket.AF_INET6, TRAP_V6), 128, index))
        fcntl.ioctl(s6, SIOCADDRT, struct.pack("16s16s16sIHHILIi", bytes(16), bytes(16), bytes(16), 0, 0, 0, 1, 0,
                                               RTF_UP, index))
        ipv6 = True
    return fd, ipv6


def describe(packet: bytes) -> dict | None:
    """(protocol, destination, port) of one IP packet; None for the kernel's own interface chatter."""
    version = packet[0] >> 4
    if version == 4:
        header = (packet[0] & 0x0F) * 4
        proto, dst = packet[9], str(ipaddress.ip_address(packet[16:20]))
        if proto == 2:  # IGMP: the kernel joining multicast groups on the new interface
            return None
    elif version == 6:
        header, proto, dst = 40, packet[6], str(ipaddress.ip_address(packet[24:40]))
        if proto == 58 and ipaddress.ip_address(dst).is_multicast:  # router solicitation, MLD, DAD
            return None
    else:
        return {"proto": f"ip{version}", "dst": None, "port": None}
    name = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}.get(proto, str(proto))
    port = None
    if proto in (6, 17) and len(packet) >= header + 4:
        port = struct.unpack("!H", packet[header + 2:header + 4])[0]
    seen = {"proto": name, "dst": dst, "port": port}
    if proto == 17 and port == 53:
        seen["query"] = _dns_question(packet[header + 8:])
    return seen


def _dns_question(message: bytes) -> str | None:
    """The name a DNS query asks for (its first question), or None when it cannot be read."""
    labels, i = [], 12
    try:
        while message[i]:
            labels.append(message[i + 1:i + 1 + message[i]].decode("ascii", "replace"))
            i += 1 + message[i]
    except IndexError:
        return None
    return ".".join(labels)


class Recorder:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.packets: list[dict] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                packet = os.read(self.fd, 65536)
            except OSError:
                return
            seen = describe(packet)
            if seen is not None:
                with self.lock:
                    self.packets.append(seen)

    def take(self) -> list[dict]:
        with self.lock:
            taken, self.packets = self.packets, []
        return taken


def check_controls(recorder: Recorder, ipv6: bool, timeout: float = 10.0) -> dict[str, bool]:
    """Send what must be caught; True for each kind the recorder saw."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"control", CONTROL_V4)
    if ipv6:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.sendto(b"control", CONTROL_V6)
    threading.Thread(target=lambda: _lookup(CONTROL_NAME), daemon=True).start()  # fails after ~1 s
    want = {"udp4": lambda p: p["dst"] == CONTROL_V4[0], "dns": lambda p: p.get("query") == CONTROL_NAME}
    if ipv6:
        want["udp6"] = lambda p: p["dst"] == str(ipaddress.ip_address(CONTROL_V6[0]))
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen += recorder.take()
        if all(any(test(p) for p in seen) for test in want.values()):
            break
        time.sleep(0.05)
    time.sleep(2.5)  # the lookup's retries (A and AAAA, a second try) arrive before the command starts
    recorder.take()
    return {name: any(test(p) for p in seen) for name, test in want.items()}


def _lookup(name: str) -> None:
    try:
        socket.getaddrinfo(name, 80)
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--record", type=Path)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--probe", action="store_true", help="only set up and check the trap")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    fd, ipv6 = setup_trap(args.workdir)
    recorder = Recorder(fd)
    controls = check_controls(recorder, ipv6)
    if args.probe:
        print(json.dumps(controls))
        return 0 if all(controls.values()) else 3
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    rc = subprocess.call(command)
    time.sleep(1.0)  # anything sent in the command's last moments
    record = {"controls": controls, "packets": recorder.take(), "returncode": rc}
    args.record.write_text(json.dumps(record, indent=1))
    return rc


if __name__ == "__main__":
    sys.exit(main())
