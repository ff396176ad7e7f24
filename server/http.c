/* http.c: the webhook listener on libmicrohttpd: POST /hooks/<site>, GET /healthz and /metrics. */
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "server/deployd.h"

#define HTTP_HEADERS_MAX	128	/* headers handed to the providers; more are ignored */
#define HTTP_BODIES_MIN		(64 * 1024 * 1024)	/* see http_reserve */
#define HTTP_FORWARDED_MAX	128	/* X-Forwarded-For as logged */
#define HTTP_THREADS_MAX	64

/* One request, from its headers to its answer. */
struct http_req {
	const struct keyring_site *site;
	char		 addr[CONN_ADDR_MAX];	/* the client: the peer, or whom a trusted
						   proxy forwarded for (see http_client) */
	char		 peer[CONN_ADDR_MAX];	/* the socket's peer, or "unix" */
	char		 fwd[HTTP_FORWARDED_MAX];	/* X-Forwarded-For as sent, sanitised */
	unsigned char	 ip[CIDR_ADDR_LEN];	/* addr's address, if has_ip */
	int		 has_ip;	/* 0: a Unix socket peer, or an unparseable hop */
	int		 bad_hop;	/* a trusted proxy forwarded an unparseable hop */
	unsigned char	*body;
	size_t		 len, cap;
	int		 answered;	/* a response is queued; ignore the rest of the body */
};

static struct {
	pthread_mutex_t		 mu;	/* buffered */
	const struct config	*cfg;
	http_ask_fn		 ask;	/* the daemon, through whoever started us */
	void			*ask_arg;
	struct MHD_Daemon	*daemon;
	size_t			 buffered;	/* body bytes held by all requests */
	size_t			 buffered_max;
} H = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* Metric result names for the answers that are not a provider's verdict. */
static const struct {
	unsigned	 status;
	const char	*result;
} http_results[] = {
	{ 200, "ping" },
	{ 400, "bad_request" },
	{ 401, "unauthorized" },
	{ 403, "forbidden" },
	{ 405, "method_not_allowed" },
	{ 413, "too_large" },
	{ 415, "unsupported_media_type" },
	{ 431, "headers_too_large" },
	{ 503, "unavailable" },
};

static const char *
http_result_name(unsigned status)
{
	size_t i;

	for (i = 0; i < sizeof(http_results) / sizeof(http_results[0]); i++)
		if (http_results[i].status == status)
			return http_results[i].result;
	return "error";
}

static void
http_client_addr(struct MHD_Connection *c, char *buf, size_t len)
{
	const union MHD_ConnectionInfo *ci;
	const struct sockaddr *sa;
	socklen_t salen;

	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	sa = ci != NULL ? ci->client_addr : NULL;
	if (sa == NULL || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)) {
		util_strlcpy(buf, "unix", len);
		return;
	}
	salen = sa->sa_family == AF_INET ? sizeof(struct sockaddr_in) :
	    sizeof(struct sockaddr_in6);
	if (getnameinfo(sa, salen, buf, (socklen_t)len, NULL, 0, NI_NUMERICHOST) != 0)
		util_strlcpy(buf, "?", len);
}

