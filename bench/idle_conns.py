#!/usr/bin/python3
"""Memory cost of idle keep-alive connections.

Opens N keep-alive connections to a server, sends one `GET <path>` on each
and reads the complete response, then leaves them all idle.  It sums VmRSS
(from /proc/PID/status) over the server's master process and all of its
descendants before the first connection and after the last one (plus a short
settle time), checks how many connections the server still holds open, and
prints the result as `key=value` lines on stdout:

    conns_requested=10000
    conns_ok=10000          connections that got a complete 200 response
    conns_open=10000        of those, still open after the settle time
    conns_failed=0
    rss_before_kib=...
    rss_after_kib=...
    kib_per_conn=...        (rss_after - rss_before) / conns_ok
    procs=...               pids measured

Usage: idle_conns.py --port P --pid MASTER_PID [--host 127.0.0.1]
                     [--count 10000] [--path /plaintext] [--settle 1.0]
"""

import argparse
import os
import resource
import socket
import sys
import time


def descendants(root):
    """root and every process below it (scans /proc; no dependency)."""
    parent = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rfind(b")") + 2:].split()
        parent[int(name)] = int(rest[1])
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(p for p, pp in parent.items() if pp == pid)
    return sorted(tree)


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss(root):
    pids = descendants(root)
    return sum(rss_kib(p) for p in pids), pids


def read_response(sock):
    """Read one complete HTTP/1.1 response; return its status code."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the response head")
        buf += chunk
        if len(buf) > 65536:
            raise ConnectionError("response head too large")
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the body")
        body += chunk
    return status


def still_open(sock):
    """True if the peer has not closed (nothing readable, or data pending)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True, help="server master pid")
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--path", default="/plaintext")
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.count + 64
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < want:
            print(f"idle_conns: RLIMIT_NOFILE hard limit {hard} < {want}",
                  file=sys.stderr)

    request = (f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
               "Connection: keep-alive\r\n\r\n").encode()

    time.sleep(args.settle)
    before, _ = tree_rss(args.pid)

    socks, failed, errors = [], 0, {}
    t0 = time.monotonic()
    for _ in range(args.count):
        s = None
        try:
            s = socket.create_connection((args.host, args.port), timeout=args.timeout)
            s.sendall(request)
            status = read_response(s)
            if status != 200:
                raise ConnectionError(f"status {status}")
            s.settimeout(None)  # blocking: still_open() relies on MSG_DONTWAIT alone
            socks.append(s)
        except (OSError, ValueError, IndexError) as e:
            failed += 1
            key = type(e).__name__ + ": " + str(e)[:60]
            errors[key] = errors.get(key, 0) + 1
            if s is not None:
                s.close()
    open_secs = time.monotonic() - t0

    time.sleep(args.settle)
    after, pids = tree_rss(args.pid)
    n_open = sum(1 for s in socks if still_open(s))
    ok = len(socks)

    print(f"conns_requested={args.count}")
    print(f"conns_ok={ok}")
    print(f"conns_open={n_open}")
    print(f"conns_failed={failed}")
    print(f"open_seconds={open_secs:.2f}")
    print(f"rss_before_kib={before}")
    print(f"rss_after_kib={after}")
    print(f"kib_per_conn={(after - before) / ok if ok else 0:.3f}")
    print("procs=" + ",".join(str(p) for p in pids))
    for key, n in sorted(errors.items(), key=lambda kv: -kv[1])[:5]:
        print(f"idle_conns: {n} x {key}", file=sys.stderr)

    for s in socks:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
