# campaign-check.py: what the fleet campaign's logs must show afterwards: no node ahead of the cutovers, no connected node more than one behind, run_once once and alone.
#
#   campaign-check.py DIR LEASE_MS
#
# DIR holds live.log (observe.py), cutovers.jsonl and targets.jsonl (every value the keys had,
# from etcd's history), faults.log ("T_MS start|end KIND TARGET") and run_once.log (the hook's
# "start|end|overlap COMMIT T_MS" lines) and run_onces.log ("COMMIT JSON": every value of its
# run_once record, from etcd's history). Prints one "violation: ..." line per breach and a
# last line "checked N cutovers, M node-checks, R run_once runs (...)".
import json
import os
import sys

NODE_CLOUD = lambda n: n.split("-")[0]


def load_jsonl(path):
    out = []
    if os.path.exists(path):
        with open(path) as fh:
            for line in fh:
                line = line.strip()
                if line.startswith("{"):
                    out.append(json.loads(line))
    return out


def main(argv):
    d, lease = argv[1], int(argv[2])
    bad = []
    cutovers = sorted({c["gen"]: c for c in load_jsonl(os.path.join(d, "cutovers.jsonl"))}.values(),
                      key=lambda c: c["gen"])
    targets = {t["gen"]: t for t in load_jsonl(os.path.join(d, "targets.jsonl"))}
    live = []   # (t, node, commit prefix)
    with open(os.path.join(d, "live.log")) as fh:
        for line in fh:
            f = line.split()
            if len(f) >= 4 and f[3] == "violation":
                bad.append("%s showed %s, which is not whole: %s" % (f[1], f[2], " ".join(f[4:])))
            elif len(f) == 3:
                live.append((int(f[0]), f[1], f[2].rsplit("-", 1)[-1]))
    # ---- no node ahead: each commit seen live was a cutover written before it was seen ----
    first_cut = {}
    for c in cutovers:
        first_cut.setdefault(c["commit"][:12], c["written"])
    for t, node, commit in live:
        w = first_cut.get(commit)
        if w is None:
            bad.append("%s went live on %s at %d, which was never a cutover" % (node, commit, t))
        elif t < w:
            bad.append("%s went live on %s at %d, before its cutover was written at %d" %
                       (node, commit, t, w))
    # ---- fault intervals, to know who was connected when ----
    faults = []
    open_f = {}
    with open(os.path.join(d, "faults.log")) as fh:
        for line in fh:
            t, what, kind, target = line.split()[:4]
            key = (kind, target)
            if what == "start":
                open_f[key] = int(t)
            elif key in open_f:
                faults.append((kind, target, open_f.pop(key), int(t)))
    for (kind, target), t in open_f.items():
        faults.append((kind, target, t, 1 << 62))

    def disturbed(node, a, b):
        """
        A fault that could keep node behind overlapped [a, b], or ended less than two leases
        before a (a restarted node or a healed link takes that long to be back). Faults on
        other nodes or on the git server do not count: a node connected all along was waited
        for, so it prepared before the cutover was written. Cloud B holds one etcd member of
        three, so a cut between the clouds leaves B without the store, whichever side is cut.
        """
        for kind, target, s, e in faults:
            if s > b or e + 2 * lease < a:
                continue
            if kind == "kill-etcd" or target == node:
                return True
            if kind == "cut-cloud" and NODE_CLOUD(node) == "b":
                return True
            if kind == "cut-cloud" and target == NODE_CLOUD(node):
                return True
        return False

    def live_at(node, t):
        cur = None
        for tt, n, c in live:
            if n == node and tt <= t:
                cur = c
        return cur

    nodes = sorted({n for _, n, _ in live})
    checks = 0
    for i, c in enumerate(cutovers):
        if i == 0 or c["gen"] not in targets:
            continue
        a, b = targets[c["gen"]]["at"], c["at"] + lease
        ok_commits = {c["commit"][:12], cutovers[i - 1]["commit"][:12]}
        ok_commits |= {x["commit"][:12] for x in cutovers[i + 1:] if x["written"] <= b}
        for node in nodes:
            if disturbed(node, a, b):
                continue
            checks += 1
            got = live_at(node, b)
            if got not in ok_commits:
                bad.append("%s was on %s a lease after cutover %d (%s) while connected" %
                           (node, got, c["gen"], c["commit"][:12]))
    # ---- run_once: never two at once, never again after it succeeded ----
    # Succeeded means recorded so in etcd (run_onces.log: "COMMIT JSON" for every value of its
    # key, in etcd's order). A run whose hook ended but whose node died or was cut off before
    # the record was written runs again: at least once, as documented, and counted apart. Each
    # run first writes "running"; it is a breach when a "done" came before that record in
    # etcd's order. The "at" in a record is when its writer made it, not when etcd took it: a
    # node in a cut-off cloud can write "done" that lands after the next node's run.
    history = {}
    path = os.path.join(d, "run_onces.log")
    if os.path.exists(path):
        with open(path) as fh:
            for line in fh:
                commit, _, val = line.strip().partition(" ")
                try:
                    v = json.loads(val)
                except ValueError:
                    continue
                history.setdefault(commit, []).append((v.get("state"), int(v.get("at", 0))))

    def done_before(commit, t):
        """The first "done" recorded before the "running" of the run that started at t."""
        h = history.get(commit, [])
        mine = max([i for i, (st, at) in enumerate(h) if st == "running" and at <= t] or [-1])
        dones = [at for st, at in h[:mine] if st == "done"] if mine >= 0 else []
        return dones[0] if dones else None

    ended = set()
    runs = again = 0
    with open(os.path.join(d, "run_once.log")) as fh:
        for line in fh:
            f = line.split()
            if len(f) < 3:
                continue
            if f[0] == "overlap":
                bad.append("run_once for %s ran while another run held the lock" % f[1][:12])
            elif f[0] == "start":
                runs += 1
                done = done_before(f[1], int(f[2]))
                if done is not None:
                    bad.append("run_once for %s ran again at %s after it was recorded done at "
                               "%d" % (f[1][:12], f[2], done))
                elif f[1] in ended:
                    again += 1
            elif f[0] == "end":
                ended.add(f[1])
    for line in bad:
        print("violation: " + line)
    print("checked %d cutovers, %d node-checks, %d run_once runs (%d again after a run whose "
          "success was never recorded)" % (len(cutovers), checks, runs, again))
    return 1 if bad else 0


sys.exit(main(sys.argv))
