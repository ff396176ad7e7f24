/* shared.c: link a site's persistent paths (path/shared/<entry>) into a new release. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deploy/deploy.h"

/*
 * "a//b/./c/" as "a/b/c" with its number of components; ".." and an empty path are refused.
 * The config already refuses most of these, but a path that escapes the release must never
 * become a link.
 */
static int
shared_normalize(const char *entry, char *out, size_t len, int *ncomp)
{
	const char *p = entry, *end;
	size_t o = 0, n;

	*ncomp = 0;
	while (*p != '\0') {
		while (*p == '/')
			p++;
		if (*p == '\0')
			break;
		end = strchr(p, '/');
		n = end != NULL ? (size_t)(end - p) : strlen(p);
		if (n == 2 && strncmp(p, "..", 2) == 0)
			return E_INVAL;
		if (!(n == 1 && *p == '.')) {
			if (o + n + 2 > len)
				return E_INVAL;
			if (o > 0)
				out[o++] = '/';
			memcpy(out + o, p, n);
			o += n;
			(*ncomp)++;
		}
		p += n;
	}
	out[o] = '\0';
	return *ncomp > 0 && strcmp(out, ".git") != 0 ? E_OK : E_INVAL;
}

/* path/shared/<entry> exists afterwards: what is there is the admin's; a missing one is a dir. */
static int
shared_ensure_target(const struct site *site, const char *entry, struct error *e)
{
	struct stat st;
	char *p = util_xasprintf("%s/shared/%s", site->path, entry);
	int rc = E_OK;

	if (lstat(p, &st) != 0) {
		if (errno != ENOENT)
			rc = util_error_sys(e, "%s", p);
		else if (util_mkdir_p(p, 0755) != E_OK)
			rc = util_error_sys(e, "creating %s", p);
		else
			log_info("site=%s created shared directory %s", site->name, p);
	}
	free(p);
	return rc;
}

/*
 * releases/<name>/<entry> -> ../../shared/<entry>, one more "../" per extra component, so the
 * link stays right when the whole tree is moved or bind-mounted. Parents are created as real
 * directories; one the repository has as anything else is in the way.
 */
static int
shared_link_one(int rel_fd, const char *entry, int ncomp, struct error *e)
{
	char target[PATH_MAX], part[PATH_MAX];
	const char *p = entry, *slash;
	struct stat st;
	size_t o = 0;
	int fd, dirfd = rel_fd, rc = E_OK, i;

	for (i = 0; i < ncomp + 1; i++) {
		if (o + 3 >= sizeof(target))
			return util_error(e, E_INVAL, "shared path '%s' is too long", entry);
		memcpy(target + o, "../", 3);
		o += 3;
	}
	if ((size_t)snprintf(target + o, sizeof(target) - o, "shared/%s", entry) >=
	    sizeof(target) - o)
		return util_error(e, E_INVAL, "shared path '%s' is too long", entry);

	while ((slash = strchr(p, '/')) != NULL) {
		util_strlcpy(part, entry, (size_t)(slash - entry) + 1);
		if (fstatat(dirfd, part + (p - entry), &st, AT_SYMLINK_NOFOLLOW) != 0) {
			if (errno != ENOENT) {
				rc = util_error_sys(e, "release: %s", part);
				goto out;
			}
			/* fchmodat: readable by the web server whatever the umask. */
			if (mkdirat(dirfd, part + (p - entry), 0755) != 0 ||
			    fchmodat(dirfd, part + (p - entry), 0755, 0) != 0) {
				rc = util_error_sys(e, "release: creating %s", part);
				goto out;
			}
		} else if (!S_ISDIR(st.st_mode)) {
			rc = util_error(e, E_INVAL, "repository contains '%s', which is in the "
			    "way of shared path '%s'", part, entry);
			goto out;
		}
		fd = openat(dirfd, part + (p - entry), O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
		    O_CLOEXEC);
		if (fd < 0) {
			rc = util_error_sys(e, "release: opening %s", part);
			goto out;
		}
		if (dirfd != rel_fd)
			close(dirfd);
		dirfd = fd;
		p = slash + 1;
	}
	if (fstatat(dirfd, p, &st, AT_SYMLINK_NOFOLLOW) == 0)
		rc = util_error(e, E_INVAL, "repository contains shared path '%s'", entry);
	else if (errno != ENOENT)
		rc = util_error_sys(e, "release: %s", entry);
	else if (symlinkat(target, dirfd, p) != 0)
		rc = util_error_sys(e, "release: linking shared path %s", entry);
out:
	if (dirfd != rel_fd)
		close(dirfd);
	return rc;
}

/* Two entries where one lies inside the other would link through a link. */
static int
shared_overlap(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (la > lb)
		return shared_overlap(b, a);
	return strncmp(a, b, la) == 0 && (b[la] == '\0' || b[la] == '/');
}

/* Link every `shared` entry into releases_fd/release; before pre_activate, so hooks see them. */
int
shared_link(const struct site *site, int releases_fd, const char *release,
    struct error *e)
{
	char (*norm)[PATH_MAX];
	int *ncomp, rel_fd = -1, rc = E_OK;
	size_t i, j;

	if (site->shared.n == 0)
		return E_OK;
	norm = util_xcalloc(site->shared.n, sizeof(*norm));
	ncomp = util_xcalloc(site->shared.n, sizeof(*ncomp));
	for (i = 0; i < site->shared.n && rc == E_OK; i++) {
		if (shared_normalize(site->shared.v[i], norm[i], sizeof(norm[i]), &ncomp[i]) !=
		    E_OK)
			rc = util_error(e, E_CONFIG, "shared path '%s' is not a relative path "
			    "inside the release", site->shared.v[i]);
		for (j = 0; j < i && rc == E_OK; j++)
			if (shared_overlap(norm[i], norm[j]))
				rc = util_error(e, E_CONFIG, "shared paths '%s' and '%s' "
				    "overlap", norm[j], norm[i]);
	}
	if (rc == E_OK && (rel_fd = openat(releases_fd, release, O_RDONLY | O_DIRECTORY |
	    O_NOFOLLOW | O_CLOEXEC)) < 0)
		rc = util_error_sys(e, "opening release %s", release);
	for (i = 0; i < site->shared.n && rc == E_OK; i++) {
		if ((rc = shared_ensure_target(site, norm[i], e)) == E_OK)
			rc = shared_link_one(rel_fd, norm[i], ncomp[i], e);
	}
	if (rel_fd >= 0)
		close(rel_fd);
	free(norm);
	free(ncomp);
	return rc;
}
