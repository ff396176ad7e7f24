/* treq.h: the provider tests' request builder and checks (tests/unit/treq.c). */
#ifndef DEPLOYD_TEST_TREQ_H
#define DEPLOYD_TEST_TREQ_H

#define SECRET		"s3cr3t-for-the-www-site"
#define C2		"6b1f53303a732ccc8c6aae6640399827c15250e3"
#define C3		"a625406f6977d45c1391b078f4d3656e0b75bfcb"
#define NOW_MS		1764064800000LL		/* 2025-11-25T10:00:00Z */

/* A request under construction: up to 16 headers, a body, and the site it is for. */
struct treq {
	struct hook_header	h[16];
	char			hv[16][256];
	size_t			n;
	char		       *body;
	size_t			len;
	struct hook_site	site;
	const char	       *secret;
	struct hook_result	res;
};

char	*treq_fixture(const char *name, size_t *len);	/* tests/unit/data/hooks/NAME */
/* The test's own HMAC (OpenSSL's one-shot HMAC()), lowercase hex into out. */
void	 treq_hmac_hex(const EVP_MD *md, const char *key, const void *data, size_t len,
	    char *out);
char	*treq_form_encode(const char *json, size_t len, size_t *outlen);
struct treq *treq_new(const char *fixture_name);	/* site www, branch main, SECRET */
void	 treq_free(struct treq *);
void	 treq_body(struct treq *, const char *body);
void	 treq_hdr(struct treq *, const char *name, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
char	*treq_to_form(struct treq *);
int	 treq_run(struct treq *);			/* provider_handle's status */
void	 treq_refused(struct treq *, int status, const char *expected_mac);
void	 treq_queued(struct treq *, const char *provider, const char *ref, const char *after);
void	 treq_ignored(struct treq *, const char *reason);

#endif
