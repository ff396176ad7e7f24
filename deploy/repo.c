/* repo.c: what every engine step needs of libgit2: open a cache, explain a failure. */
#include <stdio.h>
#include <string.h>

#include <git2.h>

#include "deploy/deploy.h"

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
