#!/usr/bin/env python3
# sampler.py: the fleet benchmark's outside sampler: every host's `current` link read at least every millisecond and at once when its folder changes, each change printed with its instant.
#
#   sampler.py STOP_FILE NAME=LINK...
#
# Prints "T_US NAME TARGET" (T_US: unix microseconds, taken just before the readlink that saw
# the change; TARGET: the link's last path part, or "-" when the link is missing) once for each
# link at start, then whenever one changes. Stops when STOP_FILE exists.
#
# Reading a link is one readlink, so the sampler sees a swap whoever made it (deployd's renameat
# or Capistrano's mv), which is what makes the two comparable. A pass every millisecond alone
# would see a swap up to a pass late, and a skew of a few milliseconds is what it measures, so it
# also watches each link's folder with inotify: a rename or a new entry there wakes it for a pass
# at once, and each link's instant is its own read's, not the pass's start. Run it at a real-time
# priority (chrt) so that the nodes' own wake-ups at a cutover do not delay it.
import ctypes
import os
import select
import sys
import time

IN_CREATE = 0x100
IN_MOVED_TO = 0x80
IN_NONBLOCK = 0o4000


def target(link):
    try:
        return os.path.basename(os.readlink(link).rstrip("/")) or "-"
    except OSError:
        return "-"


class Watcher:
    """inotify on the links' folders; a folder made after the start (a first deploy) is added
    when it appears. Without inotify, fd is None and the passes are timed alone."""

    def __init__(self, dirs):
        self.todo = set(dirs)
        self.fd = None
        try:
            self.libc = ctypes.CDLL(None, use_errno=True)
            fd = self.libc.inotify_init1(IN_NONBLOCK)
        except (OSError, AttributeError):
            return
        if fd >= 0:
            self.fd = fd
            self.add()

    def add(self):
        for d in list(self.todo):
            if self.libc.inotify_add_watch(self.fd, os.fsencode(d),
                                           IN_CREATE | IN_MOVED_TO) >= 0:
                self.todo.discard(d)


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: sampler.py STOP_FILE NAME=LINK...")
    stop = sys.argv[1]
    links = [a.split("=", 1) for a in sys.argv[2:]]
    w = Watcher({os.path.dirname(link) for _, link in links})
    poller = select.poll()
    if w.fd is not None:
        poller.register(w.fd, select.POLLIN)
    last = {}
    n = 0
    while True:
        for name, link in links:
            now = time.time_ns() // 1000
            t = target(link)
            if last.get(name) != t:
                last[name] = t
                sys.stdout.write("%d %s %s\n" % (now, name, t))
                sys.stdout.flush()
        n += 1
        if n % 100 == 0:
            if os.path.exists(stop):
                return
            if w.fd is not None and w.todo:
                w.add()
        if w.fd is None:
            time.sleep(0.001)
        elif poller.poll(1):
            try:
                while os.read(w.fd, 65536):
                    pass
            except BlockingIOError:
                pass


if __name__ == "__main__":
    main()
