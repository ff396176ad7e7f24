#!/bin/bash
# webhook_providers.sh: every provider, both content types where the host has both, signed as the host signs; a real deploy follows each.
# timeout: 240
. "$(dirname "$0")/../lib.sh"

FIX=$SRCDIR/tests/unit/data/hooks
SECRET='It is a Secret to Everybody, 42!'

# hmac256 KEY FILE: lowercase hex HMAC-SHA256 of FILE, as the hosts compute it.
# post SITE FILE HEADER...: POST FILE to /hooks/SITE; prints the status, body in $TMP/resp.
post() {
	local site=$1 file=$2 h args=()
	shift 2
	for h in "$@"; do args+=(-H "$h"); done
	curl -sS -o "$TMP/resp" -w '%{http_code}' --max-time 10 "${args[@]}" \
		--data-binary "@$file" "http://$CFG_LISTEN/hooks/$site"
}

# form FILE OUT: OUT = "payload=" + FILE url-encoded (as Gitea, Gogs and GitHub send forms).
form() {
	{ printf 'payload='; jq -sRrj @uri <"$1"; } >"$2"
}

make_repo "$TMP/src" || bail "make_repo failed"
commit_file "$TMP/src" index.html "first" "first page" || bail "commit failed"
H=$(repo_head "$TMP/src")

printf '%s\n' "$SECRET" >"$TMP/www.secret"
chmod 600 "$TMP/www.secret"
openssl rand 32 >"$TMP/gl.key"
KEYHEX=$(od -An -tx1 "$TMP/gl.key" | tr -d ' \n')
printf 'whsec_%s\n' "$(base64 -w0 <"$TMP/gl.key")" >"$TMP/gl.secret"
chmod 600 "$TMP/gl.secret"

CFG_LISTEN=127.0.0.1:$(free_port)
write_config "$TMP/deployd.yaml" \
	"$(site_yaml www "$TMP/src.git" "$TMP/www" poll=0 secret_file="$TMP/www.secret")" \
	"$(site_yaml signed "$TMP/src.git" "$TMP/signed" poll=0 secret_file="$TMP/gl.secret" \
		'providers=[gitlab]')"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
wait_live "$TMP/www" "$H" 30 || bail "the first deploy did not happen"
wait_live "$TMP/signed" "$H" 30 || bail "the first deploy of 'signed' did not happen"
wait_for "www idle" 10 site_field_is www state idle

n=0
# next_commit: push a new commit; sets H.
next_commit() {
	n=$((n + 1))
	commit_file "$TMP/src" index.html "version $n" "version $n" || bail "commit failed"
	H=$(repo_head "$TMP/src")
}

# delivered DESC SITE STATUS: the answer was STATUS with queued:true, and H goes live.
delivered() {
	local desc=$1 site=$2 got=$3
	if [ "$got" = 202 ] && [ "$(jq -r .queued "$TMP/resp")" = true ]; then
		ok "$desc: 202 queued"
	else
		fail "$desc: 202 queued" "status $got: $(cat "$TMP/resp")"
	fi
	check "$desc: the pushed commit goes live" wait_live "$TMP/$site" "$H" 30
	wait_for "$site idle" 10 site_field_is "$site" state idle
}

# ---- GitHub: the raw body is signed, JSON or form ----
next_commit
jq -cj --arg a "$H" '.after = $a' "$FIX/github-push.json" >"$TMP/gh.json"
size=$(stat -c %s "$TMP/gh.json")
[ "$size" -gt 7000 ] && ok "the GitHub payload is realistic ($size bytes)" ||
	fail "the GitHub payload is realistic" "$size bytes"
GHID=$(cat /proc/sys/kernel/random/uuid)
st=$(post www "$TMP/gh.json" "Content-Type: application/json" "X-GitHub-Event: push" \
	"X-GitHub-Delivery: $GHID" "User-Agent: GitHub-Hookshot/1a2b3c" \
	"X-Hub-Signature: sha1=$(openssl dgst -sha1 -hmac "$SECRET" -r <"$TMP/gh.json" | cut -d' ' -f1)" \
	"X-Hub-Signature-256: sha256=$(hmac256 "$SECRET" "$TMP/gh.json")")
delivered "github json" www "$st"
is "github json: the answer names the provider" "$(jq -r .provider "$TMP/resp")" github
is "status: the trigger is the webhook" "$(site_field www trigger)" webhook
is "status: with its provider" "$(site_field www trigger_provider)" github
is "status: and its delivery id" "$(site_field www trigger_delivery)" "$GHID"
like "plain status: the trigger column names the provider" "$(dctl status www)" "^www .* webhook:github "
# Another delivery naming the commit that is live, with nothing under way: nothing to do.
done_before=$(site_field www deploy.done_id)
st=$(post www "$TMP/gh.json" "Content-Type: application/json" "X-GitHub-Event: push" \
	"X-GitHub-Delivery: $(cat /proc/sys/kernel/random/uuid)" \
	"X-Hub-Signature-256: sha256=$(hmac256 "$SECRET" "$TMP/gh.json")")
