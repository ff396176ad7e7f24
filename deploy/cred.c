/* cred.c: the fetch helper's credentials and trust: deploy key, token, known_hosts, CA file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <git2.h>

#include "deploy/deploy.h"

/* A URL for messages, without any user:password@ part. */
void
cred_redact_url(const char *url, char *buf, size_t len)
{
	const char *scheme = strstr(url, "://"), *at, *slash;

	if (scheme != NULL && (at = strchr(scheme + 3, '@')) != NULL &&
	    ((slash = strchr(scheme + 3, '/')) == NULL || at < slash))
		snprintf(buf, len, "%.*s%s", (int)(scheme + 3 - url), url, at + 1);
	else
		util_strlcpy(buf, url, len);
}

/*
 * Is url an SSH URL (ssh://, ssh+git://, git+ssh:// or scp-like user@host:path), and to which
 * host and port? The port is not in what libgit2 tells the certificate callback.
 */
int
cred_url_ssh(const char *url, char *host, size_t hlen, int *port)
{
	static const char *const schemes[] = { "ssh://", "ssh+git://", "git+ssh://" };
	const char *p = NULL, *end, *at, *colon, *slash;
	size_t i;

	*port = 22;
	host[0] = '\0';
	for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]) && p == NULL; i++)
		if (strncmp(url, schemes[i], strlen(schemes[i])) == 0)
			p = url + strlen(schemes[i]);
	if (p == NULL) {
		if (strstr(url, "://") != NULL || url[0] == '/' || url[0] == '.')
			return 0;
		/* scp-like: a colon before any slash. */
		colon = strchr(url, ':');
		slash = strchr(url, '/');
		if (colon == NULL || colon == url || (slash != NULL && slash < colon))
			return 0;
		if (url[0] == '[' && (end = strchr(url, ']')) != NULL && end[1] == ':') {
			snprintf(host, hlen, "%.*s", (int)(end - url - 1), url + 1);
			return 1;
		}
		at = memchr(url, '@', (size_t)(colon - url));
		p = at != NULL ? at + 1 : url;
		snprintf(host, hlen, "%.*s", (int)(colon - p), p);
		return 1;
	}
	end = p + strcspn(p, "/");
	for (at = end; at > p && at[-1] != '@'; at--)
		;
	p = at;
	if (*p == '[' && (colon = memchr(p, ']', (size_t)(end - p))) != NULL) {
		snprintf(host, hlen, "%.*s", (int)(colon - p - 1), p + 1);
		colon++;
	} else {
		colon = memchr(p, ':', (size_t)(end - p));
		snprintf(host, hlen, "%.*s", (int)((colon != NULL ? colon : end) - p), p);
	}
	if (colon != NULL && colon < end && *colon == ':' && colon + 1 < end) {
		char num[8];
		uint64_t v;

		/* A port that is not a number up to the path keeps the default; ssh will say why. */
		if ((size_t)(end - colon - 1) < sizeof(num)) {
			memcpy(num, colon + 1, (size_t)(end - colon - 1));
			num[end - colon - 1] = '\0';
			if (util_parse_uint(num, 65535, &v) == E_OK && v > 0)
				*port = (int)v;
		}
	}
	return 1;
}

/*
 * Credentials: the deploy key for SSH, the token for HTTPS, read from their files now. A
 * second call for the same connection means the first was refused: fail at once instead of
 * letting libgit2 ask forever.
 */
static int
cred_acquire(git_credential **out, const char *url, const char *user_from_url,
    unsigned int allowed, void *payload)
{
	struct cred_conn *c = payload;
	struct error e = { 0 };
	unsigned char *tok = NULL;
	size_t toklen = 0;
	int rc;

	(void)url;
	if (allowed & GIT_CREDENTIAL_USERNAME)
		return git_credential_username_new(out, user_from_url != NULL ?
		    user_from_url : "git");
	if (c->cred_calls++ > 0) {
		snprintf(c->why, sizeof(c->why), "authentication failed for %s%s", c->shown,
		    c->ssh ? " (is the deploy key authorized on the server?)" :
		    " (is the token valid and allowed to read the repository?)");
		git_error_set_str(GIT_ERROR_NET, c->why);
		return GIT_EAUTH;
	}
	if (allowed & GIT_CREDENTIAL_SSH_KEY) {
		if (c->o->ssh_key == NULL) {
			snprintf(c->why, sizeof(c->why), "%s asks for an SSH key, but ssh_key "
			    "is not set", c->shown);
			return GIT_EAUTH;
		}
		/* Checked at every fetch: a key rotated in with loose permissions is refused. */
		if (secret_check_file(c->o->ssh_key, &e) != E_OK) {
			snprintf(c->why, sizeof(c->why), "ssh_key %s", e.msg);
			return GIT_EAUTH;
		}
		return git_credential_ssh_key_new(out, user_from_url != NULL ? user_from_url :
		    "git", NULL, c->o->ssh_key, NULL);
	}
	if (allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) {
		if (c->o->token_file == NULL) {
			snprintf(c->why, sizeof(c->why), "%s asks for credentials, but "
			    "token_file is not set", c->shown);
			return GIT_EAUTH;
		}
		if (secret_read(c->o->token_file, &tok, &toklen, &e) != E_OK) {
			snprintf(c->why, sizeof(c->why), "token_file %s", e.msg);
			return GIT_EAUTH;
		}
		/* secret_read's buffer is larger than any secret it returns. */
		tok[toklen] = '\0';
		rc = git_credential_userpass_plaintext_new(out, c->o->token_user != NULL ?
		    c->o->token_user : "x-access-token", (const char *)tok);
		secret_free(tok, toklen);
		return rc;
	}
	snprintf(c->why, sizeof(c->why), "%s asks for a kind of authentication deployd does "
	    "not offer", c->shown);
	return GIT_EAUTH;
}

