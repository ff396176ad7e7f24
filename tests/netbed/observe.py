# observe.py: the fleet campaign's outside observer: every node's `current` every 10 ms, each release it shows checked once against its commit's tree.
#
#   observe.py WORK_REPO STOP_FILE NODE=PATH...
#
# Prints "T_MS NODE RELEASE" whenever a node's current changes (T_MS: unix ms), and
# "T_MS NODE RELEASE violation WHY" when the release it names is not exactly its commit's tree
# (paths, bytes, symlink targets, executable bits) or current is not a release at all.
# Stops when STOP_FILE exists.
import hashlib
import os
import subprocess
import sys
import time


def git(repo, *args):
    return subprocess.run(["git", "-C", repo] + list(args), check=True,
                          capture_output=True).stdout


def tree_of(repo, commit):
    """path -> (mode, blob id) of every file and symlink of commit (submodules: none here)."""
    out = {}
    for rec in git(repo, "ls-tree", "-r", "-z", commit).split(b"\0"):
        if not rec:
            continue
        meta, path = rec.split(b"\t", 1)
        mode, _, oid = meta.split(b" ")
        out[path.decode()] = (mode.decode(), oid.decode())
    return out


def blob_id(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def check_release(repo, path):
    """None if path is exactly its commit's tree, else why not."""
    name = os.path.basename(path)
    prefix = name.rsplit("-", 1)[-1]
    try:
        commit = git(repo, "rev-parse", "--verify", "-q", prefix + "^{commit}").decode().strip()
    except subprocess.CalledProcessError:
        return "release %s names no pushed commit" % name
    want = tree_of(repo, commit)
    seen = {}
    for root, dirs, files in os.walk(path):
        for f in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            full = os.path.join(root, f)
            rel = os.path.relpath(full, path)
            if os.path.islink(full):
                seen[rel] = ("120000", blob_id(os.readlink(full).encode()))
            else:
                with open(full, "rb") as fh:
                    data = fh.read()
                mode = "100755" if os.stat(full).st_mode & 0o100 else "100644"
                seen[rel] = (mode, blob_id(data))
    if seen != want:
        extra = sorted(set(seen) - set(want))[:3]
        missing = sorted(set(want) - set(seen))[:3]
        differ = sorted(p for p in set(seen) & set(want) if seen[p] != want[p])[:3]
        return "not its commit's tree: extra %s missing %s differ %s" % (extra, missing, differ)
    return None


def main(argv):
    repo, stop = argv[1], argv[2]
    nodes = [a.split("=", 1) for a in argv[3:]]
    last = {}
    checked = {}
    while not os.path.exists(stop):
        for node, path in nodes:
            try:
                target = os.readlink(os.path.join(path, "current"))
            except OSError:
                continue
            if last.get(node) == target:
                continue
            last[node] = target
            now = int(time.time() * 1000)
            print("%d %s %s" % (now, node, os.path.basename(target)), flush=True)
            full = os.path.join(path, target) if not target.startswith("/") else target
            if full not in checked:
                try:
                    checked[full] = check_release(repo, full)
                except OSError as e:
                    checked[full] = "unreadable: %s" % e
            if checked[full] is not None:
                print("%d %s %s violation %s" % (now, node, os.path.basename(target),
                                                 checked[full]), flush=True)
        time.sleep(0.01)


main(sys.argv)