is "a push of the live commit: 202" "$st" 202
is "a push of the live commit: ignored, saying why" "$(jq -c '[.ignored, .reason, .queued]' "$TMP/resp")" \
	'[true,"commit already live",null]'
sleep 0.5
is "a push of the live commit queues no deploy" "$(site_field www deploy.done_id)" "$done_before"
is "and nothing is queued" "$(site_field www deploy.queued_id)" 0

next_commit
jq -cj --arg a "$H" '.after = $a' "$FIX/github-push.json" >"$TMP/gh.json"
form "$TMP/gh.json" "$TMP/gh.form"
st=$(post www "$TMP/gh.form" "Content-Type: application/x-www-form-urlencoded" \
	"X-GitHub-Event: push" "X-GitHub-Delivery: $(cat /proc/sys/kernel/random/uuid)" \
	"X-Hub-Signature-256: sha256=$(hmac256 "$SECRET" "$TMP/gh.form")")
delivered "github form" www "$st"

# ---- Gitea, Forgejo, Gogs: they sign the JSON, also when they send a form ----
for host in gitea forgejo gogs; do
	for ctype in json form; do
		next_commit
		jq -j --arg a "$H" '.after = $a' "$FIX/$host-push.json" >"$TMP/$host.json"
		sig=$(hmac256 "$SECRET" "$TMP/$host.json")
		hdrs=()
		case $host in
		forgejo) hdrs=("X-Forgejo-Event: push" "X-Forgejo-Delivery: $(cat /proc/sys/kernel/random/uuid)"
			"X-Forgejo-Signature: $sig" "X-Gitea-Event: push" "X-Gitea-Signature: $sig"
			"X-Gogs-Event: push" "X-Gogs-Signature: $sig" "X-GitHub-Event: push"
			"X-Hub-Signature-256: sha256=$sig") ;;
		gitea) hdrs=("X-Gitea-Event: push" "X-Gitea-Delivery: $(cat /proc/sys/kernel/random/uuid)"
			"X-Gitea-Signature: $sig" "X-Gogs-Event: push" "X-Gogs-Signature: $sig"
			"X-GitHub-Event: push" "X-Hub-Signature-256: sha256=$sig") ;;
		gogs) hdrs=("X-Gogs-Event: push" "X-Gogs-Delivery: $(cat /proc/sys/kernel/random/uuid)"
			"X-Gogs-Signature: $sig") ;;
		esac
		if [ "$ctype" = json ]; then
			st=$(post www "$TMP/$host.json" "Content-Type: application/json" "${hdrs[@]}")
		else
			form "$TMP/$host.json" "$TMP/$host.form"
			st=$(post www "$TMP/$host.form" \
				"Content-Type: application/x-www-form-urlencoded" "${hdrs[@]}")
		fi
		delivered "$host $ctype" www "$st"
		is "$host $ctype: detected as $host" "$(jq -r .provider "$TMP/resp")" "$host"
	done
done

# ---- GitLab: the token in clear ----
next_commit
jq -cj --arg a "$H" '.after = $a | .checkout_sha = $a' "$FIX/gitlab-push.json" >"$TMP/gl.json"
uuid=$(cat /proc/sys/kernel/random/uuid)
st=$(post www "$TMP/gl.json" "Content-Type: application/json" "X-Gitlab-Event: Push Hook" \
	"X-Gitlab-Token: $SECRET" "X-Gitlab-Event-UUID: $(cat /proc/sys/kernel/random/uuid)" \
	"Idempotency-Key: $uuid" "User-Agent: GitLab/17.6.0")
delivered "gitlab token" www "$st"
is "gitlab: the delivery id is the Idempotency-Key" "$(jq -r .delivery "$TMP/resp")" "$uuid"

# ---- GitLab: the signed (Standard Webhooks) form ----
next_commit
jq -cj --arg a "$H" '.after = $a | .checkout_sha = $a' "$FIX/gitlab-push.json" >"$TMP/gl.json"
id="msg_$(openssl rand -hex 8)"
ts=$(date +%s)
sig=$({ printf '%s.%s.' "$id" "$ts"; cat "$TMP/gl.json"; } |
	openssl dgst -sha256 -mac HMAC -macopt "hexkey:$KEYHEX" -binary | base64 -w0)
st=$(post signed "$TMP/gl.json" "Content-Type: application/json" "X-Gitlab-Event: Push Hook" \
	"webhook-id: $id" "webhook-timestamp: $ts" "webhook-signature: v1,$sig")
delivered "gitlab signed" signed "$st"

# ---- Bitbucket Cloud: the tracked branch is one of several changes ----
next_commit
jq -cj --arg a "$H" '.push.changes[1].new.target.hash = $a' "$FIX/bitbucket-cloud-push.json" \
	>"$TMP/bb.json"