/*
 * libgit2 1.5.1 reports SSH host keys with valid = 0 and, without this callback, accepts any.
 * Host keys are checked against the pinned known_hosts file, never trusted on first use. TLS
 * certificates were checked by libgit2 against the CA store (and ca_file).
 */
static int
cred_check_cert(git_cert *cert, int valid, const char *host, void *payload)
{
	struct cred_conn *c = payload;
	git_cert_hostkey *hk;
	struct error e = { 0 };

	if (cert->cert_type == GIT_CERT_HOSTKEY_LIBSSH2) {
		hk = (git_cert_hostkey *)cert;
		if (c->o->known_hosts == NULL) {
			snprintf(c->why, sizeof(c->why), "%s is an SSH remote but known_hosts "
			    "is not set; deployd never trusts a host key on first use", c->shown);
			return GIT_ECERTIFICATE;
		}
		if (!(hk->type & GIT_CERT_SSH_RAW) || hk->hostkey == NULL) {
			snprintf(c->why, sizeof(c->why), "%s: the SSH library gave no host key "
			    "to check", c->shown);
			return GIT_ECERTIFICATE;
		}
		if (knownhosts_check(c->o->known_hosts, host != NULL ? host : c->host,
		    c->port, (const unsigned char *)hk->hostkey, hk->hostkey_len, &e) != E_OK) {
			util_strlcpy(c->why, e.msg, sizeof(c->why));
			return GIT_ECERTIFICATE;
		}
		return 0;
	}
	if (!valid) {
		snprintf(c->why, sizeof(c->why), "TLS certificate of %s is not trusted%s",
		    host != NULL ? host : c->shown, c->o->ca_file != NULL ?
		    " (not even with ca_file)" : " (set ca_file for a private CA)");
		return GIT_ECERTIFICATE;
	}
	return 0;
}

/* A connection's state and the callbacks that present credentials and check the server. */
void
cred_init(struct cred_conn *c, const struct fetcher_opts *o, const char *url,
    git_remote_callbacks *cbs)
{
	memset(c, 0, sizeof(*c));
	c->o = o;
	c->url = url;
	cred_redact_url(url, c->shown, sizeof(c->shown));
	c->ssh = cred_url_ssh(url, c->host, sizeof(c->host), &c->port);
	git_remote_init_callbacks(cbs, GIT_REMOTE_CALLBACKS_VERSION);
	cbs->credentials = cred_acquire;
	cbs->certificate_check = cred_check_cert;
	cbs->payload = c;
}

/* Where the system's CA bundle lives (Debian, then Fedora); ca_file is trusted in addition. */
static const char *const cred_system_ca[] = {
	"/etc/ssl/certs/ca-certificates.crt",
	"/etc/pki/tls/certs/ca-bundle.crt",
};

static int
cred_copy_into(int dst, const char *path)
{
	char buf[8192];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (write(dst, buf, (size_t)n) != n) {
			n = -1;
			break;
		}
	close(fd);
	return n < 0 ? -1 : 0;
}

/*
 * libgit2 (mbedTLS) replaces its CA store with what GIT_OPT_SET_SSL_CERT_LOCATIONS names, so
 * ca_file and the system bundle go together into one in-memory file. This child is this one
 * site's, so the setting affects no other site.
 */
int
cred_ca(const char *ca_file, struct error *e)
{
	char path[64];
	size_t i;
	int fd;

	if ((fd = memfd_create("deployd-ca", 0)) < 0)
		return util_error_sys(e, "ca_file %s: memfd_create", ca_file);
	if (cred_copy_into(fd, ca_file) != 0 || write(fd, "\n", 1) != 1) {
		util_error_sys(e, "ca_file %s", ca_file);
		close(fd);
		return E_SYS;
	}
	for (i = 0; i < sizeof(cred_system_ca) / sizeof(cred_system_ca[0]); i++)
		if (cred_copy_into(fd, cred_system_ca[i]) == 0)
			break;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (git_libgit2_opts(GIT_OPT_SET_SSL_CERT_LOCATIONS, path, NULL) != 0) {
		repo_error(e, "ca_file %s", ca_file);
		close(fd);
		return E_GIT;
	}
	/* The descriptor stays open for the child's short life: the path names it. */
	return E_OK;
}
