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

/* Like util_error, with libgit2's last message appended; call right after the failure. */
int
repo_error(struct error *e, const char *fmt, ...)
{
	const git_error *ge = git_error_last();
	va_list ap;
	size_t n;

	if (e != NULL) {
		e->code = E_GIT;
		va_start(ap, fmt);
		vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
		va_end(ap);
		n = strlen(e->msg);
		snprintf(e->msg + n, sizeof(e->msg) - n, ": %s",
		    ge != NULL && ge->message != NULL ? ge->message : "unknown git error");
	}
	return E_GIT;
}
