/* control.c: the control API, HTTP/1.1 + JSON on a local Unix socket (libmicrohttpd). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <signal.h>
#include <unistd.h>

#include <microhttpd.h>

#include "server/deployd.h"

#define CONTROL_BODY_MAX (64 * 1024)
#define CONTROL_HEARTBEAT_MS 10000
/* What a route returns when it queued its own response (a stream), or failed to. */
#define CONTROL_QUEUED	0
#define CONTROL_FAILED	(-1)

/* One request being received. */
struct control_req {
	char	*body;
	size_t	 len;
	int	 too_big;
};

/* A parsed route: /v1/sites[/<site>[/<action>]] or /v1/<action>. */
struct control_route {
	const char	*site;
	const char	*action;
};

typedef int (*control_fn)(struct MHD_Connection *, const struct control_route *,
    json_t *body, json_t **answer);

static struct MHD_Daemon *control_daemon;
static const struct config *control_cfg;
static char control_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static volatile int control_stopping;

static json_t *
control_unknown_site(const char *site)
{
	char *msg = util_xasprintf("unknown site '%s'", site);
	json_t *o = json_pack("{s:s}", "error", msg);

	free(msg);
	return o;
}

static int
control_list(struct MHD_Connection *c, const struct control_route *r, json_t *body,
    json_t **answer)
{
	json_t *f = fleet_view_brief();

	*answer = json_pack("{s:o}", "sites", status_sites());
	if (f != NULL)
		json_object_set_new(*answer, "fleet", f);
	return MHD_HTTP_OK;
}

static int
control_show(struct MHD_Connection *c, const struct control_route *r, json_t *body,
    json_t **answer)
{
	json_t *f;

	if ((*answer = status_site(r->site)) == NULL) {
		*answer = control_unknown_site(r->site);
		return MHD_HTTP_NOT_FOUND;
	}
	if ((f = fleet_view_brief()) != NULL)
		json_object_set_new(*answer, "fleet", f);
	return MHD_HTTP_OK;
}

/* Who asked: state-changing requests are logged with the peer's uid and pid. */
static void
control_log_peer(struct MHD_Connection *c, const char *what, const char *site)
{
	const union MHD_ConnectionInfo *ci;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	char safe[128];

	util_sanitize(site != NULL ? site : "-", safe, sizeof(safe));
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci != NULL && getsockopt(ci->connect_fd, SOL_SOCKET, SO_PEERCRED, &cred,
	    &len) == 0)
		log_info("site=%s control %s by uid=%u pid=%d", safe, what,
		    (unsigned)cred.uid, (int)cred.pid);
	else
		log_info("site=%s control %s by unknown peer", safe, what);
}

/* Queue a job for the site; the answer carries the id `--wait` watches for. */
static int
control_queue(struct MHD_Connection *c, const struct control_route *r,
    const struct deploy_request *req, const char *what, json_t **answer)
{
	int64_t id;
	int rc;

	control_log_peer(c, what, r->site);
	rc = sched_request(r->site, req, &id);
	if (rc == E_NOTFOUND) {
		*answer = control_unknown_site(r->site);
		return MHD_HTTP_NOT_FOUND;
	}
	if (rc != E_OK) {
		*answer = json_pack("{s:s}", "error", "deployd is shutting down");
		return MHD_HTTP_SERVICE_UNAVAILABLE;
	}
	*answer = json_pack("{s:s,s:b,s:I,s:s}", "site", r->site, "queued", 1, "id",
	    (json_int_t)id, "action", what);
	return MHD_HTTP_ACCEPTED;
}

/* An optional string field of the request body; 0 if present but not a short string. */
static int
control_body_str(json_t *body, const char *key, char *buf, size_t len)
{
	json_t *v = body != NULL ? json_object_get(body, key) : NULL;

	buf[0] = '\0';
	if (v == NULL || json_is_null(v))
		return 1;
	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    util_strlcpy(buf, json_string_value(v), len) >= len)
		return 0;
	return 1;
}