/* The socket's peer as 16 bytes (lib/cidr.c); 0 for a Unix socket. */
static int
http_peer(struct MHD_Connection *c, unsigned char ip[CIDR_ADDR_LEN])
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	const union MHD_ConnectionInfo *ci;
	const struct sockaddr *sa;

	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	sa = ci != NULL ? ci->client_addr : NULL;
	if (sa != NULL && sa->sa_family == AF_INET) {
		memcpy(ip, mapped, sizeof(mapped));
		memcpy(ip + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
		return 1;
	}
	if (sa != NULL && sa->sa_family == AF_INET6) {
		memcpy(ip, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
		return 1;
	}
	return 0;
}

/* X-Forwarded-For, every header line of it joined in order: a proxy may add a line of its own. */
struct http_xff {
	char	*v;
	size_t	 len, cap;
};

static enum MHD_Result
http_forwarded(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct http_xff *x = cls;
	size_t n;

	(void)kind;
	if (key == NULL || value == NULL || strcasecmp(key, "X-Forwarded-For") != 0)
		return MHD_YES;
	/* Grown by doubling: thousands of header lines must not cost quadratic time. */
	n = strlen(value);
	while (x->len + n + 3 > x->cap) {
		x->cap = x->cap < 256 ? 256 : x->cap * 2;
		x->v = util_xrealloc(x->v, x->cap, 1);
	}
	if (x->len > 0) {
		memcpy(x->v + x->len, ", ", 2);
		x->len += 2;
	}
	memcpy(x->v + x->len, value, n + 1);
	x->len += n;
	return MHD_YES;
}

/*
 * Who sent the request. The socket's peer, unless it is one of trusted_proxies and sent
 * X-Forwarded-For: then the client is the rightmost hop that is not a trusted proxy
 * itself (cidr_forwarded). An unparseable hop leaves the client without an address,
 * which allow_from refuses. From anyone else the header is only logged, as sent.
 */
static void
http_client(struct MHD_Connection *c, struct http_req *r)
{
	const struct cidr_list *trusted = &H.cfg->trusted_proxies;
	struct http_xff xff = { NULL, 0, 0 };
	unsigned char ip[CIDR_ADDR_LEN];
	char hop[CONN_ADDR_MAX];
	int trust;

	r->has_ip = http_peer(c, r->ip);
	if (r->has_ip)
		cidr_addr_text(r->ip, r->peer, sizeof(r->peer));
	else
		util_strlcpy(r->peer, "unix", sizeof(r->peer));
	util_strlcpy(r->addr, r->peer, sizeof(r->addr));
	MHD_get_connection_values(c, MHD_HEADER_KIND, http_forwarded, &xff);
	util_sanitize(xff.v != NULL ? xff.v : "-", r->fwd, sizeof(r->fwd));
	trust = r->has_ip ? cidr_list_match(trusted, r->ip) : trusted->unix_peer;
	if (xff.v == NULL || !trust) {
		free(xff.v);
		return;
	}
	if (cidr_forwarded(trusted, xff.v, ip, hop, sizeof(hop)) == E_OK) {
		memcpy(r->ip, ip, sizeof(ip));
		r->has_ip = 1;
		util_strlcpy(r->addr, hop, sizeof(r->addr));
	} else {
		r->has_ip = 0;
		r->bad_hop = 1;
		util_sanitize(hop, r->addr, sizeof(r->addr));
	}
	free(xff.v);
}

/* Is the client in the list? An empty list is no restriction; no address is no match. */
static int
http_allowed(const struct http_req *r, const struct cidr_list *allow)
{
	return allow->n == 0 || (r->has_ip && cidr_list_match(allow, r->ip));
}

/* " peer=P" when the client is not the socket's peer, for the log lines. */
static const char *
http_peer_note(const struct http_req *r, char *buf, size_t len)
{
	if (strcmp(r->addr, r->peer) == 0 && !r->bad_hop)
		return "";
	snprintf(buf, len, " peer=%s", r->peer);
	return buf;
}

/*
 * A webhook's metric result, counted by the daemon (which serves /metrics); no reply.
 * With no site: a request refused before it reached one.
 */
static void
http_count(const char *site, const char *provider, const char *result)
{
	struct privsep_msg m;
	struct privsep_reply a;

	memset(&m, 0, sizeof(m));
	m.type = PS_COUNT;
	util_strlcpy(m.site, site != NULL ? site : "", sizeof(m.site));
	util_strlcpy(m.provider, provider != NULL ? provider : "", sizeof(m.provider));
	util_strlcpy(m.result, result, sizeof(m.result));
	H.ask(H.ask_arg, &m, &a, NULL);
}

static enum MHD_Result
http_respond(struct MHD_Connection *c, struct http_req *r, unsigned status,
    const char *ctype, char *body, const char *allow)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if (r != NULL)
		r->answered = 1;
	resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (allow != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
	/* Every 503 here is a passing state (a restart, a full queue, a fleet cut off). */
	if (status == MHD_HTTP_SERVICE_UNAVAILABLE)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "5");
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* Answer with a JSON object, which this takes. */
static enum MHD_Result
http_json(struct MHD_Connection *c, struct http_req *r, unsigned status, json_t *o,
    const char *allow)
{
	char *text = json_dumps(o, JSON_COMPACT);
	enum MHD_Result ret;
	char *line;

	json_decref(o);
	if (text == NULL)
		return MHD_NO;
	line = util_xasprintf("%s\n", text);
	free(text);
	ret = http_respond(c, r, status, "application/json", line, allow);
	free(line);
	return ret;
}

static enum MHD_Result
http_error(struct MHD_Connection *c, struct http_req *r, unsigned status, const char *msg,
    const char *allow)
{
	return http_json(c, r, status, json_pack("{s:s}", "error", msg), allow);
}

/* ---- GET /healthz and /metrics ---- */

static enum MHD_Result
http_healthz(struct MHD_Connection *c, struct http_req *r)
{
	return http_json(c, r, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"), NULL);
}

static enum MHD_Result
http_metrics(struct MHD_Connection *c, struct http_req *r)
{
	struct privsep_msg m;
	struct privsep_reply a;
	enum MHD_Result ret;
	char *text = NULL;

	memset(&m, 0, sizeof(m));
	m.type = PS_METRICS;
	if (H.ask(H.ask_arg, &m, &a, &text) != E_OK || a.answer != PS_OK || text == NULL) {
		free(text);
		return http_error(c, r, MHD_HTTP_SERVICE_UNAVAILABLE, "metrics unavailable",
		    NULL);
	}
	ret = http_respond(c, r, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
	    text, NULL);
	free(text);
	return ret;
}

static const struct {
	const char	*path;
	enum MHD_Result	(*fn)(struct MHD_Connection *, struct http_req *);
} http_pages[] = {
	{ "/healthz", http_healthz },
	{ "/metrics", http_metrics },
};

/* ---- allow_from ---- */

/*
 * 403 for a client that allow_from does not list, before the body is read or anything
 * is verified. site: the configured site the URL names, if any, for the metrics.
 */
static enum MHD_Result
http_refuse(struct MHD_Connection *c, struct http_req *r, const char *url, const char *method,
    const struct keyring_site *site)
{
	char safe_url[96], safe_method[24], note[CONN_ADDR_MAX + 8];

	http_count(site != NULL ? site->cfg->site.name : NULL, NULL, "address_refused");
	util_sanitize(url, safe_url, sizeof(safe_url));
	util_sanitize(method, safe_method, sizeof(safe_method));
	reject_address(r->addr, "refused %s %s: %s%s%s%s forwarded=%s", safe_method, safe_url,
	    r->bad_hop ? "unparseable X-Forwarded-For hop from a trusted proxy" :
	    !r->has_ip ? "no client address (a Unix socket peer)" : "not in allow_from",
	    r->site != NULL && !r->bad_hop && r->has_ip ? " of site " : "",
	    r->site != NULL && !r->bad_hop && r->has_ip ? r->site->cfg->site.name : "",
	    http_peer_note(r, note, sizeof(note)), r->fwd);
	return http_error(c, r, MHD_HTTP_FORBIDDEN, "address not allowed", NULL);
}

/* ---- POST /hooks/<site> ---- */

struct http_headers {
	struct hook_header h[HTTP_HEADERS_MAX];
	size_t		   n;
};

static enum MHD_Result
http_collect(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct http_headers *hh = cls;

	if (hh->n < HTTP_HEADERS_MAX && key != NULL) {
		hh->h[hh->n].name = key;
		hh->h[hh->n].value = value != NULL ? value : "";
		hh->n++;
	}
	return MHD_YES;
}

/* How the daemon's answer to a verified push becomes the webhook's answer. */
static const struct {
	uint32_t	 answer;
	unsigned	 status;
	const char	*result;	/* the metric result */
	const char	*reason;	/* for "ignored" and 503 */
} http_push_answers[] = {
	{ PS_QUEUED, MHD_HTTP_ACCEPTED, "queued", "" },
	{ PS_DUPLICATE, MHD_HTTP_ACCEPTED, "duplicate", "" },
	{ PS_PAUSED, MHD_HTTP_ACCEPTED, "ignored", "site paused" },
	{ PS_LIVE, MHD_HTTP_ACCEPTED, "ignored", "commit already live" },
	{ PS_STOPPING, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "shutting down" },
	{ PS_UNAVAILABLE, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
	    "cannot queue the deploy" },
	{ PS_NOSTORE, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
	    "the fleet's store cannot be reached" },
};

/*
 * A verified push to the tracked ref: the daemon rings the doorbell, unless the site
 * is paused or this delivery already rang for a deploy that is waiting, running or
 * succeeded. Returns the metric result and fills *status.
 */
static const char *
http_ring(const struct keyring_site *s, struct hook_result *res, unsigned *status)
{
	struct privsep_msg m;
	struct privsep_reply a;
	size_t i;

	memset(&m, 0, sizeof(m));
	m.type = PS_PUSH;
	util_strlcpy(m.site, s->cfg->site.name, sizeof(m.site));
	util_strlcpy(m.provider, res->provider, sizeof(m.provider));
	util_strlcpy(m.delivery, res->delivery, sizeof(m.delivery));
	util_strlcpy(m.ref, res->ref, sizeof(m.ref));
	util_strlcpy(m.after, res->after, sizeof(m.after));
	if (H.ask(H.ask_arg, &m, &a, NULL) != E_OK)
		a.answer = PS_UNAVAILABLE;
	res->queue = 0;
	for (i = 0; i < sizeof(http_push_answers) / sizeof(http_push_answers[0]); i++) {
		if (http_push_answers[i].answer != a.answer)
			continue;
		*status = http_push_answers[i].status;
		res->queue = a.answer == PS_QUEUED;
		if (http_push_answers[i].reason[0] != '\0')
			util_strlcpy(res->reason, http_push_answers[i].reason,
			    sizeof(res->reason));
		return http_push_answers[i].result;
	}
	*status = MHD_HTTP_SERVICE_UNAVAILABLE;
	util_strlcpy(res->reason, "cannot queue the deploy", sizeof(res->reason));
	return "unavailable";
}

static json_t *
http_answer(const char *site, const struct hook_result *res, const char *result)
{
	json_t *o = json_pack("{s:s,s:s?,s:s}", "site", site,
	    "delivery", res->delivery[0] != '\0' ? res->delivery : NULL,
	    "provider", res->provider);

	if (strcmp(result, "queued") == 0)
		json_object_set_new(o, "queued", json_true());
	else if (strcmp(result, "duplicate") == 0)
		json_object_set_new(o, "duplicate", json_true());
	else if (strcmp(result, "ping") == 0)
		json_object_set_new(o, "ping", json_true());
	else {
		json_object_set_new(o, "ignored", json_true());
		json_object_set_new(o, "reason", json_string(res->reason));
	}
	return o;
}

static enum MHD_Result
http_hook(struct MHD_Connection *c, struct http_req *r)
{
	const struct keyring_site *s = r->site;
	struct http_headers *hh;
	struct hook_request req;
	struct hook_result res;
	char ref[HOOK_REF_MAX * 4 + 1], note[CONN_ADDR_MAX + 8];
	const char *result;
	unsigned status;

	hh = util_xcalloc(1, sizeof(*hh));
	MHD_get_connection_values(c, MHD_HEADER_KIND, http_collect, hh);
	memset(&req, 0, sizeof(req));
	req.method = "POST";
	req.headers = hh->h;
	req.nheaders = hh->n;
	req.body = r->body != NULL ? r->body : (const unsigned char *)"";
	req.body_len = r->len;
	req.now_ms = util_now_ms();
	status = (unsigned)provider_handle(&s->hook, s->secret, s->secret_len,
	    H.cfg->limits.signature_tolerance_ms, &req, &res);
	free(hh);

	if (status >= 400) {
		http_count(s->cfg->site.name, res.provider, http_result_name(status));
		reject_log(r->addr, "webhook site=%s provider=%s delivery=%s refused %u: %s"
		    "%s forwarded=%s", s->cfg->site.name,
		    res.provider[0] != '\0' ? res.provider : "-",
		    res.delivery[0] != '\0' ? res.delivery : "-", status, res.reason,
		    http_peer_note(r, note, sizeof(note)), r->fwd);
		return http_error(c, r, status, res.reason, NULL);
	}
	/* The daemon counts the pushes it answered itself. */
	if (res.queue) {
		result = http_ring(s, &res, &status);
	} else {
		result = status == MHD_HTTP_OK ? "ping" : "ignored";
		http_count(s->cfg->site.name, res.provider, result);
	}
	util_sanitize(res.ref, ref, sizeof(ref));
	log_info("webhook site=%s provider=%s event=%s delivery=%s ref=%s after=%s %s%s%s"
	    " addr=%s%s forwarded=%s", s->cfg->site.name, res.provider,
	    res.event[0] ? res.event : "-", res.delivery[0] != '\0' ? res.delivery : "-",
	    ref[0] != '\0' ? ref : "-", res.after[0] != '\0' ? res.after : "-", result,
	    strcmp(result, "ignored") == 0 ? ": " : "",
	    strcmp(result, "ignored") == 0 ? res.reason : "", r->addr,
	    http_peer_note(r, note, sizeof(note)), r->fwd);
	if (status >= 500)
		return http_error(c, r, status, res.reason, NULL);
	return http_json(c, r, status, http_answer(s->cfg->site.name, &res, result), NULL);
}

/* ---- the request life cycle ---- */

/*
 * Grow a request's body buffer to hold `need` bytes. Each body is capped by max_body,
 * and all of them together by a budget, so that many connections sending large bodies
 * before their signature is checked cannot exhaust memory.
 */
static int
http_reserve(struct http_req *r, size_t need)
{
	size_t cap = r->cap;
	int ok;

	while (cap < need)
		cap = cap < 4096 ? 4096 : cap * 2;
	if (cap > (size_t)H.cfg->limits.max_body)
		cap = (size_t)H.cfg->limits.max_body;
	pthread_mutex_lock(&H.mu);
	if ((ok = H.buffered - r->cap + cap <= H.buffered_max))
		H.buffered += cap - r->cap;
	pthread_mutex_unlock(&H.mu);
	if (!ok)
		return E_BUSY;
	r->body = util_xrealloc(r->body, cap + 1, 1);
	r->cap = cap;
	return E_OK;
}

/* Headers are complete: route, and refuse what can be refused before the body is read. */
static enum MHD_Result
http_begin(struct MHD_Connection *c, struct http_req *r, const char *url, const char *method)
{
	const union MHD_ConnectionInfo *ci;
	const char *cl, *addr = r->addr;
	char safe[128];
	uint64_t n;
	size_t i;

	http_client(c, r);
	/* The global list guards every path, before anything else is looked at. */
	if (!http_allowed(r, &H.cfg->allow_from))
		return http_refuse(c, r, url, method, strncmp(url, "/hooks/", 7) == 0 ?
		    keyring_site(url + 7) : NULL);
	if (r->bad_hop)
		reject_log(r->peer, "unparseable X-Forwarded-For hop '%s' from trusted proxy;"
		    " forwarded=%s", r->addr, r->fwd);
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
	if (ci != NULL && (int64_t)ci->header_size > H.cfg->limits.max_header) {
		reject_log(addr, "request headers of %zu bytes over max_header",
		    ci->header_size);
		return http_error(c, r, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE,
		    "request headers too large", NULL);
	}
	if (strncmp(url, "/hooks/", 7) != 0) {
		for (i = 0; i < sizeof(http_pages) / sizeof(http_pages[0]); i++) {
			if (strcmp(url, http_pages[i].path) != 0)
				continue;
			if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
				return http_error(c, r, MHD_HTTP_METHOD_NOT_ALLOWED,
				    "method not allowed", "GET, HEAD");
			return http_pages[i].fn(c, r);
		}
		return http_error(c, r, MHD_HTTP_NOT_FOUND, "not found", NULL);
	}
	if ((r->site = keyring_site(url + 7)) == NULL) {
		util_sanitize(url + 7, safe, sizeof(safe));
		reject_log(addr, "webhook for unknown site %s", safe);
		return http_error(c, r, MHD_HTTP_NOT_FOUND, "unknown site", NULL);
	}
	if (!http_allowed(r, &r->site->cfg->allow_from))
		return http_refuse(c, r, url, method, r->site);
	if (strcmp(method, "POST") != 0) {
		util_sanitize(method, safe, sizeof(safe));
		http_count(r->site->cfg->site.name, NULL, "method_not_allowed");
		/* A proxy's redirect turns POST into GET, and the body is lost on the way. */
		reject_log(addr, "webhook site=%s: method %s, not POST (a redirect on the"
		    " way?)", r->site->cfg->site.name, safe);
		return http_error(c, r, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed",
		    "POST");
	}
	if (r->site->secret == NULL) {
		http_count(r->site->cfg->site.name, NULL, "forbidden");
		reject_log(addr, "webhook site=%s: the site has no secret_file",
		    r->site->cfg->site.name);
		return http_error(c, r, MHD_HTTP_FORBIDDEN,
		    "webhooks are not configured for this site", NULL);
	}
	cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl != NULL) {
		if (*cl == '\0' || strspn(cl, "0123456789") != strlen(cl)) {
			util_sanitize(cl, safe, sizeof(safe));
			http_count(r->site->cfg->site.name, NULL, "bad_request");
			reject_log(addr, "webhook site=%s: Content-Length '%s' is not a number",
			    r->site->cfg->site.name, safe);
			return http_error(c, r, MHD_HTTP_BAD_REQUEST, "bad Content-Length", NULL);
		}
		/* Digits only by now: failing here means over 2^64, as "too large" as it gets. */
		if (util_parse_uint(cl, UINT64_MAX, &n) != E_OK ||
		    n > (uint64_t)H.cfg->limits.max_body) {
			http_count(r->site->cfg->site.name, NULL, "too_large");
			reject_log(addr, "webhook site=%s: Content-Length %s over max_body",
			    r->site->cfg->site.name, strlen(cl) > 20 ? "(huge)" : cl);
			return http_error(c, r, MHD_HTTP_CONTENT_TOO_LARGE,
			    "body larger than the limit", NULL);
		}
		/* Reserve what was announced, but never more than a first step up front. */
		if (http_reserve(r, n < 65536 ? (size_t)n : 65536) != E_OK) {
			reject_log(addr, "webhook site=%s: too many large bodies at once",
			    r->site->cfg->site.name);
			return http_error(c, r, MHD_HTTP_SERVICE_UNAVAILABLE,
			    "busy; try again", NULL);
		}
	}
	return MHD_YES;
}

static enum MHD_Result
http_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
    const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct http_req *r = *con_cls;
	size_t n = *upload_data_size;

	if (r == NULL) {
		*con_cls = r = util_xcalloc(1, sizeof(*r));
		return http_begin(c, r, url, method);
	}
	if (r->answered) {
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (n > 0) {
		if (r->len + n > (size_t)H.cfg->limits.max_body) {
			/* A chunked body cannot be answered mid-way: close the connection. */
			http_count(r->site->cfg->site.name, NULL, "too_large");
			reject_log(r->addr, "webhook site=%s: body over max_body; connection"
			    " closed", r->site->cfg->site.name);
			return MHD_NO;
		}
		if (r->len + n > r->cap && http_reserve(r, r->len + n) != E_OK) {
			reject_log(r->addr, "webhook site=%s: too many large bodies at once;"
			    " connection closed", r->site->cfg->site.name);
			return MHD_NO;
		}
		memcpy(r->body + r->len, upload_data, n);
		r->len += n;
		*upload_data_size = 0;
		return MHD_YES;
	}
	return http_hook(c, r);
}

static void
http_completed(void *cls, struct MHD_Connection *c, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct http_req *r = *con_cls;
	const union MHD_ConnectionInfo *ci;

	if (r != NULL) {
		pthread_mutex_lock(&H.mu);
		H.buffered -= r->cap;
		pthread_mutex_unlock(&H.mu);
		free(r->body);
		free(r);
		*con_cls = NULL;
	}
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	if (ci != NULL && ci->socket_context != NULL)
		conn_rearm(ci->socket_context);
}

/* Track every connection from accept to close, for the whole-request deadline. */
static void
http_connection(void *cls, struct MHD_Connection *c, void **socket_context,
    enum MHD_ConnectionNotificationCode toe)
{
	const union MHD_ConnectionInfo *ci;
	char addr[CONN_ADDR_MAX];

	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		if ((ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD)) == NULL)
			return;
		http_client_addr(c, addr, sizeof(addr));
		*socket_context = conn_open(ci->connect_fd, addr);
		return;
	}
	if (*socket_context != NULL)
		conn_close(*socket_context);
	*socket_context = NULL;
}

