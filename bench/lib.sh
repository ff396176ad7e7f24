# bench/lib.sh: what bench/run's sections share: timing and table helpers, the processes it
# starts, the generated site, and the two deploy methods deployd is compared with (git-sync's
# and Capistrano's). Sourced by bench/run; it only defines functions, and uses the globals
# bench/run sets (DIR, BIN, SHM, SLEEP_FD, PIDS, ROWS, NOTES, BIG, FILES, BYTES, HERE).
# shellcheck shell=bash

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf 'bench/run: %s\n' "$*" >&2; exit 1; }
want() { [[ ,$ONLY, == *,$1,* ]]; }
nap() { read -r -t "$1" -u "$SLEEP_FD" _ || true; }
now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }

median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
# median of A[i]/B[i] over the rounds: lists of numbers, one per line, in round order
median_ratio() { paste -d' ' <(printf '%s\n' $1) <(printf '%s\n' $2) | awk '$2 > 0 {print $1 / $2}' | median; }
fmt() { awk -v v="$1" -v f="$2" 'BEGIN {if (v == "nan" || v == "") print "n/a"; else printf f, v}'; }

free_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}
wait_port() {
	local i
	for ((i = 0; i < 1000; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		nap 0.02
	done
	return 1
}

# PID and all its descendants, one per line.
proc_tree() {
	ps -e -o pid=,ppid= | awk -v root="$1" '
		{kids[$2] = kids[$2] " " $1}
		END {n = 1; q[1] = root; for (i = 1; i <= n; i++) {print q[i];
			m = split(kids[q[i]], k, " "); for (j = 1; j <= m; j++) q[++n] = k[j]}}'
}
# sum of a /proc/PID/status field (kB) over PID's tree
tree_status_kb() {
	local p sum=0 k v _
	for p in $(proc_tree "$1"); do
		while read -r k v _; do
			[ "$k" = "$2:" ] && sum=$((sum + v))
		done 2>/dev/null <"/proc/$p/status" || true
	done
	echo "$sum"
}
status_field() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
# PSS (kB) of each process in PID's tree, "NAME:PID=KB" a line, then "total=KB". PSS shares
# each page among the processes that map it, so a re-exec'd listener's pages count once.
tree_pss() {
	local p kb sum=0 name
	for p in $(proc_tree "$1"); do
		kb=$(awk '$1 == "Pss:" {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null) || continue
		[ -n "$kb" ] || continue
		name=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | awk '{print ($2 == "__listen" ? "listener" : $2 == "__fetch" ? "fetch-helper" : $2)}')
		echo "${name:-?}:$p=$kb"
		sum=$((sum + kb))
	done
	echo "total=$sum"
}
# CPU ticks of PID's tree as "OWN CHILDREN": the daemon's threads, then its reaped children
# (cutime, cstime) plus the live ones
tree_ticks() {
	local p own=0 kids=0 line f
	for p in $(proc_tree "$1"); do
		line=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		line=${line##*) }
		read -r -a f <<<"$line"
		# after "comm)": state is f[0], so utime (field 14) is f[11] ... cstime f[14]
		if [ "$p" = "$1" ]; then
			own=$((f[11] + f[12]))
			kids=$((kids + f[13] + f[14]))
		else
			kids=$((kids + f[11] + f[12] + f[13] + f[14]))
		fi
	done
	echo "$own $kids"
}
hmac_sig() {
	python3 -c 'import hashlib, hmac, sys
key = open(sys.argv[1], "rb").read().rstrip(b"\n")
print("sha256=" + hmac.new(key, open(sys.argv[2], "rb").read(), hashlib.sha256).hexdigest())' "$1" "$2"
}
# push_body COMMIT OUT: the GitHub push fixture announcing COMMIT on main
push_body() {
	sed -e 's/"after":"[0-9a-f]*"/"after":"'"$1"'"/' -e 's#"ref":"[^"]*"#"ref":"refs/heads/main"#' \
		"$SRCDIR/tests/unit/data/hooks/github-push.json" | tr -d '\n' >"$2"
}

# start_gitd BASE: serves the bare repositories under BASE on git://127.0.0.1; sets GD_PID, GD_URL.
# Every contender fetches the site through it, as from a real host: a clone of a local path
# would hard-link git's objects instead of transferring them.
start_gitd() {
	local port
	port=$(free_port)
	git daemon --reuseaddr --listen=127.0.0.1 --port="$port" --base-path="$1" --export-all "$1" \
		>>"$1/git-daemon.log" 2>&1 &
	GD_PID=$!
	PIDS+=("$GD_PID")
	wait_port "$port" || die "git daemon did not listen"
	GD_URL=git://127.0.0.1:$port/src.git
}
stop_gitd() {
	kill "$GD_PID" 2>/dev/null || true
	wait "$GD_PID" 2>/dev/null || true
}
# engine_times LOG: "fetch A B ..; write C D .." from the engine's own log lines (seconds): fetch is
# from the start (a start-up deploy) or the webhook to "fetched"; write is its "wrote ... in N ms"
engine_times() {
	awk 'function t(s) {split(substr(s, 12, 12), a, ":"); return a[1] * 3600 + a[2] * 60 + a[3]}
		/ control API on / || / serving [0-9]+ site/ || / queued addr=/ {if (!s) s = t($1)}
		/ fetched \(/ {if (s) f = f sprintf(" %.1f", t($1) - s); s = 0}
		/ wrote release / {for (i = 1; i < NF; i++) if ($i == "in" && $(i + 2) == "ms") w = w sprintf(" %.1f", $(i + 1) / 1000)}
		END {printf "fetch%s; write%s", f, w}' "$1"
}

gitq() { git -c user.name=bench -c user.email=bench@localhost -c advice.detachedHead=false "$@"; }

# write_config FILE NAME LISTEN_PORT STATE SITES_YAML [EXTRA]
write_config() {
	cat >"$1" <<EOF
# written by bench/run
listen: 127.0.0.1:$3
control_socket: $DIR/$2.sock
user: $(id -un)
state_dir: $4
log_level: info
limits:
  max_connections: 4096
  max_connections_per_ip: 4096
${6:-}
sites:
$5
EOF
}
# site_yaml NAME REPO PATH POLL [KEEP]
site_yaml() {
	printf '  - name: %s\n    repo: %s\n    branch: main\n    path: %s\n    poll: %s\n    keep: %s\n    secret_file: %s\n' \
		"$1" "$2" "$3" "$4" "${5:-5}" "$DIR/secret"
}
# start_deployd CONFIG LOG: sets DPID; the daemon's own log goes to LOG
start_deployd() {
	"$BIN" serve -c "$1" >>"$2" 2>&1 &
	DPID=$!
	PIDS+=("$DPID")
}
stop_deployd() {
	[ -n "${DPID:-}" ] || return 0
	kill "$DPID" 2>/dev/null || true
	wait "$DPID" 2>/dev/null || true
	DPID=
}
# wait_line FILE LINE TIMEOUT_S: until FILE's first line (read through `current`) is LINE
wait_line() {
	local deadline line
	deadline=$(($(now_us) + $3 * 1000000))
	while [ "$(now_us)" -lt "$deadline" ]; do
		if read -r line 2>/dev/null <"$1" && [ "$line" = "$2" ]; then
			return 0
		fi
		nap 0.002
	done
	return 1
}
# wait_links N TIMEOUT_S DIR/PREFIX: until N sites PREFIX1..N have a current link
wait_links() {
	local deadline i n
	deadline=$(($(now_us) + $2 * 1000000))
	while [ "$(now_us)" -lt "$deadline" ]; do
		n=0
		for ((i = 1; i <= $1; i++)); do
			[ -L "$3$i/current" ] && n=$((n + 1))
		done
		[ "$n" -eq "$1" ] && return 0
		kill -0 "$DPID" 2>/dev/null || return 1
		nap 0.5
	done
	log "only $n of $1 sites went live in $2 s"
	return 1
}
ms() { awk -v v="$1" 'BEGIN {printf "%.2f", v / 1000}'; }
xratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2fx", a / b; else print "n/a"}'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", (b - a) / 1e6}'; }

# row MEASURE DEPLOYD BASELINE RATIO TARGET RESULT
row() { ROWS+=("$1|$2|$3|$4|$5|$6"); }
note() { NOTES+=("$*"); }
verdict() { if awk "BEGIN {exit !($1)}"; then echo PASS; else echo MISS; fi; }

# --- the generated site, and the methods it is deployed with by the baselines ----------------
make_site() {
	if [ -f "$BIG/.done" ]; then
		MARKER=$(cat "$BIG/.done")
		log "site: reusing $BIG"
	else
		rm -rf "$BIG"
		mkdir -p "$BIG"
		log "site: generating $FILES files, about $((BYTES / 1000000)) MB (once)"
		MARKER=$("$HERE/gen-site" "$BIG/work" "$FILES" "$BYTES")
		git init -q -b main "$BIG/work"
		git init -q --bare -b main "$BIG/src.git"
		gitq -C "$BIG/work" add -A
		GIT_AUTHOR_DATE=2026-01-01T00:00:00Z GIT_COMMITTER_DATE=2026-01-01T00:00:00Z \
			gitq -C "$BIG/work" commit -qm "generated site"
		log "site: pushing to $BIG/src.git"
		gitq -C "$BIG/work" push -q "$BIG/src.git" main
		echo "$MARKER" >"$BIG/.done"
	fi
	REV=$(head -n 1 "$BIG/work/$MARKER")
	REV=${REV#<!-- rev }
	REV=${REV% -->}
}
# next_commit: a one-file change (the marker page's first line), pushed; sets REV and HEAD_C
next_commit() {
	REV=$((REV + 1))
	sed -i "1s/.*/<!-- rev $REV -->/" "$BIG/work/$MARKER"
	gitq -C "$BIG/work" commit -qam "rev $REV"
	gitq -C "$BIG/work" push -q "$BIG/src.git" main
	HEAD_C=$(git -C "$BIG/work" rev-parse HEAD)
}
# the trees the baselines write: symlink swap as git-sync and Capistrano do it
swap_link() { ln -sfn "$2" "$1/current.tmp" && mv -T "$1/current.tmp" "$1/current"; }

# git-sync's method: fetch into its cache, a detached worktree of the new commit, sync, swap
gitsync_init() {
	rm -rf "$GS"
	mkdir -p "$GS/wt"
	git init -q --bare "$GS/cache.git"
	git -C "$GS/cache.git" fetch -q "$GD_URL" +refs/heads/main:refs/heads/main
	gitsync_deploy "$(git -C "$GS/cache.git" rev-parse main)" 0
}
gitsync_deploy() {
	git -C "$GS/cache.git" fetch -q "$GD_URL" +refs/heads/main:refs/heads/main
	git -C "$GS/cache.git" worktree add -q --detach "$GS/wt/$2-$1" "$1"
	sync -f "$GS/wt/$2-$1"
	swap_link "$GS" "wt/$2-$1"
}
gitsync_prune() {	# keep the live worktree and the one before it, as git-sync does
	local old
	for old in $(ls -t "$GS/wt" | tail -n +3); do
		git -C "$GS/cache.git" worktree remove --force "$GS/wt/$old"
	done
}
# Capistrano's method: update its mirror, git archive | tar -x into a release, sync, swap
cap_init() {
	rm -rf "$CAP"
	mkdir -p "$CAP/releases"
	git clone -q --mirror "$GD_URL" "$CAP/repo"
	cap_deploy "$(git -C "$CAP/repo" rev-parse main)" 0
}
cap_deploy() {
	git -C "$CAP/repo" remote update --prune >/dev/null 2>&1
	mkdir "$CAP/releases/$2-$1"
	git -C "$CAP/repo" archive "$1" | tar -x -f - -C "$CAP/releases/$2-$1"
	sync -f "$CAP/releases/$2-$1"
	swap_link "$CAP" "releases/$2-$1"
}
cap_prune() {
	local old
	for old in $(ls -t "$CAP/releases" | tail -n +3); do
		rm -rf "${CAP:?}/releases/$old"
	done
}
