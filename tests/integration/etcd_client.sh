#!/bin/bash
# etcd_client.sh: the fleet's etcd client (fleet/etcd.c) against real etcd members on loopback: keys, transactions, leases, watches that resume and survive a dead member, compaction, locks, elections, failover, TLS client certificates and passwords.
# timeout: 300
#
# Everything the client writes is read back with etcdctl, and what etcdctl writes is read
# with the client, so neither side can agree with itself by mistake.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../lib-servers.sh"

BUILD=${BUILDDIR:-$(dirname "$DEPLOYD_BIN")}
TOOL=$BUILD/tests/fleet/etcd-tool
[ -x "$TOOL" ] || bail "etcd-tool was not built ($TOOL)"
need etcd:etcd-server etcdctl:etcd-client jq:jq || bail "etcd is needed"

# et ARGS...: the tool against the cluster started last.
et() { "$TOOL" -e "$ETCD_ENDPOINTS" "$@"; }

# ---- one member: keys ----
start_etcd 1 || bail "etcd did not start"

val='a value with spaces, = signs, ünïcode and "quotes"'
check "put through the client" et put /t/k1 "$val"
is "etcdctl reads what the client wrote" "$(etcdctl_ get /t/k1 --print-value-only)" "$val"
etcdctl_ put /t/k2 "written by etcdctl" >/dev/null
like "the client reads what etcdctl wrote" "$(et get /t/k2)" '^kv /t/k2=written by etcdctl create=[0-9]+ mod=[0-9]+ version=1 lease=0$'
etcdctl_ put /tx "a sibling, not under /t/" >/dev/null
got=$(et get /t/ prefix)
is "a prefix read returns the keys under it and no sibling" "$(grep -c '^kv ' <<<"$got")" 2
rev=$(etcdctl_ get /t/k1 -w json | jq -r .header.revision)
is "the read's revision is the store's" "$(sed -n 's/^rev //p' <<<"$got")" "$rev"
like "a missing key reads as nothing at the current revision" "$(et get /nope)" '^rev [0-9]+$'

# put-if: create only when absent, then only at the revision read.
is "put-if 0 creates a key that is absent" "$(et put-if /t/new one 0)" done
is "put-if 0 loses when the key exists" "$(et put-if /t/new two 0)" lost
mod=$(etcdctl_ get /t/new -w json | jq -r '.kvs[0].mod_revision')
is "put-if at a stale revision loses" "$(et put-if /t/new three $((mod - 1)))" lost
is "put-if at the key's revision wins" "$(et put-if /t/new four "$mod")" done
is "and only the winner's value is stored" "$(etcdctl_ get /t/new --print-value-only)" four
racers=()
for i in 1 2 3 4 5 6 7 8; do et put-if /t/race "writer $i" 0 >"$TMP/race.$i" & racers+=($!); done
wait "${racers[@]}"
is "eight racing creators: exactly one wins" "$(cat "$TMP"/race.* | grep -c done)" 1
is "deleting a prefix deletes its keys only" "$(et del /t/ prefix)" "deleted 4"
is "the sibling is still there" "$(etcdctl_ get /tx --print-value-only)" "a sibling, not under /t/"

# ---- leases ----
lease=$(et grant 2)
like "a lease is granted" "$lease" '^[0-9a-f]+$'
check "a key is put on the lease" et put /l/kept v "$lease"
# -w fields: JSON would pass the 64-bit lease ID through a double.
is "etcdctl sees the key's lease" "$(printf '%x' "$(etcdctl_ get /l/kept -w fields | sed -n 's/^"Lease" : //p')")" "$lease"
# Renewed every half second for four seconds (twice the TTL): the key stays.
for i in 1 2 3 4 5 6 7 8; do et keepalive "$lease" >"$TMP/ka" || break; sleep 0.5; done
is "a renewal reports the lease's TTL" "$(cat "$TMP/ka")" "ttl 2"
is "a renewed lease keeps its key past its TTL" "$(etcdctl_ get /l/kept --print-value-only)" v
wait_for "the key to go once renewals stop" 10 bash -c '[ -z "$(ETCDCTL_API=3 etcdctl --endpoints "$0" get /l/kept)" ]' "$ETCD_ENDPOINTS"
is "an unrenewed lease takes its key with it" "$(etcdctl_ get /l/kept --print-value-only)" ""
out=$(et keepalive "$lease" 2>&1)
is "renewing an expired lease fails" "$?" 1
like "and says it expired" "$out" "lease $lease has expired"
lease=$(et grant 60)
et put /l/revoked v "$lease" >/dev/null
check "a lease is revoked" et revoke "$lease"
is "a revoked lease takes its key at once" "$(etcdctl_ get /l/revoked --print-value-only)" ""
out=$(et put /l/x v "$lease" 2>&1)
like "a put on a revoked lease says the lease is gone" "$out" "requested lease not found"