/* libmicrohttpd's own messages, at debug level; they may quote the client's bytes. */
static void
http_mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void
http_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512], safe[1024];

	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	util_sanitize(line, safe, sizeof(safe));
	log_debug("http: %s", safe);
}

/* ---- start and stop ---- */

/*
 * Secrets and the TLS key are read once, here, before the listener process confines
 * itself and can no longer open files. http_start then serves.
 */
int
http_load(const struct config *cfg, struct error *e)
{
	H.cfg = cfg;
	H.buffered = 0;
	H.buffered_max = (size_t)cfg->limits.max_body * 4 > HTTP_BODIES_MIN ?
	    (size_t)cfg->limits.max_body * 4 : HTTP_BODIES_MIN;
	conn_init(cfg->limits.request_timeout_ms);
	return keyring_load(cfg, e);
}

/*
 * listen_fd is the daemon's socket, shared with the listener before and after this one;
 * ask carries every record to the daemon, from the threads of libmicrohttpd.
 */
int
http_start(int listen_fd, http_ask_fn ask, void *arg, struct error *e)
{
	const struct config *cfg = H.cfg;
	const struct limits *l = &cfg->limits;
	struct MHD_OptionItem tls[3];
	char *cert, *key;
	unsigned flags, threads;
	size_t pool;
	int rc, secure;

	H.ask = ask;
	H.ask_arg = arg;
	/* A thread per CPU: a webhook waits for nothing but the odd question to the daemon. */
	threads = (unsigned)(util_cpus() < HTTP_THREADS_MAX ? util_cpus() : HTTP_THREADS_MAX);
	if ((int64_t)threads > l->max_connections)
		threads = l->max_connections < 1 ? 1 : (unsigned)l->max_connections;
	/* ITC: MHD_quiesce_daemon needs it to wake the polling threads. */
	flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG |
	    MHD_USE_ITC;
	if ((secure = keyring_tls(&cert, &key)))
		flags |= MHD_USE_TLS;
	/*
	 * libmicrohttpd answers 431 itself when the headers do not fit its per-connection
	 * pool; the pool leaves room for its bookkeeping and the exact limit is checked
	 * in http_begin.
	 */
	pool = (size_t)l->max_header + (size_t)l->max_header / 2 + 8192;
	/* TLS options only with TLS: libmicrohttpd complains about them otherwise. */
	memset(tls, 0, sizeof(tls));
	tls[0].option = tls[1].option = tls[2].option = MHD_OPTION_END;
	if (secure) {
		tls[0].option = MHD_OPTION_HTTPS_MEM_CERT;
		tls[0].ptr_value = cert;
		tls[1].option = MHD_OPTION_HTTPS_MEM_KEY;
		tls[1].ptr_value = key;
	}
	H.daemon = MHD_start_daemon(flags, 0, NULL, NULL, http_access, NULL,
	    MHD_OPTION_EXTERNAL_LOGGER, http_mhd_log, NULL,
	    MHD_OPTION_LISTEN_SOCKET, listen_fd,
	    MHD_OPTION_THREAD_POOL_SIZE, threads,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, pool,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)l->max_connections,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)l->max_connections_per_ip,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)((l->request_timeout_ms + 999) / 1000),
	    MHD_OPTION_NOTIFY_COMPLETED, http_completed, NULL,
	    MHD_OPTION_NOTIFY_CONNECTION, http_connection, NULL,
	    MHD_OPTION_ARRAY, tls,
	    MHD_OPTION_END);
	if (H.daemon == NULL) {
		rc = util_error(e, E_SYS, "cannot start the webhook listener on %s%s", cfg->listen,
		    secure ? " (is the TLS certificate and key valid?)" : "");
		goto fail;
	}
	if ((rc = conn_start(e)) != E_OK) {
		MHD_stop_daemon(H.daemon);
		H.daemon = NULL;
		goto fail;
	}
	log_debug("webhook listener serving, confined");
	return E_OK;
fail:
	keyring_free();
	return rc;
}

/* Stop accepting: another listener takes the connections from now on. */
void
http_quiesce(void)
{
	/* The socket is the daemon's: libmicrohttpd leaves it open once quiesced. */
	if (H.daemon != NULL)
		MHD_quiesce_daemon(H.daemon);
}

/* Wait, at most timeout_ms, for the requests in flight; returns the connections left. */
int
http_drain(int64_t timeout_ms)
{
	if (H.daemon == NULL)
		return 0;
	return conn_drain(timeout_ms);
}

void
http_stop(void)
{
	if (H.daemon != NULL) {
		MHD_stop_daemon(H.daemon);
		H.daemon = NULL;
		conn_stop();
		reject_stop();
	}
	keyring_free();	/* also when loaded and never started */
}
