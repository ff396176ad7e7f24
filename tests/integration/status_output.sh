#!/bin/bash
# status_output.sh: `deployd status` as a table and as JSON, for all sites and for one; errors and exit codes.
# timeout: 200
. "$(dirname "$0")/../lib.sh"

make_repo "$TMP/src" || bail "make_repo failed"
commit_file "$TMP/src" index.html "hello" "Subject line of the tip" || bail "commit failed"
H=$(repo_head "$TMP/src")

write_config "$TMP/deployd.yaml" \
	"$(site_yaml www "$TMP/src.git" "$TMP/www" poll=30s)" \
	"$(site_yaml broken "$TMP/missing.git" "$TMP/broken" poll=60s)"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
wait_live "$TMP/www" "$H" 30 || bail "first deploy did not happen"
wait_for "www idle" 10 site_field_is www state idle
# Both poll rarely, so their states hold still while this script reads them (a site being
# polled is "fetching").
wait_for "broken failed" 20 site_field_is broken state failed

# ---- plain ----
plain=$(dctl status)
rc=$?
is "status exits 0" "$rc" 0
header=$(printf '%s\n' "$plain" | head -n 1 | tr -s ' \t' ' ' | sed 's/ $//')
is "plain: the header row" "$header" "SITE STATE COMMIT RELEASE DEPLOYED TRIGGER NEXT-POLL LAST-ERROR"
is "plain: one row per site" "$(printf '%s\n' "$plain" | tail -n +2 | grep -c .)" 2
row=$(printf '%s\n' "$plain" | awk '$1 == "www"')
like "plain: www row: name, state, commit" "$row" "^www +idle +${H:0:7}[0-9a-f]* "
like "plain: www row: the release" "$row" " $(current_release "$TMP/www") "
row=$(printf '%s\n' "$plain" | awk '$1 == "broken"')
like "plain: broken row: failed" "$row" '^broken +failed '
# Columns line up: every row's STATE starts where the header's does.
col=$(printf '%s\n' "$plain" | head -n 1 | grep -bo 'STATE' | head -n 1 | cut -d: -f1)
bad=$(printf '%s\n' "$plain" | tail -n +2 | awk -v c="$col" 'substr($0, c + 1, 1) == " " || substr($0, c, 1) != " "')
is "plain: columns are aligned with the header" "$bad" ""
one=$(dctl status www)
is "plain: status SITE starts with the same header" "$(printf '%s\n' "$one" | head -n 1)" "$(printf '%s\n' "$plain" | head -n 1)"
like "plain: status SITE's row is that site" "$(printf '%s\n' "$one" | sed -n 2p)" '^www +idle '
is "plain: status SITE shows no other site" "$(printf '%s\n' "$one" | awk '$1 == "broken"')" ""

# ---- JSON, all sites ----
js=$(dctl status --json)
check "json: valid JSON" jq -e . <<<"$js"
is "json: {\"sites\": [...]} with both sites" "$(jq -r '[.sites[].name] | sort | join(",")' <<<"$js")" "broken,www"
FIELDS="name state paused release commit subject author deployed_at trigger last_webhook_at last_error last_error_at next_poll_at"
for f in $FIELDS; do
	is "json: every site has the field $f" "$(jq --arg f "$f" '[.sites[] | has($f)] | all' <<<"$js")" true
done
is "json: state is one of the documented states" \
	"$(jq '[.sites[].state | IN("idle","fetching","writing","hook","activating","health-check","cache-upkeep","failed")] | all' <<<"$js")" true