/* In a fleet, a deploy rings the doorbell: the coordinator sets the fleet's target. */
static int
control_fleet_deploy(struct MHD_Connection *c, const struct control_route *r, const char *rev,
    json_t **answer)
{
	int64_t gen;
	int rc;

	control_log_peer(c, "deploy (fleet)", r->site);
	if (rev[0] != '\0' && strlen(rev) != 40) {
		*answer = json_pack("{s:s}", "error", "in a fleet, --rev takes the full 40-hex "
		    "commit id: every node must read it the same way");
		return MHD_HTTP_BAD_REQUEST;
	}
	/* A pinned commit holds until resume, on one node as in a fleet. */
	if (rev[0] != '\0') {
		char reason[256];
		struct error e;

		snprintf(reason, sizeof(reason), "pinned to %.12s by `deployd deploy --rev`; "
		    "automatic deploys paused until `deployd resume %s`", rev, r->site);
		if ((rc = fleet_pause(r->site, 1, reason, &e)) == E_NOTFOUND) {
			*answer = control_unknown_site(r->site);
			return MHD_HTTP_NOT_FOUND;
		} else if (rc != E_OK) {
			*answer = json_pack("{s:s,s:s}", "error", "the fleet's store did not take "
			    "it", "detail", e.msg);
			return MHD_HTTP_SERVICE_UNAVAILABLE;
		}
	}
	gen = fleet_gen(r->site);
	rc = fleet_ring(r->site, "cli", "", rev);
	if (rc == E_NOTFOUND) {
		*answer = control_unknown_site(r->site);
		return MHD_HTTP_NOT_FOUND;
	}
	if (rc != E_OK) {
		*answer = json_pack("{s:s}", "error", "the fleet's store cannot be reached; "
		    "nothing was asked of the fleet");
		return MHD_HTTP_SERVICE_UNAVAILABLE;
	}
	*answer = json_pack("{s:s,s:b,s:b,s:I,s:s}", "site", r->site, "queued", 1, "fleet", 1,
	    "gen", (json_int_t)gen, "message", rev[0] != '\0' ? "the fleet's coordinator will make that commit its "
	    "target" : "the fleet's coordinator will ask the remote for its tip");
	return MHD_HTTP_ACCEPTED;
}

static int
control_deploy(struct MHD_Connection *c, const struct control_route *r, json_t *body,
    json_t **answer)
{
	struct deploy_request req;
	size_t i;

	memset(&req, 0, sizeof(req));
	req.trigger = TRIG_MANUAL;
	if (!control_body_str(body, "rev", req.rev, sizeof(req.rev))) {
		*answer = json_pack("{s:s}", "error", "rev must be a commit id (4 to 40 hex)");
		return MHD_HTTP_BAD_REQUEST;
	}
	for (i = 0; req.rev[i] != '\0'; i++) {
		if (!strchr("0123456789abcdefABCDEF", req.rev[i]) || i >= 40) {
			*answer = json_pack("{s:s}", "error",
			    "rev must be a commit id (4 to 40 hex)");
			return MHD_HTTP_BAD_REQUEST;
		}
	}
	if (i > 0 && i < 4) {
		*answer = json_pack("{s:s}", "error", "rev must be a commit id (4 to 40 hex)");
		return MHD_HTTP_BAD_REQUEST;
	}
	if (fleet_on())
		return control_fleet_deploy(c, r, req.rev, answer);
	return control_queue(c, r, &req, "deploy", answer);
}

/* In a fleet, a rollback is a cutover of the whole fleet to a release every node has. */
static int
control_fleet_rollback(struct MHD_Connection *c, const struct control_route *r,
    const char *want, json_t **answer)
{
	char to[SHA_HEX], *msg;
	struct error e;
	int64_t gen;
	int rc;

	control_log_peer(c, "rollback (fleet)", r->site);
	gen = fleet_gen(r->site);
	rc = fleet_rollback(r->site, want[0] != '\0' ? want : NULL, to, &e);
	if (rc == E_NOTFOUND && strncmp(e.msg, "unknown site", 12) == 0) {
		*answer = control_unknown_site(r->site);
		return MHD_HTTP_NOT_FOUND;
	}
	if (rc == E_NOTFOUND || rc == E_INVAL) {
		*answer = json_pack("{s:s}", "error", e.msg);
		return MHD_HTTP_CONFLICT;
	}
	if (rc != E_OK) {
		*answer = json_pack("{s:s,s:s}", "error", "the fleet's store did not take it",
		    "detail", e.msg);
		return MHD_HTTP_SERVICE_UNAVAILABLE;
	}
	msg = util_xasprintf("every node of the fleet swaps back to %.12s; automatic deploys "
	    "are paused until `deployd resume %s`", to, r->site);
	*answer = json_pack("{s:s,s:b,s:b,s:s,s:I,s:s}", "site", r->site, "queued", 1, "fleet",
	    1, "commit", to, "gen", (json_int_t)gen, "message", msg);
	free(msg);
	return MHD_HTTP_ACCEPTED;
}

