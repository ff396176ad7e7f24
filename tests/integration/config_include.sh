#!/bin/bash
# config_include.sh: sites in included files (one file per site, as configuration management drops them), read in name order, deployed, reloaded; and the fleet: keys, which check tests against a real etcd; a reload cannot add them.
# timeout: 180
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../lib-servers.sh"

# ---- include: one file per site ----
make_repo "$TMP/a" && commit_file "$TMP/a" index.html "site a" "a1" || bail "repo a"
make_repo "$TMP/b" && commit_file "$TMP/b" index.html "site b" "b1" || bail "repo b"
make_repo "$TMP/c" && commit_file "$TMP/c" index.html "site c" "c1" || bail "repo c"
push_work "$TMP/a" && push_work "$TMP/b" && push_work "$TMP/c" || bail "push"
mkdir -p "$TMP/sites.d"
{ echo "# site b, dropped by configuration management"; site_yaml b "$TMP/b.git" "$TMP/www-b"; } |
	sed 's/^  //' >"$TMP/sites.d/20-b.yaml"
site_yaml a "$TMP/a.git" "$TMP/www-a" | sed 's/^  //' >"$TMP/sites.d/10-a.yaml"
echo "not a site file" >"$TMP/sites.d/README"
CFG_EXTRA="include: sites.d/*.yaml" write_config "$TMP/deployd.yaml"
out=$("$DEPLOYD_BIN" check -c "$TMP/deployd.yaml" 2>&1)
is "check accepts a config whose sites are all in included files" "$?" 0
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
is "the sites are read from the files in name order" "$(status_json | jq -r '[.sites[].name] | join(" ")')" "a b"
check "an included site deploys" wait_live "$TMP/www-a" "$(repo_head "$TMP/a")" 20
check "so does the other" wait_live "$TMP/www-b" "$(repo_head "$TMP/b")" 20

# A new file and SIGHUP: the new site is served and deployed, the others carry on.
site_yaml c "$TMP/c.git" "$TMP/www-c" | sed 's/^  //' >"$TMP/sites.d/15-c.yaml"
kill -HUP "$DAEMON_PID"
check "after SIGHUP the new file's site is there" wait_for "site c" 20 \
	bash -c '"$0" status -c "$1" --json | jq -e ".sites[] | select(.name == \"c\")"' "$DEPLOYD_BIN" "$TMP/deployd.yaml"
check "and deploys" wait_live "$TMP/www-c" "$(repo_head "$TMP/c")" 20

# A broken file: the reload is refused, the error names the file, its line and column.
printf -- '- name: d\n  repo: %s\n  branch: main\n  path: %s\n  keep: 1\n' "$TMP/c.git" "$TMP/www-d" \
	>"$TMP/sites.d/30-d.yaml"
out=$("$DEPLOYD_BIN" check -c "$TMP/deployd.yaml" 2>&1)
is "check refuses a bad included file" "$?" 2
like "naming the included file, line and column" "$out" "sites.d/30-d.yaml:5:9: keep: 1 is out of range"
kill -HUP "$DAEMON_PID"
check "the reload is refused in the log, with the place" wait_for "reload error" 20 \
	grep -q "reload: .*sites.d/30-d.yaml:5:9" "$TMP/daemon.log"
is "status works while an included file is broken, and the daemon still serves the three sites" \
	"$(status_json | jq -r '[.sites[].name] | join(" ")')" "a c b"
rm "$TMP/sites.d/30-d.yaml"

# Two files that define one site: refused, both places named.
site_yaml a "$TMP/b.git" "$TMP/www-a2" | sed 's/^  //' >"$TMP/sites.d/40-a.yaml"
out=$("$DEPLOYD_BIN" check -c "$TMP/deployd.yaml" 2>&1)
like "a site defined in two files is refused, with both places" "$out" \
	"40-a.yaml:1:9: duplicate site name 'a' \(first defined at .*sites.d/10-a.yaml:1\)"
rm "$TMP/sites.d/40-a.yaml"

# ---- fleet: checked against a real etcd ----
start_etcd 1 || bail "etcd did not start"
fleet="fleet:
  etcd: [$ETCD_ENDPOINTS]
  node: web-1
  zone: test-cloud"
CFG_EXTRA="$fleet" write_config "$TMP/fleet.yaml" "$(site_yaml a "$TMP/a.git" "$TMP/www-fa")"
out=$("$DEPLOYD_BIN" check -c "$TMP/fleet.yaml" 2>&1)
is "check accepts the fleet keys" "$?" 0
like "and says etcd answered, with nobody registered yet" "$out" \
	"fleet: node web-1 in test-cloud: etcd answered at $ETCD_ENDPOINTS, 0 nodes registered under /deployd/nodes/"
etcdctl_ put /deployd/nodes/web-2 '{}' >/dev/null
like "a registered node is counted" "$("$DEPLOYD_BIN" check -c "$TMP/fleet.yaml" 2>&1)" "1 node registered"
dead="http://127.0.0.1:$(free_port)"
CFG_EXTRA="${fleet/$ETCD_ENDPOINTS/$dead}" write_config "$TMP/fleet-dead.yaml" "$(site_yaml a "$TMP/a.git" "$TMP/www-fa")"
t0=$(now_ms)
out=$("$DEPLOYD_BIN" check -c "$TMP/fleet-dead.yaml" 2>&1)
rc=$?
t1=$(now_ms)
is "an unreachable store is a warning, not a config error" "$rc" 0
like "the warning says etcd did not answer" "$out" "warning: fleet: etcd did not answer: .*Couldn't connect"
if [ $((t1 - t0)) -lt 5000 ]; then ok "check stays fast ($((t1 - t0)) ms)"; else fail "check stays fast ($((t1 - t0)) ms)"; fi

# A reload that adds fleet: is refused (a node joins a fleet by a restart); the daemon goes on.
printf '%s\n' "$fleet" >>"$TMP/deployd.yaml"
kill -HUP "$DAEMON_PID"
check "a reload that adds fleet: is refused" wait_for "fleet reload refusal" 20 \
	grep -q "reload: a fleet node takes a new configuration by a restart" "$TMP/daemon.log"
is "the daemon still serves its sites" "$(status_json | jq -r '[.sites[].name] | join(" ")')" "a c b"

stop_daemon
is "the daemon exits 0 on SIGTERM" "$DAEMON_STATUS" 0
done_testing
