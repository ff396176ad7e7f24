# tests/lib-servers.sh: real git servers on 127.0.0.1 for the transport tests (source after lib.sh).
#
# need TOOL...                   fail (not skip) when a tool is missing, naming its Debian package
# SSH:   start_sshd              sshd on $SSH_PORT, user $SSH_USER (shell git-shell), host keys
#                                ed25519 + ECDSA in $SSH_DIR; deploy key $SSH_DIR/deploy (authorized),
#                                a second key $SSH_DIR/stranger (not authorized); $SSH_DIR/known_hosts
#                                pins both host keys. Repositories go under $SSH_ROOT:
#                                ssh://$SSH_USER@127.0.0.1:$SSH_PORT$SSH_ROOT/NAME.git
#        ssh_known_hosts_of FILE... prints known_hosts lines for the given public key files
# HTTPS: make_test_ca            $TLS_DIR/ca.pem (a test CA) and a server certificate for 127.0.0.1
#        start_https TOKEN       lighttpd + git http-backend on $HTTPS_PORT with TLS and basic auth
#                                (user x-access-token, password TOKEN); repositories under
#                                $HTTP_ROOT: https://127.0.0.1:$HTTPS_PORT/git/NAME.git
# git:// start_git_daemon        git daemon on $GIT_PORT exporting $GITD_ROOT: git://127.0.0.1:$GIT_PORT/NAME.git
# etcd:  start_etcd N [tls] [ARGS] an N-member etcd cluster on 127.0.0.1 (Debian's etcd-server);
#                                client URLs in ETCD_URLS (array) and ETCD_ENDPOINTS (comma list),
#                                member PIDs in ETCD_PIDS; with tls, clients need $TLS_DIR/client.pem
#                                and client.key (signed by ca.pem); ARGS go to every member.
#        etcd_restart I          start member I again (same data directory) after a kill
#        etcdctl_ ARGS...        etcdctl (API v3) against ETCD_ENDPOINTS, with the TLS files if any
# Every server is started with spawn, so lib.sh stops it by PID when the script ends.

SSH_USER=${SSH_USER:-deployd-git}
SSH_DIR=$TMP/ssh
SSH_ROOT=$TMP/ssh-repos
TLS_DIR=$TMP/tls
HTTP_ROOT=$TMP/http-repos
GITD_ROOT=$TMP/gitd-repos

