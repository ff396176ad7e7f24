#!/usr/bin/env python3
# sampler.py: the fleet benchmark's outside sampler: every host's `current` link read every millisecond, each change printed with its instant.
#
#   sampler.py STOP_FILE NAME=LINK...
#
# Prints "T_US NAME TARGET" (T_US: unix microseconds; TARGET: the link's last path part, or
# "-" when the link is missing) once for each link at start, then whenever one changes.
# Reading a link is one readlink: the sampler sees a swap within a millisecond of it, whoever
# made it (deployd's renameat or Capistrano's mv), which is what makes the two comparable.
# Stops when STOP_FILE exists.
import os
import sys
import time


def target(link):
    try:
        return os.path.basename(os.readlink(link).rstrip("/")) or "-"
    except OSError:
        return "-"


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: sampler.py STOP_FILE NAME=LINK...")
    stop = sys.argv[1]
    links = [a.split("=", 1) for a in sys.argv[2:]]
    last = {}
    n = 0
    while True:
        now = time.time_ns() // 1000
        for name, link in links:
            t = target(link)
            if last.get(name) != t:
                last[name] = t
                sys.stdout.write("%d %s %s\n" % (now, name, t))
                sys.stdout.flush()
        n += 1
        if n % 100 == 0 and os.path.exists(stop):
            return
        time.sleep(0.001)


if __name__ == "__main__":
    main()