static int
control_rollback(struct MHD_Connection *c, const struct control_route *r, json_t *body,
    json_t **answer)
{
	struct deploy_request req;

	memset(&req, 0, sizeof(req));
	req.trigger = TRIG_ROLLBACK;
	req.action = ACT_ROLLBACK;
	if (!control_body_str(body, "release", req.target, sizeof(req.target))) {
		*answer = json_pack("{s:s}", "error", "release must be a release name or a "
		    "commit prefix");
		return MHD_HTTP_BAD_REQUEST;
	}
	if (fleet_on())
		return control_fleet_rollback(c, r, req.target, answer);
	return control_queue(c, r, &req, "rollback", answer);
}

/* A fleet is paused and resumed as one: a key in etcd, read by the coordinator. */
static int
control_fleet_pause(struct MHD_Connection *c, const struct control_route *r, int on,
    json_t **answer)
{
	struct error e;
	int rc;

	control_log_peer(c, on ? "pause (fleet)" : "resume (fleet)", r->site);
	rc = fleet_pause(r->site, on, "paused by `deployd pause`", &e);
	if (rc == E_NOTFOUND) {
		*answer = control_unknown_site(r->site);
		return MHD_HTTP_NOT_FOUND;
	}
	if (rc != E_OK) {
		*answer = json_pack("{s:s,s:s}", "error", "the fleet's store did not take it",
		    "detail", e.msg);
		return MHD_HTTP_SERVICE_UNAVAILABLE;
	}
	*answer = json_pack("{s:s,s:b,s:b,s:s}", "site", r->site, "done", 1, "fleet", 1,
	    "message", on ? "paused on every node of the fleet" :
	    "resumed on every node of the fleet");
	return MHD_HTTP_OK;
}

static int
control_pause(struct MHD_Connection *c, const struct control_route *r, json_t *body,
    json_t **answer)
{
	struct deploy_request req;

	memset(&req, 0, sizeof(req));
	req.trigger = TRIG_MANUAL;
	req.action = strcmp(r->action, "pause") == 0 ? ACT_PAUSE : ACT_RESUME;
	if (fleet_on())
		return control_fleet_pause(c, r, req.action == ACT_PAUSE, answer);
	return control_queue(c, r, &req, r->action, answer);
}

