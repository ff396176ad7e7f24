/* repo.c: what every engine step needs of libgit2: set it up, open a cache, explain a failure. */
#include <stdio.h>
#include <string.h>

#include <git2.h>

#include "deploy/deploy.h"

#define REPO_MAP_WINDOW	((size_t)8 << 20)	/* one mapping of a pack */
#define REPO_MAP_LIMIT	((size_t)32 << 20)	/* all of them, in the process */

/*
 * Start libgit2 in a process that reads caches. libgit2 maps a whole pack by default (1 GB
 * windows, 8 GB in all on 64 bits), and every page of it a first deploy reads counts in the
 * process's resident set: a 67 MB pack made a 100 MB peak. Small windows under a small limit
 * cap that whatever the pack's size; a first deploy of 20,000 files took no longer with them
 * (tmpfs: 0.49-0.51 s against 0.48-0.61 s; peak 56 MB against 100 MB).
 */
int
repo_init(void)
{
	if (git_libgit2_init() < 0 ||
	    git_libgit2_opts(GIT_OPT_SET_MWINDOW_SIZE, REPO_MAP_WINDOW) != 0 ||
	    git_libgit2_opts(GIT_OPT_SET_MWINDOW_MAPPED_LIMIT, REPO_MAP_LIMIT) != 0)
		return E_GIT;
	return E_OK;
}

/* Caches are bare and are never searched upwards from, whatever the current directory. */
int
repo_open(git_repository **repo, const char *dir)
{
	return git_repository_open_ext(repo, dir, GIT_REPOSITORY_OPEN_NO_SEARCH |
	    GIT_REPOSITORY_OPEN_BARE, NULL);
}

/* libgit2's message for the last failure on this thread. */
const char *
repo_last_error(void)
{
	const git_error *ge = git_error_last();

	return ge != NULL && ge->message != NULL ? ge->message : "unknown git error";
}

/* Like util_error, with libgit2's last message appended; call right after the failure. */
int
repo_error(struct error *e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	util_verror(e, E_GIT, repo_last_error(), fmt, ap);
	va_end(ap);
	return E_GIT;
}