# ---- watches ----
# Six events written over three seconds, watched in slices of 400 ms: each slice resumes
# from the revision after the last event, so nothing is missed and nothing is seen twice.
from=$(($(etcdctl_ get / -w json | jq -r .header.revision) + 1))
spawn "$TMP/watch1.out" "$TOOL" -e "$ETCD_ENDPOINTS" watch /w/ prefix "$from" 6 400
wpid=$LAST_PID
for i in 1 2 3 4 5; do etcdctl_ put "/w/k$i" "v$i" >/dev/null; sleep 0.6; done
etcdctl_ del /w/k2 >/dev/null
wait_for "the watch to end" 10 bash -c "! kill -0 $wpid"
events=$(grep -E '^(PUT|DELETE) ' "$TMP/watch1.out")
is "every event arrives once, in order" "$(awk '{ split($2, a, "="); printf "%s %s;", $1, a[1] }' <<<"$events")" \
	"PUT /w/k1;PUT /w/k2;PUT /w/k3;PUT /w/k4;PUT /w/k5;DELETE /w/k2;"
check "the watch was resumed between slices" grep -q '^resume ' "$TMP/watch1.out"
is "a watch from an old revision replays what it missed" \
	"$(et watch /w/k3 exact "$from" 1 2000 | sed -n 's/^PUT \(\/w\/k3=v3\) .*/\1/p')" "/w/k3=v3"

# Compaction: a watch from a revision that is gone says so, with the revision to read at.
etcdctl_ put /w/k6 v6 >/dev/null
etcdctl_ compact "$(etcdctl_ get / -w json | jq -r .header.revision)" >/dev/null
out=$(et watch /w/ prefix "$from" 1 2000 2>&1)
is "a compacted watch ends with an error" "$?" 1
like "it names the compaction" "$out" "^compacted [0-9]+"
like "and says to read again" "$out" "revisions before [0-9]+ were compacted"

# ---- locks and elections ----
l1=$(et grant 30) l2=$(et grant 30)
spawn "$TMP/lock1.out" "$TOOL" -e "$ETCD_ENDPOINTS" lock deploy-lock "$l1" 800
spawn "$TMP/lock2.out" "$TOOL" -e "$ETCD_ENDPOINTS" lock deploy-lock "$l2" 800
wait_for "both lock holders to finish" 10 bash -c "grep -q unlocked '$TMP/lock1.out' && grep -q unlocked '$TMP/lock2.out'"
read -r a1 b1 < <(awk '/^locked/ { a = $2 } /^unlocked/ { b = $2 } END { print a, b }' "$TMP/lock1.out")
read -r a2 b2 < <(awk '/^locked/ { a = $2 } /^unlocked/ { b = $2 } END { print a, b }' "$TMP/lock2.out")
if [ -n "$a1" ] && [ -n "$a2" ] && { [ "$b1" -le "$a2" ] || [ "$b2" -le "$a1" ]; }; then
	ok "a lock is held by one at a time ($a1-$b1 and $a2-$b2)"
else
	fail "a lock is held by one at a time" "$(cat "$TMP/lock1.out" "$TMP/lock2.out")"
fi

c1=$(et grant 30) c2=$(et grant 30)
like "the first candidate is elected" "$(et campaign coordinator "$c1" node-a)" '^elected coordinator/'
like "the leader is known to everyone" "$(et leader coordinator)" '^leader coordinator/[0-9a-f]+=node-a '
spawn "$TMP/campaign2.out" "$TOOL" -e "$ETCD_ENDPOINTS" campaign coordinator "$c2" node-b 20000
sleep 1
check_not "a second candidate waits while the first leads" grep -q elected "$TMP/campaign2.out"
et revoke "$c1" >/dev/null
wait_for "the second candidate to be elected" 10 grep -q elected "$TMP/campaign2.out"
like "when the leader's lease goes, the next candidate leads" "$(et leader coordinator)" '=node-b '
et revoke "$c2" >/dev/null
out=$(et leader coordinator 2>&1)
like "with no candidate left, nobody leads" "$out" "no leader"
out=$(et -t 1500 campaign elsewhere "$(et grant 30)" node-c 2>&1)
like "a campaign answers within its wait when it wins at once" "$out" '^elected elsewhere/'