static int
control_releases(struct MHD_Connection *c, const struct control_route *r, json_t *body,
    json_t **answer)
{
	const struct site_config *site = config_site(control_cfg, r->site);
	struct error e;
	json_t *arr;

	if (site == NULL) {
		*answer = control_unknown_site(r->site);
		return MHD_HTTP_NOT_FOUND;
	}
	if ((arr = rollback_releases_json(&site->site, &e)) == NULL) {
		*answer = json_pack("{s:s}", "error", e.msg);
		return MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
	*answer = json_pack("{s:s,s:o}", "site", r->site, "releases", arr);
	return MHD_HTTP_OK;
}

/* Check the new file here so the client sees the errors; the main thread applies it. */
static int
control_reload_req(struct MHD_Connection *c, const struct control_route *r, json_t *body,
    json_t **answer)
{
	struct strv errors = { NULL, 0 };
	struct config *next;
	json_t *arr;
	size_t i;

	control_log_peer(c, "reload", NULL);
	if (config_load(control_cfg->file, &next, &errors) != E_OK) {
		arr = json_array();
		for (i = 0; i < errors.n; i++)
			json_array_append_new(arr, json_string(errors.v[i]));
		util_strv_free(&errors);
		*answer = json_pack("{s:s,s:o}", "error", "the configuration has errors; "
		    "the running one is unchanged", "errors", arr);
		return MHD_HTTP_UNPROCESSABLE_CONTENT;
	}
	config_free(next);
	kill(getpid(), SIGHUP);
	*answer = json_pack("{s:b}", "reloading", 1);
	return MHD_HTTP_ACCEPTED;
}

void
control_reload(const struct config *cfg)
{
	control_cfg = cfg;
}

/* One events stream: JSON lines, each a snapshot of the site's jobs when they moved on. */
struct control_events {
	char		 site[128];
	int64_t		 seq;
	int64_t		 until_id;	/* >0: end once the job with this id is done */
	int64_t		 last_sent;	/* monotonic ms */
	char		*line;
	size_t		 len, off;
	int		 last;		/* the line being sent is the last one */
};

static void
control_events_free(void *cls)
{
	struct control_events *ev = cls;

	free(ev->line);
	free(ev);
}

/*
 * Runs in the connection's own thread (thread-per-connection), so it may block: it waits for
 * the site to move on, a second at a time so that a stopping daemon is noticed, and sends a
 * heartbeat line every CONTROL_HEARTBEAT_MS so that idle streams are not timed out.
 */
static ssize_t
control_events_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct control_events *ev = cls;
	json_t *o = NULL;
	int64_t prev;
	size_t n;
	int rc;

	(void)pos;
	while (ev->off >= ev->len) {
		if (ev->last)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (control_stopping)
			return MHD_CONTENT_READER_END_OF_STREAM;
		prev = ev->seq;
		rc = status_event(ev->site, &ev->seq, ev->line == NULL ? 0 : 1000, &o);
		if (rc == E_NOTFOUND)
			o = json_pack("{s:s,s:s}", "site", ev->site, "error",
			    "the site is no longer configured");
		if (rc != E_OK)
			ev->last = 1;
		if (o == NULL)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (rc == E_OK && ev->seq == prev && ev->line != NULL &&
		    util_mono_ms() - ev->last_sent < CONTROL_HEARTBEAT_MS) {
			json_decref(o);
			continue;
		}
		if (ev->until_id > 0 && json_integer_value(json_object_get(o, "done_id")) >=
		    ev->until_id)
			ev->last = 1;
		free(ev->line);
		ev->line = json_dumps(o, JSON_COMPACT);
		json_decref(o);
		if (ev->line == NULL)
			return MHD_CONTENT_READER_END_WITH_ERROR;
		ev->len = strlen(ev->line);
		ev->line[ev->len++] = '\n';	/* json_dumps' NUL becomes the newline */
		ev->off = 0;
		ev->last_sent = util_mono_ms();
	}
	n = ev->len - ev->off < max ? ev->len - ev->off : max;
	memcpy(buf, ev->line + ev->off, n);
	ev->off += n;
	return (ssize_t)n;
}

/* GET /v1/sites/<site>/events[?id=N]: a stream of JSON lines; with id, it ends when job N is. */
static int
control_events(struct MHD_Connection *c, const struct control_route *r, json_t *body,
    json_t **answer)
{
	struct control_events *ev;
	struct MHD_Response *resp;
	const char *id = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "id");
	uint64_t until;
	json_t *probe;
	enum MHD_Result ret;

	if ((probe = status_site(r->site)) == NULL) {
		*answer = control_unknown_site(r->site);
		return MHD_HTTP_NOT_FOUND;
	}
	json_decref(probe);
	ev = util_xcalloc(1, sizeof(*ev));
	ev->seq = -1;
	util_strlcpy(ev->site, r->site, sizeof(ev->site));
	if (id != NULL) {
		if (util_parse_uint(id, INT64_MAX, &until) != E_OK || until == 0) {
			free(ev);
			*answer = json_pack("{s:s}", "error", "id must be a positive integer");
			return MHD_HTTP_BAD_REQUEST;
		}
		ev->until_id = (int64_t)until;
	}
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, control_events_read,
	    ev, control_events_free);
	if (resp == NULL) {
		free(ev);
		*answer = json_pack("{s:s}", "error", "cannot start the stream");
		return MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
	MHD_add_response_header(resp, "Content-Type", "application/x-ndjson");
	ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	*answer = NULL;
	return ret == MHD_YES ? CONTROL_QUEUED : CONTROL_FAILED;
}

