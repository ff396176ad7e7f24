/* treq.c: the provider tests' webhook requests: built header by header, signed as hosts sign, checked. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "hooks/hooks.h"
#include "tests/unit/treq.h"

char *
treq_fixture(const char *name, size_t *len)
{
	const char *dir = getenv("TEST_DATA_DIR");
	char path[4096];
	FILE *f;
	char *buf;
	long n;

	if (dir == NULL || *dir == '\0')
		dir = "../tests/unit/data";
	snprintf(path, sizeof(path), "%s/hooks/%s", dir, name);
	if ((f = fopen(path, "rb")) == NULL)
		fail_msg("cannot open fixture %s (set TEST_DATA_DIR)", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n > 0);
	rewind(f);
	buf = util_xmalloc((size_t)n + 1);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* The test's own HMAC: OpenSSL's one-shot HMAC(), not the code under test. */
void
treq_hmac_hex(const EVP_MD *md, const char *key, const void *data, size_t len, char *out)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0, i;

	assert_non_null(HMAC(md, key, (int)strlen(key), data, len, mac, &maclen));
	for (i = 0; i < maclen; i++)
		sprintf(out + 2 * i, "%02x", mac[i]);
	out[2 * maclen] = '\0';
}

/* Encode like Go's url.QueryEscape, which Gitea, Forgejo and Gogs use. */
char *
treq_form_encode(const char *json, size_t len, size_t *outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = util_xmalloc(8 + 3 * len + 1);
	size_t i, n = 0;

	memcpy(out, "payload=", 8);
	n = 8;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)json[i];

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr("-_.~", c) != NULL) {
			out[n++] = (char)c;
		} else if (c == ' ') {
			out[n++] = '+';
		} else {
			out[n++] = '%';
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 15];
		}
	}
	out[n] = '\0';
	*outlen = n;
	return out;
}

struct treq *
treq_new(const char *fixture_name)
{
	struct treq *t = util_xcalloc(1, sizeof(*t));

	t->site.name = (char *)(uintptr_t)"www";
	t->site.branch = (char *)(uintptr_t)"main";
	t->site.providers = PROV_ALL;
	t->secret = SECRET;
	if (fixture_name != NULL)
		t->body = treq_fixture(fixture_name, &t->len);
	else
		t->body = util_xstrdup("");
	return t;
}

void
treq_free(struct treq *t)
{
	free(t->body);
	free(t);
}

void
treq_body(struct treq *t, const char *body)
{
	free(t->body);
	t->body = util_xstrdup(body);
	t->len = strlen(body);
}

void
treq_hdr(struct treq *t, const char *name, const char *fmt, ...)
{
	va_list ap;

	assert_true(t->n < 16);
	va_start(ap, fmt);
	vsnprintf(t->hv[t->n], sizeof(t->hv[t->n]), fmt, ap);
	va_end(ap);
	t->h[t->n].name = name;
	t->h[t->n].value = t->hv[t->n];
	t->n++;
}

/* Replace the body by its form encoding; returns the JSON it encodes, which the caller frees. */
char *
treq_to_form(struct treq *t)
{
	char *json = t->body;
	size_t jl = t->len;

	t->body = treq_form_encode(json, jl, &t->len);
	(void)jl;
	return json;
}

int
treq_run(struct treq *t)
{
	struct hook_request req;

	req.method = "POST";
	req.headers = t->h;
	req.nheaders = t->n;
	req.body = (const unsigned char *)t->body;
	req.body_len = t->len;
	req.now_ms = NOW_MS;
	return provider_handle(&t->site, (const unsigned char *)t->secret, strlen(t->secret),
	    5 * 60 * 1000, &req, &t->res);
}

/* A refusal must never carry the secret or the MAC the server expected. */
void
treq_refused(struct treq *t, int status, const char *expected_mac)
{
	assert_int_equal(treq_run(t), status);
	assert_int_equal(t->res.status, status);
	assert_int_equal(t->res.queue, 0);
	assert_true(t->res.reason[0] != '\0');
	assert_null(strstr(t->res.reason, SECRET));
	assert_null(strstr(t->res.reason, t->secret));
	if (expected_mac != NULL)
		assert_null(strstr(t->res.reason, expected_mac));
}

void
treq_queued(struct treq *t, const char *provider, const char *ref, const char *after)
{
	assert_int_equal(treq_run(t), 202);
	assert_int_equal(t->res.queue, 1);
	assert_string_equal(t->res.provider, provider);
	assert_string_equal(t->res.ref, ref);
	assert_string_equal(t->res.after, after);
}

void
treq_ignored(struct treq *t, const char *reason)
{
	assert_int_equal(treq_run(t), 202);
	assert_int_equal(t->res.queue, 0);
	assert_string_equal(t->res.reason, reason);
}

/* GitHub's headers around a body signed with secret (NULL: unsigned). */