# ---- failover and deadlines ----
dead="http://127.0.0.1:$(free_port)"
is "a dead first endpoint is passed over" \
	"$("$TOOL" -e "$dead,$ETCD_ENDPOINTS" get /tx | sed -n 's/^kv \/tx=\(.*\) create.*/\1/p')" \
	"a sibling, not under /t/"
t0=$(now_ms)
out=$("$TOOL" -e "$dead" -t 800 get /tx 2>&1)
is "with no endpoint alive the call fails" "$?" 1
like "and says no endpoint answered, naming the last" "$out" "no etcd endpoint answered.*127.0.0.1"
start_bad_remote silent || bail "silent server"
t0=$(now_ms)
out=$("$TOOL" -e "http://127.0.0.1:$BAD_PORT" -t 1000 get /tx 2>&1)
t1=$(now_ms)
like "an endpoint that accepts and never answers runs into the deadline" "$out" "in time"
if [ $((t1 - t0)) -lt 3000 ]; then ok "the deadline holds ($((t1 - t0)) ms for 1000)"; else fail "the deadline holds ($((t1 - t0)) ms for 1000)"; fi
t0=$(now_ms)
got=$("$TOOL" -e "http://127.0.0.1:$BAD_PORT,$ETCD_ENDPOINTS" -t 3000 get /tx)
t1=$(now_ms)
like "a silent endpoint gets its share of the deadline, then the next one answers" "$got" '^kv /tx='
if [ $((t1 - t0)) -lt 3000 ]; then ok "within the deadline ($((t1 - t0)) ms for 3000)"; else fail "within the deadline ($((t1 - t0)) ms for 3000)"; fi
for p in "${ETCD_PIDS[@]}"; do stop_pid "$p" 5; done

# ---- three members: a watch that outlives the member it was on ----
start_etcd 3 || bail "3-member etcd did not start"
from=$(($(etcdctl_ get / -w json | jq -r .header.revision) + 1))
spawn "$TMP/watch3.out" "$TOOL" -e "$ETCD_ENDPOINTS" watch /f/ prefix "$from" 10 500
wpid=$LAST_PID
for i in 1 2 3 4 5; do etcdctl_ put "/f/k$i" "v$i" >/dev/null; sleep 0.2; done
wait_for "the watch to see five events" 10 bash -c "[ \$(grep -c '^PUT' '$TMP/watch3.out') -ge 5 ]"
first=$(grep -m1 -o 'endpoint=[^ ]*' "$TMP/watch3.out" | cut -d= -f2)
stop_pid "${ETCD_PIDS[0]}" 5	# the first endpoint: where the watch began
others="${ETCD_URLS[1]},${ETCD_URLS[2]}"
for i in 6 7 8 9 10; do
	ETCDCTL_API=3 etcdctl --endpoints "$others" put "/f/k$i" "v$i" >/dev/null
	sleep 0.2
done
wait_for "the watch to end" 15 bash -c "! kill -0 $wpid"
is "all ten events arrive, none twice, across the member's death" \
	"$(grep '^PUT' "$TMP/watch3.out" | awk '{ split($2, a, "="); printf "%s ", a[1] }')" \
	"/f/k1 /f/k2 /f/k3 /f/k4 /f/k5 /f/k6 /f/k7 /f/k8 /f/k9 /f/k10 "
like "the watch moved to another member" "$(grep '^resume' "$TMP/watch3.out" | tail -n 1)" "endpoint=(${ETCD_URLS[1]}|${ETCD_URLS[2]})"
diag "watch began on $first"
is "a read through the endpoint list passes the dead member" \
	"$(et get /f/k10 | sed -n 's/^kv \/f\/k10=\([^ ]*\) .*/\1/p')" v10
