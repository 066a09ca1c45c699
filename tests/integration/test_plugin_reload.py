"""SIGHUP loads plugins again: a plugin rebuilt in place is served, with no failed request."""
import os
import signal
import subprocess
import threading
import time

import requests

from conftest import NEXUS_BUILD, ROOT, wait_for

SOURCE = """
#include <nexus/nexus.h>
static void version(nx_req *req, nx_res *res) { (void)req; nx_text(res, 200, "%s"); }
static int init(nx_plugin *p) { return nx_route(p, "GET", "/version", version, 0); }
NEXUS_PLUGIN("swap", "%s", init, NULL);
"""


def build(folder, text):
    src = os.path.join(folder, "swap.c")
    with open(src, "w") as f:
        f.write(SOURCE.replace("%s", text))
    # -o onto the same path: the file keeps its inode, which is what makes reload hard
    subprocess.run(["cc", "-I", os.path.join(ROOT, "include"), "-fPIC", "-shared", "-o",
                    os.path.join(folder, "swap.so"), src], check=True)


class Load(threading.Thread):
    """Keep-alive clients asking /version until stopped; records every answer or error."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url, self.stop, self.answers, self.errors = url, False, [], []

    def run(self):
        s = requests.Session()
        while not self.stop:
            try:
                r = s.get(self.url, timeout=5)
                self.answers.append((r.status_code, r.text))
            except requests.RequestException as e:  # pragma: no cover - a failure
                self.errors.append(repr(e))


def test_rebuilt_plugin_is_served_after_sighup_with_no_failed_request(spawn, tmp_path):
    folder = str(tmp_path / "plugins")
    os.makedirs(folder)
    build(folder, "v1")
    s = spawn(workers=2, args=["--plugins-dir", folder])
    assert s.get("/version").text == "v1"
    loads = [Load(s.url("/version")) for _ in range(4)]
    for t in loads:
        t.start()
    time.sleep(0.3)
    build(folder, "v2")
    s.signal(signal.SIGHUP)
    assert wait_for(lambda: "reload complete" in s.log(), 10), s.log_tail()
    assert wait_for(lambda: all(a[-1:] == [(200, "v2")] for a in (t.answers for t in loads)), 10)
    for t in loads:
        t.stop = True
        t.join(5)
    answers = [a for t in loads for a in t.answers]
    assert not [e for t in loads for e in t.errors]
    assert {a for a in answers} <= {(200, "v1"), (200, "v2")}
    assert (200, "v1") in answers and (200, "v2") in answers


def test_broken_plugin_at_sighup_keeps_the_old_set(spawn, tmp_path):
    folder = str(tmp_path / "plugins")
    os.makedirs(folder)
    build(folder, "v1")
    s = spawn(workers=1, args=["--plugins-dir", folder])
    first = set(s.worker_pids())
    with open(os.path.join(folder, "junk.so"), "w") as f:
        f.write("not an ELF file")
    s.signal(signal.SIGHUP)
    assert wait_for(lambda: "still serving with the previous configuration and plugins"
                    in s.log(), 5), s.log_tail()
    assert "junk.so" in s.log()
    time.sleep(0.3)
    assert set(s.worker_pids()) == first
    assert s.get("/version").text == "v1"
