/* fuzz_config.c: libFuzzer target: config_load (libyaml and the key tables) on arbitrary file contents. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

/*
 * config_set_check_files(0) keeps the loader from opening the files a config names
 * (secret_file, known_hosts, ...), so an input cannot make it read a FIFO or a device.
 */

static char *fuzz_config_file;

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char *dir;

	(void)argc;
	(void)argv;
	dir = fuzz_util_tmpdir("config");
	if (asprintf(&fuzz_config_file, "%s/deployd.yaml", dir) < 0)
		abort();
	free(dir);
	config_set_check_files(0);
	log_init(LOG_LVL_ERROR, 0);
	return 0;
}

static void
fuzz_config_check(const struct config *c)
{
	size_t i;

	if (c->listen == NULL || c->control_socket == NULL || c->state_dir == NULL)
		fuzz_util_die("a loaded config lacks a defaulted global");
	if (c->control_socket[0] != '/' || c->state_dir[0] != '/')
		fuzz_util_die("a relative path was accepted");
	for (i = 0; i < c->nsites; i++) {
		const struct site_config *sc = &c->sites[i];
		const struct site *s = &sc->site;

		if (s->name == NULL || s->repo == NULL || s->path == NULL)
			fuzz_util_die("site %zu lacks a required key", i);
		if (!config_value_name(s->name))
			fuzz_util_die("invalid site name '%s' accepted", s->name);
		if ((s->branch == NULL) == (s->tags == NULL))
			fuzz_util_die("site '%s' has both or neither of branch and tags", s->name);
		if (s->path[0] != '/')
			fuzz_util_die("site '%s': relative path accepted", s->name);
		if (s->keep < 2 || sc->providers == 0 || (sc->providers & ~PROV_ALL) != 0)
			fuzz_util_die("site '%s': keep or providers out of range", s->name);
		if (s->hooks.pre_activate.n > 0 && s->hooks.pre_activate.v[0][0] != '/')
			fuzz_util_die("site '%s': relative hook command accepted", s->name);
		if (config_site(c, s->name) != sc)
			fuzz_util_die("config_site cannot find '%s'", s->name);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct strv errors = { NULL, 0 };
	struct config *c = NULL;
	size_t i;
	int rc;

	fuzz_util_write(fuzz_config_file, data, size, 0600);
	rc = config_load(fuzz_config_file, &c, &errors);
	if (rc == E_OK) {
		if (c == NULL)
			fuzz_util_die("E_OK without a config");
		if (errors.n != 0)
			fuzz_util_die("E_OK with %zu errors", errors.n);
		fuzz_config_check(c);
		config_free(c);
	} else {
		if (c != NULL)
			fuzz_util_die("failure %d returned a config", rc);
		if (errors.n == 0)
			fuzz_util_die("failure %d without an error message", rc);
		/* Every message names the file, as FILE:LINE:COL: or FILE: */
		for (i = 0; i < errors.n; i++)
			if (strncmp(errors.v[i], fuzz_config_file, strlen(fuzz_config_file)) != 0)
				fuzz_util_die("error without the file name: %s", errors.v[i]);
	}
	util_strv_free(&errors);
	return 0;
}
