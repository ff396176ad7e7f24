/* bind.c: the webhook listener's socket, bound by the daemon and handed to each listener process. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "server/deployd.h"

static int
bind_unix(const char *path, char *unix_path, size_t len, struct error *e)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (*path != '/' || util_strlcpy(sun.sun_path, path, sizeof(sun.sun_path)) >=
	    sizeof(sun.sun_path))
		return util_error(e, E_CONFIG, "listen: unix:%s: not an absolute path that"
		    " fits a socket address", path);
	/* Only a socket is replaced: a typo must not delete somebody's file. */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return util_error(e, E_CONFIG, "listen: %s exists and is not a socket",
			    path);
		if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0) {
			if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
				close(fd);
				return util_error(e, E_BUSY, "listen: something answers on %s",
				    path);
			}
			close(fd);
		}
		if (unlink(path) != 0)
			return util_error_sys(e, "listen: cannot remove stale socket %s", path);
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return util_error_sys(e, "listen: socket");
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		util_error_sys(e, "listen: cannot bind %s", path);
		close(fd);
		return E_SYS;
	}
	/* The reverse proxy runs as another user; what it forwards is signed anyway. */
	if (chmod(path, 0666) != 0 || listen(fd, 128) != 0) {
		util_error_sys(e, "listen: %s", path);
		close(fd);
		unlink(path);
		return E_SYS;
	}
	util_strlcpy(unix_path, path, len);
	return fd;
}

/* "host:port", "[v6]:port" or ":port"; returns the listening socket or an E_* code. */
static int
bind_inet(const char *spec, struct error *e)
{
	struct addrinfo hints, *ai = NULL;
	char host[256];
	const char *port, *close_br;
	size_t hl;
	int fd, one = 1, rc;

	if (spec[0] == '[') {
		if ((close_br = strchr(spec, ']')) == NULL || close_br[1] != ':')
			return util_error(e, E_CONFIG, "listen: %s: expected [address]:port", spec);
		hl = (size_t)(close_br - spec - 1);
		port = close_br + 2;
		spec++;
	} else {
		if ((port = strrchr(spec, ':')) == NULL)
			return util_error(e, E_CONFIG, "listen: %s: expected host:port", spec);
		hl = (size_t)(port - spec);
		port++;
	}
	if (hl >= sizeof(host) || *port == '\0' || strspn(port, "0123456789") != strlen(port))
		return util_error(e, E_CONFIG, "listen: %s: bad address or port", spec);
	memcpy(host, spec, hl);
	host[hl] = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((rc = getaddrinfo(hl > 0 ? host : NULL, port, &hints, &ai)) != 0)
		return util_error(e, E_CONFIG, "listen: %s: %s", spec, gai_strerror(rc));
	if ((fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		freeaddrinfo(ai);
		return util_error_sys(e, "listen: socket");
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ai->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 128) != 0) {
		util_error_sys(e, "listen: cannot listen on %s", spec);
		freeaddrinfo(ai);
		close(fd);
		return E_SYS;
	}
	freeaddrinfo(ai);
	return fd;
}

/*
 * The daemon binds the listening socket once and hands it to each listener process: port
 * 80 works when started as root, and the socket outlives reloads and listener restarts.
 * unix_path gets the socket file to remove at exit ("" for TCP).
 */
int
bind_listen(const char *listen, char *unix_path, size_t len, struct error *e)
{
	unix_path[0] = '\0';
	if (strncmp(listen, "unix:", 5) == 0)
		return bind_unix(listen + 5, unix_path, len, e);
	return bind_inet(listen, e);
}