static int
control_fleet(struct MHD_Connection *c, const struct control_route *r, json_t *body,
    json_t **answer)
{
	if (!fleet_on()) {
		*answer = json_pack("{s:s}", "error", "this node is not in a fleet (no fleet: "
		    "in its configuration)");
		return MHD_HTTP_NOT_FOUND;
	}
	*answer = fleet_view(NULL);
	return MHD_HTTP_OK;
}

static const struct {
	const char	*method;
	int		 has_site;	/* 1: /v1/sites/<site>..., 0: /v1/sites or /v1/<action> */
	const char	*action;	/* NULL: no action part */
	control_fn	 fn;
} control_routes[] = {
	{ "GET", 0, NULL, control_list },
	{ "GET", 1, NULL, control_show },
	{ "POST", 1, "deploy", control_deploy },
	{ "GET", 1, "releases", control_releases },
	{ "GET", 1, "events", control_events },
	{ "POST", 1, "rollback", control_rollback },
	{ "POST", 1, "pause", control_pause },
	{ "POST", 1, "resume", control_pause },
	{ "POST", 0, "reload", control_reload_req },
	{ "GET", 0, "fleet", control_fleet },
};
#define NROUTES (sizeof(control_routes) / sizeof(control_routes[0]))

/* Split the URL; returns 0 if it is not one of ours. Works in buf. */
static int
control_parse_url(char *buf, struct control_route *r, int *has_site)
{
	char *p, *slash;

	r->site = r->action = NULL;
	*has_site = 0;
	if (strncmp(buf, "/v1/", 4) != 0)
		return 0;
	p = buf + 4;
	if (strcmp(p, "sites") == 0 || strcmp(p, "sites/") == 0)
		return 1;
	if (strncmp(p, "sites/", 6) != 0) {
		r->action = p;
		return strchr(p, '/') == NULL && *p != '\0';
	}
	p += 6;
	*has_site = 1;
	r->site = p;
	if ((slash = strchr(p, '/')) != NULL) {
		*slash = '\0';
		r->action = slash + 1;
		if (*r->action == '\0' || strchr(r->action, '/') != NULL)
			return 0;
	}
	return config_value_name(r->site);
}

