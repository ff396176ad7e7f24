/* test_gitea.c: Gitea, Forgejo and Gogs deliveries: they sign the JSON, also inside a form. */
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

/* ---- Gitea, Forgejo, Gogs: they sign the JSON, also inside a form ---- */

struct gitea_like {
	const char *provider;
	const char *fixture;
	const char *const *sig_headers;	/* every signature header the host sends */
	const char *event_header;
	const char *delivery_header;
};

static const char *const gitea_sigs[] = { "X-Gitea-Signature", "X-Gogs-Signature", NULL };
static const char *const forgejo_sigs[] = { "X-Forgejo-Signature", "X-Gitea-Signature",
	"X-Gogs-Signature", NULL };
static const char *const gogs_sigs[] = { "X-Gogs-Signature", NULL };

static const struct gitea_like gitea_hosts[] = {
	{ "gitea", "gitea-push.json", gitea_sigs, "X-Gitea-Event", "X-Gitea-Delivery" },
	{ "forgejo", "forgejo-push.json", forgejo_sigs, "X-Forgejo-Event", "X-Forgejo-Delivery" },
	{ "gogs", "gogs-push.json", gogs_sigs, "X-Gogs-Event", "X-Gogs-Delivery" },
};

/* The headers a Gitea-family host sends, signing `signed_json` with `key`. */
static void
gitea_headers(struct treq *t, const struct gitea_like *g, const char *event,
    const char *ctype, const char *signed_json, size_t sl, const char *key)
{
	char sig[129];
	size_t i;

	treq_hmac_hex(EVP_sha256(), key, signed_json, sl, sig);
	treq_hdr(t, "Content-Type", "%s", ctype);
	treq_hdr(t, g->event_header, "%s", event);
	treq_hdr(t, g->delivery_header, "e1f7c2a0-51b4-4c54-8a29-%s", g->provider);
	for (i = 0; g->sig_headers[i] != NULL; i++)
		treq_hdr(t, g->sig_headers[i], "%s", sig);
	if (strcmp(g->provider, "gogs") != 0) {
		/* Gitea and Forgejo also send GitHub-style headers: detection must not pick GitHub. */
		treq_hdr(t, "X-GitHub-Event", "%s", event);
		treq_hdr(t, "X-Hub-Signature-256", "sha256=%s", sig);
	}
}

static void
t_gitea_family(void **state)
{
	const struct gitea_like *g;
	struct treq *t;
	char *json;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(gitea_hosts) / sizeof(gitea_hosts[0]); i++) {
		g = &gitea_hosts[i];

		/* JSON body */
		t = treq_new(g->fixture);
		gitea_headers(t, g, "push", "application/json", t->body, t->len, SECRET);
		treq_queued(t, g->provider, "refs/heads/main", C2);
		assert_non_null(strstr(t->res.delivery, g->provider));
		treq_free(t);

		/* form body, signed over the decoded JSON */
		t = treq_new(g->fixture);
		json = treq_to_form(t);
		gitea_headers(t, g, "push", "application/x-www-form-urlencoded", json,
		    strlen(json), SECRET);
		treq_queued(t, g->provider, "refs/heads/main", C2);
		treq_free(t);

		/* form body signed over the raw form body: not how these hosts sign */
		t = treq_new(g->fixture);
		free(json);
		json = treq_to_form(t);
		gitea_headers(t, g, "push", "application/x-www-form-urlencoded", t->body,
		    t->len, SECRET);
		treq_refused(t, 401, NULL);
		treq_free(t);

		/* wrong secret */
		t = treq_new(g->fixture);
		gitea_headers(t, g, "push", "application/json", t->body, t->len, "wrong");
		treq_refused(t, 401, NULL);
		treq_free(t);

		/* no secret on the hook: the host sends the headers empty */
		t = treq_new(g->fixture);
		treq_hdr(t, "Content-Type", "application/json");
		treq_hdr(t, g->event_header, "push");
		treq_hdr(t, g->sig_headers[0], "%s", "");
		treq_refused(t, 401, NULL);
		treq_free(t);

		/* a delete event is not a push */
		t = treq_new(g->fixture);
		gitea_headers(t, g, "delete", "application/json", t->body, t->len, SECRET);
		treq_ignored(t, "event delete ignored");
		treq_free(t);

		/* only this host allowed, or everything but this host */
		t = treq_new(g->fixture);
		t->site.providers = PROV_ALL & ~provider_bit(g->provider);
		gitea_headers(t, g, "push", "application/json", t->body, t->len, SECRET);
		treq_refused(t, 403, NULL);
		assert_string_equal(t->res.provider, g->provider);
		treq_free(t);
		free(json);
	}
}

static void
t_gitea_test_delivery(void **state)
{
	struct treq *t = treq_new("gitea-test.json");
	char *json;

	(void)state;
	gitea_headers(t, &gitea_hosts[0], "push", "application/json", t->body, t->len, SECRET);
	assert_int_equal(treq_run(t), 200);
	assert_int_equal(t->res.queue, 0);
	assert_int_equal(t->res.kind, HOOK_PING);
	treq_free(t);

	t = treq_new("gitea-test.json");
	json = treq_to_form(t);
	gitea_headers(t, &gitea_hosts[0], "push", "application/x-www-form-urlencoded", json,
	    strlen(json), SECRET);
	assert_int_equal(treq_run(t), 200);
	free(json);
	treq_free(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_gitea_family),
		cmocka_unit_test(t_gitea_test_delivery),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
