/* keyring.c: what the webhook listener reads before it confines itself: each site's webhook secret, and the TLS key. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <microhttpd.h>
#include <sodium.h>

#include "server/deployd.h"

#define KEYRING_CERT_MAX	(1024 * 1024)

/* Fixed for the life of a listener: a reload starts a new listener. */
static struct {
	struct keyring_site	*sites;
	size_t			 nsites;
	char			*tls_cert;
	char			*tls_key;	/* guarded memory */
} K;

static char *
keyring_read_file(const char *path, size_t *len, struct error *e)
{
	char *buf;
	ssize_t r;
	size_t n = 0;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		util_error_sys(e, "%s", path);
		return NULL;
	}
	buf = util_xmalloc(KEYRING_CERT_MAX + 1);
	while (n < KEYRING_CERT_MAX && (r = read(fd, buf + n, KEYRING_CERT_MAX - n)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			util_error_sys(e, "%s", path);
			close(fd);
			free(buf);
			return NULL;
		}
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* The key goes to guarded memory as a C string, which is what libmicrohttpd wants. */
static int
keyring_load_tls(const struct config *cfg, struct error *e)
{
	unsigned char *key;
	size_t len;
	int rc;

	if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
		return util_error(e, E_CONFIG, "tls_cert: this libmicrohttpd has no TLS support");
	if ((K.tls_cert = keyring_read_file(cfg->tls_cert, &len, e)) == NULL)
		return E_CONFIG;
	if ((rc = secret_read(cfg->tls_key, &key, &len, e)) != E_OK)
		return rc;
	if ((K.tls_key = sodium_malloc(len + 1)) == NULL) {
		secret_free(key, len);
		return util_error(e, E_NOMEM, "cannot allocate guarded memory");
	}
	memcpy(K.tls_key, key, len);
	K.tls_key[len] = '\0';
	secret_free(key, len);
	return E_OK;
}

static int
keyring_load_sites(const struct config *cfg, struct error *e)
{
	struct keyring_site *s;
	size_t i;
	int rc;

	K.sites = util_xcalloc(cfg->nsites, sizeof(*K.sites));
	K.nsites = cfg->nsites;
	for (i = 0; i < cfg->nsites; i++) {
		s = &K.sites[i];
		s->cfg = &cfg->sites[i];
		s->hook.name = s->cfg->site.name;
		s->hook.branch = s->cfg->site.branch;
		s->hook.tags = s->cfg->site.tags;
		s->hook.providers = s->cfg->providers;
		s->hook.allow_sha1 = s->cfg->allow_sha1;
		if (s->cfg->secret_file == NULL)
			continue;
		if ((rc = secret_read(s->cfg->secret_file, &s->secret, &s->secret_len,
		    e)) != E_OK)
			return rc;
		sodium_mprotect_readonly(s->secret);
	}
	return E_OK;
}

/* Read once, before the listener process confines itself and can no longer open files. */
int
keyring_load(const struct config *cfg, struct error *e)
{
	int rc;

	if (sodium_init() < 0)
		return util_error(e, E_SYS, "cannot initialise libsodium");
	if ((rc = keyring_load_sites(cfg, e)) != E_OK)
		goto fail;
	if (cfg->tls_cert != NULL && cfg->tls_key != NULL &&
	    (rc = keyring_load_tls(cfg, e)) != E_OK)
		goto fail;
	return E_OK;
fail:
	keyring_free();
	return rc;
}

const struct keyring_site *
keyring_site(const char *name)
{
	size_t i;

	for (i = 0; i < K.nsites; i++)
		if (strcmp(K.sites[i].cfg->site.name, name) == 0)
			return &K.sites[i];
	return NULL;
}

/* The certificate and the key, as C strings; returns 0 when the listener has no TLS. */
int
keyring_tls(char **cert, char **key)
{
	*cert = K.tls_cert;
	*key = K.tls_key;
	return K.tls_cert != NULL;
}

void
keyring_free(void)
{
	size_t i;

	for (i = 0; i < K.nsites; i++)
		secret_free(K.sites[i].secret, K.sites[i].secret_len);
	free(K.sites);
	K.sites = NULL;
	K.nsites = 0;
	free(K.tls_cert);
	K.tls_cert = NULL;
	if (K.tls_key != NULL)
		sodium_free(K.tls_key);
	K.tls_key = NULL;
}