static enum MHD_Result
control_reply(struct MHD_Connection *c, int status, json_t *answer)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	char *text;

	text = json_dumps(answer, JSON_COMPACT);
	json_decref(answer);
	if (text == NULL)
		text = util_xstrdup("{}");
	resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (resp == NULL) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "application/json");
	ret = MHD_queue_response(c, (unsigned)status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result
control_handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
    const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
	struct control_req *cr = *con_cls;
	struct control_route r;
	char urlbuf[256];
	json_t *body = NULL, *answer = NULL;
	json_error_t jerr;
	int has_site, status, path_known = 0;
	size_t i;

	if (cr == NULL) {
		*con_cls = util_xcalloc(1, sizeof(*cr));
		return MHD_YES;
	}
	if (*upload_size > 0) {
		if (cr->len + *upload_size > CONTROL_BODY_MAX)
			cr->too_big = 1;
		else {
			cr->body = util_xrealloc(cr->body, cr->len + *upload_size + 1, 1);
			memcpy(cr->body + cr->len, upload_data, *upload_size);
			cr->len += *upload_size;
			cr->body[cr->len] = '\0';
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (cr->too_big)
		return control_reply(c, MHD_HTTP_CONTENT_TOO_LARGE,
		    json_pack("{s:s}", "error", "request body too large"));
	if (util_strlcpy(urlbuf, url, sizeof(urlbuf)) >= sizeof(urlbuf) ||
	    !control_parse_url(urlbuf, &r, &has_site))
		return control_reply(c, MHD_HTTP_NOT_FOUND,
		    json_pack("{s:s}", "error", "no such endpoint"));
	if (cr->len > 0) {
		body = json_loadb(cr->body, cr->len, JSON_REJECT_DUPLICATES, &jerr);
		if (body == NULL || !json_is_object(body)) {
			json_decref(body);
			return control_reply(c, MHD_HTTP_BAD_REQUEST,
			    json_pack("{s:s}", "error", "the body must be a JSON object"));
		}
	}
	for (i = 0; i < NROUTES; i++) {
		if (control_routes[i].has_site != has_site ||
		    (control_routes[i].action == NULL) != (r.action == NULL) ||
		    (r.action != NULL && strcmp(control_routes[i].action, r.action) != 0))
			continue;
		path_known = 1;
		if (strcmp(control_routes[i].method, method) != 0)
			continue;
		status = control_routes[i].fn(c, &r, body, &answer);
		json_decref(body);
		if (status == CONTROL_QUEUED || status == CONTROL_FAILED)
			return status == CONTROL_QUEUED ? MHD_YES : MHD_NO;
		return control_reply(c, status, answer);
	}
	json_decref(body);
	if (path_known)
		return control_reply(c, MHD_HTTP_METHOD_NOT_ALLOWED,
		    json_pack("{s:s}", "error", "method not allowed"));
	return control_reply(c, MHD_HTTP_NOT_FOUND,
	    json_pack("{s:s}", "error", "no such endpoint"));
}

static void
control_completed(void *cls, struct MHD_Connection *c, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct control_req *cr = *con_cls;

	if (cr != NULL) {
		free(cr->body);
		free(cr);
		*con_cls = NULL;
	}
}

/* Bind the socket ourselves: libmicrohttpd takes it with MHD_OPTION_LISTEN_SOCKET. */
static int
control_bind(const char *path, struct error *e)
{
	struct sockaddr_un sun;
	char dir[sizeof(sun.sun_path)], *slash;
	mode_t old;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (util_strlcpy(sun.sun_path, path, sizeof(sun.sun_path)) >= sizeof(sun.sun_path))
		return util_error(e, E_INVAL, "control socket path too long: %s", path);
	util_strlcpy(dir, path, sizeof(dir));
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		if (util_mkdir_p(dir, 0755) != E_OK)
			return util_error_sys(e, "cannot create %s", dir);
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return util_error_sys(e, "socket");
	/* A socket file left by a dead daemon is removed; a live one means we must not start. */
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
		close(fd);
		return util_error(e, E_BUSY, "another deployd is answering on %s", path);
	}
	close(fd);
	if (unlink(path) != 0 && errno != ENOENT)
		return util_error_sys(e, "cannot remove stale socket %s", path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return util_error_sys(e, "socket");
	old = umask(0117);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		umask(old);
		util_error_sys(e, "cannot bind %s", path);
		close(fd);
		return E_SYS;
	}
	umask(old);
	if (chmod(path, 0660) != 0 || listen(fd, 64) != 0) {
		util_error_sys(e, "cannot listen on %s", path);
		close(fd);
		return E_SYS;
	}
	return fd;
}

static int control_fd = -1;	/* bound by control_open, not yet served */

/*
 * Bind the socket while the daemon may still be root; it is served (control_start) only
 * once recovery has run, so an answer to `status` means the sites are recovered.
 */
int
control_open(const struct config *cfg, struct error *e)
{
	int fd;

	if ((fd = control_bind(cfg->control_socket, e)) < 0)
		return fd;
	control_fd = fd;
	return E_OK;
}

int
control_start(const struct config *cfg, struct error *e)
{
	int fd, rc;

	if (control_fd < 0 && (rc = control_open(cfg, e)) != E_OK)
		return rc;
	fd = control_fd;
	control_fd = -1;
	control_cfg = cfg;
	/* A thread per connection: an events stream blocks its own thread, nobody else's. */
	control_stopping = 0;
	control_daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
	    MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL,
	    0, NULL, NULL, control_handler, NULL,
	    MHD_OPTION_LISTEN_SOCKET, fd,
	    MHD_OPTION_NOTIFY_COMPLETED, control_completed, NULL,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
	    MHD_OPTION_END);
	if (control_daemon == NULL) {
		close(fd);
		unlink(cfg->control_socket);
		return util_error(e, E_SYS, "cannot start the control API on %s",
		    cfg->control_socket);
	}
	util_strlcpy(control_path, cfg->control_socket, sizeof(control_path));
	log_info("control API on %s", cfg->control_socket);
	return E_OK;
}

void
control_stop(void)
{
	if (control_fd >= 0) {
		close(control_fd);
		control_fd = -1;
	}
	if (control_daemon == NULL)
		return;
	control_stopping = 1;
	MHD_stop_daemon(control_daemon);
	control_daemon = NULL;
	unlink(control_path);
}