kill -STOP "${ETCD_PIDS[1]}"
t0=$(now_ms)
got=$("$TOOL" -e "${ETCD_URLS[1]},${ETCD_URLS[2]}" -t 4000 get /f/k1 2>&1)
t1=$(now_ms)
kill -CONT "${ETCD_PIDS[1]}"
# Two of three members down: no quorum. The third may answer a read or say it has no leader.
diag "with one member stopped and one dead: $got ($((t1 - t0)) ms)"
if [ $((t1 - t0)) -lt 6000 ]; then ok "a stopped member and a lost quorum still end within the deadline ($((t1 - t0)) ms for 4000)"; else fail "a stopped member and a lost quorum still end within the deadline ($((t1 - t0)) ms)"; fi
for p in "${ETCD_PIDS[@]}"; do stop_pid "$p" 5; done

# ---- TLS with client certificates ----
start_etcd 1 tls || bail "etcd with TLS did not start"
tls=(--ca "$TLS_DIR/ca.pem" --cert "$TLS_DIR/client.pem" --key "$TLS_DIR/client.key")
check "a put over TLS with a client certificate" et "${tls[@]}" put /s/k tls-value
is "etcdctl reads it back over TLS" "$(etcdctl_ get /s/k --print-value-only)" tls-value
out=$(et --ca "$TLS_DIR/ca.pem" get /s/k 2>&1)
is "without a client certificate the call fails" "$?" 1
diag "without a certificate: $out"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=other" \
	-keyout "$TMP/other.key" -out "$TMP/other.pem" 2>/dev/null
out=$(et --ca "$TMP/other.pem" --cert "$TLS_DIR/client.pem" --key "$TLS_DIR/client.key" get /s/k 2>&1)
is "a server certificate from another CA is refused" "$?" 1
like "and the error says why" "$out" "(certificate|SSL)"
out=$(et --ca "$TLS_DIR/ca.pem" --cert "$TLS_DIR/client.pem" get /s/k 2>&1)
like "a certificate without its key is a configuration error" "$out" "cert_file and key_file go together"
for p in "${ETCD_PIDS[@]}"; do stop_pid "$p" 5; done

# ---- users and passwords, with tokens that expire ----
start_etcd 1 "" --auth-token simple --auth-token-ttl 1 || bail "etcd with auth did not start"
etcdctl_ user add root:rootpw >/dev/null &&
	etcdctl_ user add deployd:'s3cret "pw"' >/dev/null &&
	etcdctl_ role add fleet >/dev/null &&
	etcdctl_ role grant-permission fleet readwrite /deployd/ --prefix=true >/dev/null &&
	etcdctl_ user grant-role deployd fleet >/dev/null &&
	etcdctl_ auth enable >/dev/null 2>&1 || bail "could not set up etcd users"
printf '%s\n' 's3cret "pw"' >"$TMP/pw" && chmod 600 "$TMP/pw"
auth=(--user deployd --password-file "$TMP/pw")
check "a put with a user and password" et "${auth[@]}" put /deployd/k authed
is "it is stored" "$(etcdctl_ --user root:rootpw get /deployd/k --print-value-only)" authed
out=$(et "${auth[@]}" put /elsewhere/k v 2>&1)
like "outside the user's keys: permission denied" "$out" "permission denied"
printf 'wrong\n' >"$TMP/pw-wrong" && chmod 600 "$TMP/pw-wrong"
out=$(et --user deployd --password-file "$TMP/pw-wrong" get /deployd/k 2>&1)
like "a wrong password: authentication failed" "$out" "authentication failed"
chmod 644 "$TMP/pw"
out=$(et "${auth[@]}" get /deployd/k 2>&1)
is "a password file others can read is refused" "$?" 1
check_not "and the password is not printed" grep -q s3cret <<<"$out"
chmod 600 "$TMP/pw"
out=$(et --user deployd get /deployd/k 2>&1)
like "a user without a password file is a configuration error" "$out" "needs a password_file"
# The token lives one second; watch slices of 1.5 s outlive it, so each resume re-authenticates.
from=$(($(etcdctl_ --user root:rootpw get / -w json | jq -r .header.revision) + 1))
spawn "$TMP/watch-auth.out" "$TOOL" -e "$ETCD_ENDPOINTS" "${auth[@]}" watch /deployd/w/ prefix "$from" 3 1500
wpid=$LAST_PID
for i in 1 2 3; do sleep 2; etcdctl_ --user root:rootpw put "/deployd/w/k$i" "v$i" >/dev/null; done
wait_for "the authenticated watch to end" 10 bash -c "! kill -0 $wpid"
is "a watch outlives its token: every event arrives" "$(grep -c '^PUT' "$TMP/watch-auth.out")" 3

done_testing