st=$(post www "$TMP/bb.json" "Content-Type: application/json" "X-Event-Key: repo:push" \
	"X-Request-UUID: {$(cat /proc/sys/kernel/random/uuid)}" "X-Hook-UUID: {$(cat /proc/sys/kernel/random/uuid)}" \
	"User-Agent: Bitbucket-Webhooks/2.0" "X-Hub-Signature: sha256=$(hmac256 "$SECRET" "$TMP/bb.json")")
delivered "bitbucket cloud" www "$st"

# ---- Bitbucket Data Center ----
next_commit
jq -j --arg a "$H" '.changes[0].toHash = $a' "$FIX/bitbucket-dc-refs-changed.json" >"$TMP/dc.json"
st=$(post www "$TMP/dc.json" "Content-Type: application/json; charset=UTF-8" \
	"X-Event-Key: repo:refs_changed" "X-Request-Id: $(cat /proc/sys/kernel/random/uuid)" \
	"X-Hub-Signature: sha256=$(hmac256 "$SECRET" "$TMP/dc.json")")
delivered "bitbucket data center" www "$st"

# ---- what the host shows when a hook is created or tested ----
st=$(post www "$FIX/github-ping.json" "Content-Type: application/json" "X-GitHub-Event: ping" \
	"X-GitHub-Delivery: $(cat /proc/sys/kernel/random/uuid)" \
	"X-Hub-Signature-256: sha256=$(hmac256 "$SECRET" "$FIX/github-ping.json")")
is "github ping: 200" "$st" 200
st=$(post www "$FIX/gitea-test.json" "Content-Type: application/json" "X-Gitea-Event: push" \
	"X-Gitea-Signature: $(hmac256 "$SECRET" "$FIX/gitea-test.json")")
is "gitea test delivery: 200" "$st" 200
printf '{"test": true}' >"$TMP/diag.json"
st=$(post www "$TMP/diag.json" "Content-Type: application/json" "X-Event-Key: diagnostics:ping" \
	"X-Hub-Signature: sha256=$(hmac256 "$SECRET" "$TMP/diag.json")")
is "bitbucket test connection: 200" "$st" 200

# ---- every accepted delivery was logged once, with its provider ----
for p in github gitea forgejo gogs gitlab bitbucket; do
	# two each: JSON and form, token and signed, Cloud and Data Center
	c=$(grep -c "webhook site=[a-z]* provider=$p .* queued" "$TMP/daemon.log")
	is "log: the $p deliveries were logged one line each" "$c" 2
done
# ---- GitLab signed: one signature, one spelling ----
# libsodium 1.0.18 decoded every byte from 0x80 to 0xff as '/', so the daemon took 129
# spellings of one MAC. Take a signature with a '/' and put other bytes in its place.
for n in $(seq 1 200); do
	id="msg_strict_$n"
	sig=$({ printf '%s.%s.' "$id" "$ts"; cat "$TMP/gl.json"; } |
		openssl dgst -sha256 -mac HMAC -macopt "hexkey:$KEYHEX" -binary | base64 -w0)
	case $sig in */*) break ;; esac
done
like "gitlab strict: a signature with a '/' to spell otherwise" "$sig" '/'
for byte in '\325' '\200' '\377' '*' '-' '_' '.' '~'; do
	bad=$(printf '%s' "$sig" | sed "s|/|$(printf "$byte")|")
	st=$(post signed "$TMP/gl.json" "Content-Type: application/json" \
		"X-Gitlab-Event: Push Hook" "webhook-id: $id" "webhook-timestamp: $ts" \
		"webhook-signature: v1,$bad")
	is "gitlab strict: '/' spelled as $byte is refused: 401" "$st" 401
done
bad=$(printf '%s' "$sig" | sed 's|=$|==|')
st=$(post signed "$TMP/gl.json" "Content-Type: application/json" "X-Gitlab-Event: Push Hook" \
	"webhook-id: $id" "webhook-timestamp: $ts" "webhook-signature: v1,$bad")
is "gitlab strict: one padding byte too many is refused: 401" "$st" 401
st=$(post signed "$TMP/gl.json" "Content-Type: application/json" "X-Gitlab-Event: Push Hook" \
	"webhook-id: $id" "webhook-timestamp: $ts" "webhook-signature: v1,$sig")
is "gitlab strict: the right spelling is still accepted: 202" "$st" 202

# ---- a delivery id the listener must make safe before the daemon sees it ----
# A space in it once made the daemon refuse the listener's record: 503 to a signed push.
st=$(post www "$TMP/gh.json" "Content-Type: application/json" "X-GitHub-Event: push" \
	"X-GitHub-Delivery: odd id \"with\" quotes" \
	"X-Hub-Signature-256: sha256=$(hmac256 "$SECRET" "$TMP/gh.json")")
is "a delivery id with spaces and quotes: 202, not 503" "$st" 202
is "a delivery id with spaces and quotes: made one safe word" "$(jq -r .delivery "$TMP/resp")" \
	"odd_id__with__quotes"

check "the daemon keeps serving" daemon_running
done_testing