is "json: paused is a boolean" "$(jq '[.sites[].paused | type == "boolean"] | all' <<<"$js")" true
times_ok=$(jq -r '[.sites[] | .deployed_at, .last_webhook_at, .last_error_at, .next_poll_at
	| select(. != null) | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?Z$")] | all' <<<"$js")
is "json: times are ISO-8601 UTC strings or null" "$times_ok" true

# ---- JSON, one site ----
w=$(dctl status www --json)
is "json one site: the object itself" "$(jq -r .name <<<"$w")" www
is "json www: state" "$(jq -r .state <<<"$w")" idle
is "json www: paused" "$(jq -r .paused <<<"$w")" false
is "json www: release" "$(jq -r .release <<<"$w")" "$(current_release "$TMP/www")"
like "json www: commit" "$(jq -r .commit <<<"$w")" "^${H:0:12}"
is "json www: subject" "$(jq -r .subject <<<"$w")" "Subject line of the tip"
like "json www: author" "$(jq -r .author <<<"$w")" "Deployd Test"
like "json www: deployed_at" "$(jq -r .deployed_at <<<"$w")" "$ISO_RE"
like "json www: trigger" "$(jq -r .trigger <<<"$w")" '^(startup|poll)$'
is "json www: last_webhook_at" "$(jq -r .last_webhook_at <<<"$w")" null
is "json www: last_error" "$(jq -r .last_error <<<"$w")" null
is "json www: last_error_at" "$(jq -r .last_error_at <<<"$w")" null
np=$(jq -r .next_poll_at <<<"$w")
if [[ $np =~ $ISO_RE ]]; then
	d=$(( $(iso_to_epoch "$np") - $(date -u +%s) ))
	# Polls are spread by +-10 % jitter: 30 s means 27 to 33 s.
	if [ "$d" -ge 0 ] && [ "$d" -le 34 ]; then
		ok "json www: next_poll_at is within the 30 s poll interval and its jitter (${d}s ahead)"
	else
		fail "json www: next_poll_at is within the 30 s poll interval and its jitter" "$np is ${d}s from now"
	fi
else
	fail "json www: next_poll_at is an ISO time" "got '$np'"
fi
b=$(dctl status broken --json)
is "json broken: state" "$(jq -r .state <<<"$b")" failed
like "json broken: last_error is a message" "$(jq -r .last_error <<<"$b")" '.....'
like "json broken: last_error_at" "$(jq -r .last_error_at <<<"$b")" "$ISO_RE"
is "json broken: release" "$(jq -r .release <<<"$b")" null
is "json broken: commit" "$(jq -r .commit <<<"$b")" null

# ---- the socket given directly, and errors ----
s=$("$DEPLOYD_BIN" status www --json -s "$TMP/deployd.sock")
is "-s SOCKET works without a config" "$(jq -r .name <<<"$s")" www
out=$(dctl status nosuchsite 2>&1)
is "an unknown site: exit 1" "$?" 1
like "an unknown site: says so" "$out" 'nosuchsite'
stop_daemon
out=$(dctl status 2>&1)
is "daemon not running: exit 1" "$?" 1
like "daemon not running: a clear message" "$out" '[Nn]ot running|[Cc]onnect|[Nn]o such file|refused|unreachable'
out=$(dctl status --json 2>/dev/null)
is "daemon not running: nothing on stdout for --json" "$out" ""

# ---- 50 sites: the table stays one line per site, aligned, with a long name ----
sites=()
for ((i = 1; i <= 49; i++)); do
	sites+=("$(site_yaml "s$i" "$TMP/src.git" "$TMP/many/s$i" poll=0)")
done
LONG=a-rather-long-site-name-for-the-status-table
sites+=("$(site_yaml "$LONG" "$TMP/src.git" "$TMP/many/long" poll=0)")
write_config "$TMP/deployd.yaml" "${sites[@]}"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start with 50 sites"
check "all 50 sites go live" wait_for "50 sites live" 90 \
	eval '[ "$(find "$TMP/many" -maxdepth 2 -name current | wc -l)" -eq 50 ]'
wait_for "all idle" 30 eval '[ "$(status_json | jq "[.sites[] | select(.state == \"idle\")] | length")" -eq 50 ]'
plain=$(dctl status)
is "50 sites: a header and 50 rows" "$(printf '%s\n' "$plain" | grep -c .)" 51
bad=""
for h in STATE COMMIT RELEASE DEPLOYED TRIGGER; do
	col=$(printf '%s\n' "$plain" | head -n 1 | grep -bo "$h" | head -n 1 | cut -d: -f1)
	bad+=$(printf '%s\n' "$plain" | tail -n +2 | awk -v c="$col" -v h="$h" \
		'substr($0, c + 1, 1) == " " || substr($0, c, 1) != " " { print h ": " $0 }')
done
is "50 sites: every column lines up with the header, past the long name" "$bad" ""
widest=$(printf '%s\n' "$plain" | awk '{ if (length($0) > w) w = length($0) } END { print w }')
check "50 sites: rows stay within 160 columns ($widest)" test "$widest" -le 160
like "50 sites: the long name is shown whole" "$plain" "^$LONG +idle "
stop_daemon

done_testing
