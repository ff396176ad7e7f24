/* test_bitbucket.c: Bitbucket Cloud and Data Center deliveries. */
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

/* ---- Bitbucket ---- */

static void
bitbucket_headers(struct treq *t, const char *event, int dc)
{
	char sig[129];

	treq_hmac_hex(EVP_sha256(), t->secret, t->body, t->len, sig);
	treq_hdr(t, "Content-Type", dc ? "application/json; charset=utf-8" : "application/json");
	treq_hdr(t, "X-Event-Key", "%s", event);
	if (dc) {
		treq_hdr(t, "X-Request-Id", "1b0e3a4c-2f7d-4e9b-a1c6-5d8f0e2b7a93");
	} else {
		treq_hdr(t, "User-Agent", "Bitbucket-Webhooks/2.0");
		treq_hdr(t, "X-Request-UUID", "{3a7e2f4c-8b1d-4f6a-9c2e-0d5b7a1e3f80}");
		treq_hdr(t, "X-Hook-UUID", "{5c9d1e2f-3a4b-4c5d-8e6f-7a8b9c0d1e2f}");
		treq_hdr(t, "X-Attempt-Number", "1");
	}
	treq_hdr(t, "X-Hub-Signature", "sha256=%s", sig);
}

static void
t_bitbucket(void **state)
{
	char sig[129];
	struct treq *t;

	(void)state;
	/* Cloud: two changes, the tracked branch second */
	t = treq_new("bitbucket-cloud-push.json");
	bitbucket_headers(t, "repo:push", 0);
	treq_queued(t, "bitbucket", "refs/heads/main", C2);
	assert_string_equal(t->res.delivery, "{3a7e2f4c-8b1d-4f6a-9c2e-0d5b7a1e3f80}");
	treq_free(t);

	/* Cloud: only the other branch tracked */
	t = treq_new("bitbucket-cloud-push.json");
	t->site.branch = (char *)(uintptr_t)"feature/search";
	bitbucket_headers(t, "repo:push", 0);
	treq_queued(t, "bitbucket", "refs/heads/feature/search",
	    "2f22765d04931a078909145ca628d2264c852d7d");
	treq_free(t);

	t = treq_new("bitbucket-cloud-push.json");
	t->site.branch = (char *)(uintptr_t)"gh-pages";
	bitbucket_headers(t, "repo:push", 0);
	treq_ignored(t, "push to another ref");
	treq_free(t);

	/* Cloud deletion: "new": null */
	t = treq_new("bitbucket-cloud-delete.json");
	bitbucket_headers(t, "repo:push", 0);
	treq_ignored(t, "branch deletion");
	treq_free(t);

	/* Data Center */
	t = treq_new("bitbucket-dc-refs-changed.json");
	bitbucket_headers(t, "repo:refs_changed", 1);
	treq_queued(t, "bitbucket", "refs/heads/main", C2);
	assert_string_equal(t->res.delivery, "1b0e3a4c-2f7d-4e9b-a1c6-5d8f0e2b7a93");
	treq_free(t);

	/* Data Center's "Test connection" */
	t = treq_new(NULL);
	treq_body(t, "{\"test\": true}");
	bitbucket_headers(t, "diagnostics:ping", 1);
	assert_int_equal(treq_run(t), 200);
	treq_free(t);

	/* Bitbucket signs with SHA-256 only; a sha1= value is refused */
	t = treq_new("bitbucket-cloud-push.json");
	treq_hmac_hex(EVP_sha1(), SECRET, t->body, t->len, sig);
	treq_hdr(t, "Content-Type", "application/json");
	treq_hdr(t, "X-Event-Key", "repo:push");
	treq_hdr(t, "X-Hub-Signature", "sha1=%s", sig);
	treq_refused(t, 401, NULL);
	treq_free(t);

	/* wrong secret */
	t = treq_new("bitbucket-dc-refs-changed.json");
	t->secret = "not the secret";
	bitbucket_headers(t, "repo:refs_changed", 1);
	t->secret = SECRET;
	treq_refused(t, 401, NULL);
	treq_free(t);

	/* missing signature */
	t = treq_new("bitbucket-dc-refs-changed.json");
	treq_hdr(t, "Content-Type", "application/json");
	treq_hdr(t, "X-Event-Key", "repo:refs_changed");
	treq_refused(t, 401, NULL);
	treq_free(t);

	/* a push without changes is a malformed payload */
	t = treq_new(NULL);
	treq_body(t, "{\"push\": {}}");
	bitbucket_headers(t, "repo:push", 0);
	treq_refused(t, 400, NULL);
	treq_free(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_bitbucket),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
