/* main.c: deployd-engine, the engine without the daemon: deploys a repository's branch into a directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "deploy/deploy.h"

/*
 * It links the floor and the engine only (Makefile.am), so that it links at all proves that
 * the engine calls nothing of the daemon. The fetch helper is this program re-executed.
 *
 *   deployd-engine REPO BRANCH PATH STATE_DIR [REV]
 */
int
main(int argc, char **argv)
{
	struct deploy_request req;
	struct deploy_result res;
	struct site site;
	struct error e;
	int rc;

	if (argc >= 2 && strcmp(argv[1], "__fetch") == 0)
		return fetcher_main(argc, argv);
	if (argc != 5 && argc != 6) {
		fprintf(stderr, "usage: deployd-engine REPO BRANCH PATH STATE_DIR [REV]\n");
		return 2;
	}
	if (sodium_init() < 0 || engine_init() != E_OK)
		return 1;
	log_init(LOG_LVL_INFO, 0);
	memset(&site, 0, sizeof(site));
	site.name = (char *)(uintptr_t)"engine";
	site.repo = argv[1];
	site.branch = argv[2];
	site.path = argv[3];
	site.state_dir = argv[4];
	site.keep = 5;
	site.reuse = REUSE_AUTO;
	site.hooks.timeout_ms = HOOKRUN_TIMEOUT_MS;
	memset(&req, 0, sizeof(req));
	req.trigger = TRIG_MANUAL;
	if (argc == 6)
		util_strlcpy(req.rev, argv[5], sizeof(req.rev));
	if ((rc = recover_site(&site, &e)) != E_OK) {
		fprintf(stderr, "deployd-engine: %s\n", e.msg);
		return 1;
	}
	rc = engine_deploy(&site, &req, &res, NULL, NULL);
	engine_shutdown();
	if (rc != E_OK) {
		fprintf(stderr, "deployd-engine: %s\n", res.error);
		return 1;
	}
	printf("%s %s%s\n", res.commit, res.release, res.changed ? "" : " (already live)");
	return 0;
}