# need TOOL[:PACKAGE]...: every tool on PATH (or an absolute path that is executable).
need() {
	local t tool pkg missing=0
	for t in "$@"; do
		tool=${t%%:*}
		pkg=${t#*:}
		if [ "${tool#/}" != "$tool" ]; then
			[ -x "$tool" ] && continue
		elif command -v "$tool" >/dev/null 2>&1; then
			continue
		fi
		fail "$tool is needed for this test (apt-get install $pkg)"
		missing=1
	done
	return "$missing"
}

# wait_port PORT SECONDS: until something accepts connections on 127.0.0.1:PORT.
wait_port() {
	wait_for "127.0.0.1:$1 to listen" "$2" bash -c "exec 3<>/dev/tcp/127.0.0.1/$1"
}

# ---- ssh ----

# A system account whose login shell is git-shell; key-only, so unlock it with a '*' password.
_ssh_user() {
	if ! id "$SSH_USER" >/dev/null 2>&1; then
		useradd -r -M -d /nonexistent -s /usr/bin/git-shell "$SSH_USER" || return 1
	fi
	usermod -s /usr/bin/git-shell -p '*' "$SSH_USER" >/dev/null || return 1
}

ssh_known_hosts_of() {
	local f
	for f in "$@"; do
		printf '[127.0.0.1]:%s %s\n' "$SSH_PORT" "$(cut -d' ' -f1,2 "$f")"
	done
}

start_sshd() {
	local deadline
	[ "$(id -u)" -eq 0 ] || { fail "start_sshd needs root (useradd, privilege separation)"; return 1; }
	need /usr/sbin/sshd:openssh-server ssh-keygen:openssh-client git-shell:git || return 1
	_ssh_user || { fail "could not create the $SSH_USER account"; return 1; }
	mkdir -p "$SSH_DIR" "$SSH_ROOT" /run/sshd
	chmod 755 "$SSH_DIR" "$SSH_ROOT"
	ssh-keygen -q -t ed25519 -N '' -C host -f "$SSH_DIR/host_ed25519" || return 1
	ssh-keygen -q -t ecdsa -b 256 -N '' -C host -f "$SSH_DIR/host_ecdsa" || return 1
	ssh-keygen -q -t ed25519 -N '' -C deploy -f "$SSH_DIR/deploy" || return 1
	ssh-keygen -q -t ecdsa -b 256 -N '' -C stranger -f "$SSH_DIR/stranger" || return 1
	chmod 600 "$SSH_DIR/deploy" "$SSH_DIR/stranger"
	cp "$SSH_DIR/deploy.pub" "$SSH_DIR/authorized_keys"
	chmod 644 "$SSH_DIR/authorized_keys"
	SSH_PORT=$(free_port) || return 1
	ssh_known_hosts_of "$SSH_DIR/host_ed25519.pub" "$SSH_DIR/host_ecdsa.pub" >"$SSH_DIR/known_hosts"
	# git refuses repositories owned by another user unless told they are safe; the
	# repositories belong to the test (root), git-upload-pack runs as $SSH_USER.
	cat >"$SSH_DIR/sshd_config" <<-EOF
		Port $SSH_PORT
		ListenAddress 127.0.0.1
		HostKey $SSH_DIR/host_ed25519
		HostKey $SSH_DIR/host_ecdsa
		PidFile $SSH_DIR/sshd.pid
		AuthorizedKeysFile $SSH_DIR/authorized_keys
		AllowUsers $SSH_USER
		StrictModes no
		UsePAM no
		PasswordAuthentication no
		KbdInteractiveAuthentication no
		PubkeyAuthentication yes
		PermitRootLogin no
		X11Forwarding no
		AllowTcpForwarding no
		SetEnv GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0=*
		LogLevel VERBOSE
	EOF
	/usr/sbin/sshd -t -f "$SSH_DIR/sshd_config" || { fail "sshd -t refused the test config"; return 1; }
	spawn "$TMP/sshd.log" /usr/sbin/sshd -D -e -f "$SSH_DIR/sshd_config"
	SSHD_PID=$LAST_PID
	wait_port "$SSH_PORT" 10 || { diag "$(tail -n 20 "$TMP/sshd.log")"; return 1; }
}

# ssh_repo NAME: a bare repository NAME.git served over ssh, with a work clone in $TMP/NAME.
ssh_repo() {
	make_repo "$SSH_ROOT/$1" || return 1
	chmod -R a+rX "$SSH_ROOT"
}

# ---- https ----

make_test_ca() {
	mkdir -p "$TLS_DIR"
	(
		cd "$TLS_DIR" || exit 1
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
			-subj "/CN=deployd test CA" -keyout ca.key -out ca.pem \
			-addext "basicConstraints=critical,CA:TRUE" \
			-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null &&
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null &&
		printf 'subjectAltName=DNS:127.0.0.1,IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >server.ext &&
		openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
			-extfile server.ext -out server.pem 2>/dev/null &&
		cat server.pem server.key >server-bundle.pem
	) || { fail "openssl could not make the test CA"; return 1; }
}

start_https() {
	local token=$1
	need lighttpd:lighttpd openssl:openssl /usr/lib/git-core/git-http-backend:git || return 1
	[ -f /usr/lib/lighttpd/mod_openssl.so ] || { fail "lighttpd's TLS module is needed (apt-get install lighttpd-mod-openssl)"; return 1; }
	[ -f "$TLS_DIR/server-bundle.pem" ] || make_test_ca || return 1
	mkdir -p "$HTTP_ROOT" "$TMP/http"
	HTTPS_PORT=$(free_port) || return 1
	printf 'x-access-token:%s\n' "$token" >"$TMP/http/users"
	cat >"$TMP/http/lighttpd.conf" <<-EOF
		server.modules = ( "mod_alias", "mod_auth", "mod_authn_file", "mod_cgi",
		                   "mod_setenv", "mod_openssl", "mod_accesslog" )
		server.document-root = "$TMP/http"
		server.bind = "127.0.0.1"
		server.port = $HTTPS_PORT
		server.errorlog = "$TMP/lighttpd.error.log"
		accesslog.filename = "$TMP/lighttpd.access.log"
		ssl.engine = "enable"
		ssl.pemfile = "$TLS_DIR/server-bundle.pem"
		alias.url = ( "/git" => "/usr/lib/git-core/git-http-backend" )
		\$HTTP["url"] =~ "^/git" {
			cgi.assign = ( "" => "" )
			setenv.set-environment = ( "GIT_PROJECT_ROOT" => "$HTTP_ROOT",
			                           "GIT_HTTP_EXPORT_ALL" => "1" )
			auth.backend = "plain"
			auth.backend.plain.userfile = "$TMP/http/users"
			auth.require = ( "" => ( "method" => "basic", "realm" => "git",
			                         "require" => "valid-user" ) )
		}
	EOF
	lighttpd -tt -f "$TMP/http/lighttpd.conf" >"$TMP/lighttpd.check" 2>&1 ||
		{ fail "lighttpd refused the test config" "$(cat "$TMP/lighttpd.check")"; return 1; }
	spawn "$TMP/lighttpd.log" lighttpd -D -f "$TMP/http/lighttpd.conf"
	HTTPD_PID=$LAST_PID
	wait_port "$HTTPS_PORT" 10 || { diag "$(cat "$TMP/lighttpd.log" "$TMP/lighttpd.error.log" 2>/dev/null | tail -n 20)"; return 1; }
}

# https_repo NAME: NAME.git served over https (and a work clone in $TMP/NAME).
https_repo() {
	make_repo "$HTTP_ROOT/$1"
}

# ---- git:// ----

start_git_daemon() {
	mkdir -p "$GITD_ROOT"
	GIT_PORT=$(free_port) || return 1
	spawn "$TMP/git-daemon.log" git daemon --reuseaddr --listen=127.0.0.1 --port="$GIT_PORT" \
		--base-path="$GITD_ROOT" --export-all "$GITD_ROOT"
	GITD_PID=$LAST_PID
	wait_port "$GIT_PORT" 10
}

# ---- broken remotes ----

# start_bad_remote silent|garbage: a TCP server on 127.0.0.1 that accepts connections and then
# never says a word (silent), or answers anything with bytes that are not git's protocol
# (garbage). Its port is in BAD_PORT.
start_bad_remote() {
	BAD_PORT=$(free_port) || return 1
	spawn "$TMP/bad-remote-$1.log" python3 -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
held = []
while True:
    c, _ = s.accept()
    if sys.argv[2] == "silent":
        held.append(c)
        continue
    try:
        c.recv(4096)
        c.sendall(b"\x00\xffthis is not the git protocol\r\n" * 64)
    except OSError:
        pass
    c.close()
' "$BAD_PORT" "$1"
	wait_port "$BAD_PORT" 10
}

# ---- etcd ----

# A client certificate from the test CA, for etcd's --client-cert-auth, and a server
# certificate that is a client one too: etcd's JSON gateway dials its own gRPC port with it.
_etcd_client_cert() {
	(
		cd "$TLS_DIR" || exit 1
		printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n' >etcd-server.ext &&
		openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
			-extfile etcd-server.ext -out etcd-server.pem 2>/dev/null &&
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=deployd" \
			-keyout client.key -out client.csr 2>/dev/null &&
		printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' >client.ext &&
		openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
			-extfile client.ext -out client.pem 2>/dev/null &&
		chmod 600 client.key
	) || { fail "openssl could not make the etcd client certificate"; return 1; }
}

start_etcd() {
	local n=$1 tls=${2:-} i scheme=http cluster="" peers=() tlsargs=()
	shift $(($# < 2 ? $# : 2))
	need etcd:etcd-server etcdctl:etcd-client || return 1
	if [ "$tls" = tls ]; then
		[ -f "$TLS_DIR/server.pem" ] || make_test_ca || return 1
		[ -f "$TLS_DIR/etcd-server.pem" ] || _etcd_client_cert || return 1
		scheme=https
		tlsargs=(--cert-file "$TLS_DIR/etcd-server.pem" --key-file "$TLS_DIR/server.key"
			--client-cert-auth --trusted-ca-file "$TLS_DIR/ca.pem")
	fi
	ETCD_URLS=() ETCD_PIDS=() ETCD_RUN=$((${ETCD_RUN:-0} + 1))
	for ((i = 0; i < n; i++)); do
		ETCD_URLS+=("$scheme://127.0.0.1:$(free_port)")
		peers+=("http://127.0.0.1:$(free_port)")
		cluster+="${cluster:+,}e$i=${peers[i]}"
	done
	for ((i = 0; i < n; i++)); do
		# Each member's command in a file of its own, so that etcd_restart can start it again.
		printf '%q ' exec etcd --name "e$i" --data-dir "$TMP/etcd/$ETCD_RUN/e$i" \
			--listen-client-urls "${ETCD_URLS[i]}" --advertise-client-urls "${ETCD_URLS[i]}" \
			--listen-peer-urls "${peers[i]}" --initial-advertise-peer-urls "${peers[i]}" \
			--initial-cluster "$cluster" --initial-cluster-token "deployd-test-$$" \
			--heartbeat-interval 50 --election-timeout 500 "${tlsargs[@]}" "$@" \
			>"$TMP/etcd-e$i.sh"
		spawn "$TMP/etcd-e$i.log" bash "$TMP/etcd-e$i.sh"
		ETCD_PIDS+=("$LAST_PID")
	done
	ETCD_ENDPOINTS=$(IFS=,; echo "${ETCD_URLS[*]}")
	ETCD_TLS=$tls
	wait_for "etcd cluster of $n to be healthy" 30 etcdctl_ endpoint health >/dev/null ||
		{ diag "$(tail -n 20 "$TMP/etcd-e0.log")"; return 1; }
}

# etcd_restart I: start member I again, with its data, after it was killed.
etcd_restart() {
	spawn "$TMP/etcd-e$1.log" bash "$TMP/etcd-e$1.sh"
	ETCD_PIDS[$1]=$LAST_PID
}

etcdctl_() {
	local tlsargs=()
	[ "${ETCD_TLS:-}" = tls ] && tlsargs=(--cacert "$TLS_DIR/ca.pem"
		--cert "$TLS_DIR/client.pem" --key "$TLS_DIR/client.key")
	ETCDCTL_API=3 etcdctl --endpoints "$ETCD_ENDPOINTS" --dial-timeout 2s "${tlsargs[@]}" "$@"
}
