/* etcd.c: a client for etcd's v3 JSON gateway on libcurl: the connection, its endpoints and deadlines, encoding, and watches. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include "fleet/fleet.h"

/*
 * Every call is one POST of a JSON body to one endpoint. Calls that fail in a way another
 * member could answer (no connection, a timeout, etcd's "unavailable": no leader, no quorum
 * here) move on to the next endpoint within the same deadline; an answer that is an answer
 * (a compare that failed, a permission denied) does not. Keys and values travel as base64 and
 * 64-bit numbers as strings, as the gateway's proto3 JSON mapping has them.
 */

/* How one attempt ended, beside the E_* codes (which are all zero or negative). */
enum {
	ETCD_TRANSIENT = 1,	/* another endpoint might answer: try it */
	ETCD_UNAUTH = 2,	/* the token expired or was never given: authenticate again */
	ETCD_ENDED = 3,		/* a watch's reader ended the stream: its code is in the watch */
};

/* gRPC status codes the gateway puts in "code". */
enum {
	GRPC_CANCELED = 1, GRPC_UNKNOWN = 2, GRPC_DEADLINE = 4, GRPC_NOTFOUND = 5, GRPC_DENIED = 7,
	GRPC_OUTOFRANGE = 11, GRPC_UNAVAILABLE = 14, GRPC_UNAUTHENTICATED = 16,
};

/*
 * Every call says it wants a member with a leader: one that has lost its quorum then answers
 * "no leader" (unavailable: the next endpoint is tried) at once, and ends a watch it holds
 * when it loses its leader, instead of holding the call or the watch in silence.
 */
#define ETCD_HASLEADER	"Grpc-Metadata-hasleader: true"

struct etcd {
	CURL		*curl;
	struct strv	 endpoints;
	size_t		 cur;		/* the endpoint that answered last */
	char		*user;
	unsigned char	*password;	/* guarded memory */
	size_t		 password_len;
	char		*token;
	struct curl_slist *lead;	/* hasleader alone */
	struct curl_slist *headers;	/* hasleader and the token */
	int64_t		 timeout_ms;
	const int	*stop;
	const int	*cancel;	/* ends the call under way; the client goes on */
	int64_t		 revision;	/* the newest store revision an answer named */
	char		 curl_err[CURL_ERROR_SIZE];

	/* The answer being received. A stream (a watch) hands each line to on_line. */
	char		*buf;
	size_t		 len, cap;
	int		(*on_line)(struct etcd *, json_t *, void *);
	void		*line_arg;
	size_t		 lines;		/* lines handed over in this call */
	int		 line_rc;	/* what on_line returned to end the stream */
};

static size_t
etcd_receive(char *data, size_t size, size_t nmemb, void *arg)
{
	struct etcd *c = arg;
	size_t n = size * nmemb, used = 0;
	char *nl;

	if (c->len + n + 1 > c->cap) {
		c->cap = (c->len + n + 1) * 2;
		c->buf = util_xrealloc(c->buf, c->cap, 1);
	}
	memcpy(c->buf + c->len, data, n);
	c->len += n;
	c->buf[c->len] = '\0';
	if (c->on_line == NULL)
		return n;
	while ((nl = memchr(c->buf + used, '\n', c->len - used)) != NULL) {
		size_t linelen = (size_t)(nl - (c->buf + used));
		json_t *j = json_loadb(c->buf + used, linelen, 0, NULL);
		int rc;

		used += linelen + 1;
		if (j == NULL)
			continue;
		c->lines++;
		rc = c->on_line(c, j, c->line_arg);
		json_decref(j);
		if (rc != 0) {
			c->line_rc = rc;
			return 0;	/* curl ends the transfer with a write error */
		}
	}
	memmove(c->buf, c->buf + used, c->len - used);
	c->len -= used;
	return n;
}

static int
etcd_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	struct etcd *c = arg;

	(void)dt, (void)dn, (void)ut, (void)un;
	return (c->stop != NULL && __atomic_load_n(c->stop, __ATOMIC_RELAXED) != 0) ||
	    (c->cancel != NULL && __atomic_load_n(c->cancel, __ATOMIC_RELAXED) != 0);
}

/* ---- encoding ---- */

char *
etcd_b64(const void *bin, size_t len)
{
	size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
	char *out = util_xmalloc(cap);

	sodium_bin2base64(out, cap, bin, len, sodium_base64_VARIANT_ORIGINAL);
	return out;
}

/* A base64 member of o decoded to a NUL-terminated string; "" when absent. */
char *
etcd_unb64(json_t *o, const char *name, size_t *outlen)
{
	const char *s = json_string_value(json_object_get(o, name));
	size_t len = s != NULL ? strlen(s) : 0, n = 0;
	char *out = util_xmalloc(len / 4 * 3 + 4);

	if (len > 0 && base64_decode(s, len, NULL, (unsigned char *)out, len / 4 * 3 + 3,
	    &n) != E_OK)
		n = 0;
	out[n] = '\0';
	if (outlen != NULL)
		*outlen = n;
	return out;
}

/* A 64-bit member: the gateway writes them as strings; absent means 0. */
int64_t
etcd_int(json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);

	if (json_is_integer(v))
		return json_integer_value(v);
	if (json_is_string(v))
		return strtoll(json_string_value(v), NULL, 10);
	return 0;
}

json_t *
etcd_jint(int64_t v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%lld", (long long)v);
	return json_string(buf);
}

/* The end of the range holding every key that starts with prefix: its last byte plus one. */
static char *
etcd_prefix_end(const char *prefix)
{
	size_t n = strlen(prefix);
	unsigned char *end = (unsigned char *)util_xstrdup(prefix);
	char *out;

	while (n > 0 && end[n - 1] == 0xff)
		n--;
	if (n == 0) {
		free(end);
		return etcd_b64("", 1);	/* "\0": every key */
	}
	end[n - 1]++;
	out = etcd_b64(end, n);
	free(end);
	return out;
}

void
etcd_set_key(json_t *body, const char *key, int prefix)
{
	char *k = etcd_b64(key, strlen(key));

	json_object_set_new(body, "key", json_string(k));
	free(k);
	if (prefix) {
		char *end = etcd_prefix_end(key);

		json_object_set_new(body, "range_end", json_string(end));
		free(end);
	}
}

void
etcd_read_kv(json_t *o, struct etcd_kv *kv)
{
	kv->key = etcd_unb64(o, "key", NULL);
	kv->value = etcd_unb64(o, "value", &kv->vlen);
	kv->create_rev = etcd_int(o, "create_revision");
	kv->mod_rev = etcd_int(o, "mod_revision");
	kv->version = etcd_int(o, "version");
	kv->lease = etcd_int(o, "lease");
}

void
etcd_kv_free(struct etcd_kv *kv)
{
	free(kv->key);
	free(kv->value);
	memset(kv, 0, sizeof(*kv));
}

void
etcd_kvs_free(struct etcd_kvs *kvs)
{
	for (size_t i = 0; i < kvs->n; i++)
		etcd_kv_free(&kvs->v[i]);
	free(kvs->v);
	memset(kvs, 0, sizeof(*kvs));
}

/* ---- one request to one endpoint ---- */

/* An answer's gRPC error, if it is one, as a return code; the message in e. */
static int
etcd_answer_error(struct etcd *c, size_t ep, const char *path, json_t *j, long status,
    struct error *e)
{
	json_t *err = json_object_get(j, "error");
	const char *msg;
	int64_t code;

	if (j == NULL)
		return util_error(e, status >= 500 ? ETCD_TRANSIENT : E_INVAL,
		    "etcd %s%s: HTTP %ld with an answer that is not JSON",
		    c->endpoints.v[ep], path, status);
	if (err == NULL && json_object_get(j, "code") == NULL)
		return status >= 200 && status < 300 ? E_OK : util_error(e, status >= 500 ?
		    ETCD_TRANSIENT : E_INVAL, "etcd %s%s: HTTP %ld", c->endpoints.v[ep], path,
		    status);
	/* Unary answers: {"error": "...", "code": N}; a stream's: {"error": {"grpc_code": N,
	 * "message": "..."}}. */
	if (json_is_object(err)) {
		msg = json_string_value(json_object_get(err, "message"));
		code = etcd_int(err, "grpc_code");
	} else {
		msg = json_is_string(err) ? json_string_value(err) :
		    json_string_value(json_object_get(j, "message"));
		code = etcd_int(j, "code");
	}
	if (msg == NULL)
		msg = "error without a message";
	util_error(e, E_INVAL, "etcd %s%s: %s", c->endpoints.v[ep], path, msg);
	/* A member shutting down cancels what its gateway holds: another member will do. */
	if (strstr(msg, "connection is closing") != NULL || strstr(msg, "transport is closing") !=
	    NULL)
		return e->code = ETCD_TRANSIENT;
	switch (code) {
	case GRPC_CANCELED:
	case GRPC_UNAVAILABLE:
		return e->code = ETCD_TRANSIENT;
	case GRPC_UNAUTHENTICATED:
		return e->code = ETCD_UNAUTH;
	case GRPC_DEADLINE:
		return e->code = E_TIMEOUT;
	case GRPC_NOTFOUND:
		return e->code = E_NOTFOUND;
	case GRPC_OUTOFRANGE:
		return e->code = E_STALE;
	case GRPC_UNKNOWN:
		if (strstr(msg, "no leader") != NULL && strncmp(path, "/v3/election", 12) == 0)
			return e->code = E_NOTFOUND;
		if (strstr(msg, "invalid auth token") != NULL)
			return e->code = ETCD_UNAUTH;
		break;
	}
	return e->code;
}

static int
etcd_once(struct etcd *c, size_t ep, const char *path, const char *body, int64_t left_ms,
    int64_t connect_ms, int with_token, json_t **out, struct error *e)
{
	char *url = util_xasprintf("%s%s", c->endpoints.v[ep], path);
	long status = 0;
	CURLcode rc;
	json_t *j = NULL, *res;
	int ret;

	c->len = 0;
	c->lines = 0;
	c->line_rc = 0;
	c->curl_err[0] = '\0';
	curl_easy_setopt(c->curl, CURLOPT_URL, url);
	curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, (long)left_ms);
	curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_ms);
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, with_token ? c->headers : c->lead);
	rc = curl_easy_perform(c->curl);
	free(url);
	if (c->on_line != NULL && c->line_rc != 0)
		return c->line_rc;	/* the stream's reader ended it */
	if (rc == CURLE_ABORTED_BY_CALLBACK)
		return util_error(e, E_STOPPED, "etcd %s%s: stopped", c->endpoints.v[ep], path);
	if (rc != CURLE_OK) {
		/* A stream that was answered and then ended, or ran to its time, is done. */
		if (c->on_line != NULL && c->lines > 0)
			return E_OK;
		return util_error(e, rc == CURLE_OPERATION_TIMEDOUT ? E_TIMEOUT : ETCD_TRANSIENT,
		    "etcd %s%s: %s", c->endpoints.v[ep], path,
		    c->curl_err[0] != '\0' ? c->curl_err : curl_easy_strerror(rc));
	}
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
	if (c->on_line != NULL && c->lines > 0)
		return E_OK;
	if (c->len > 0)
		j = json_loadb(c->buf, c->len, JSON_DISABLE_EOF_CHECK, NULL);
	/* A one-answer stream (keepalive) wraps its answer: {"result": ...}. */
	if (c->on_line == NULL && (res = json_object_get(j, "result")) != NULL &&
	    json_object_get(j, "error") == NULL) {
		json_incref(res);
		json_decref(j);
		j = res;
	}
	if ((ret = etcd_answer_error(c, ep, path, j, status, e)) != E_OK) {
		json_decref(j);
		return ret;
	}
	if (c->on_line != NULL && j != NULL) {
		/* The whole stream came as one line without its newline. */
		ret = c->on_line(c, j, c->line_arg);
		json_decref(j);
		return ret;
	}
	if (etcd_int(json_object_get(j, "header"), "revision") > c->revision)
		c->revision = etcd_int(json_object_get(j, "header"), "revision");
	*out = j;
	return E_OK;
}

/* The JSON string of s into buf at *o, escaped; buf was sized for the worst case. */
static void
etcd_escape(char *buf, size_t *o, const unsigned char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";

	buf[(*o)++] = '"';
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\') {
			buf[(*o)++] = '\\';
			buf[(*o)++] = (char)s[i];
		} else if (s[i] < 0x20) {
			memcpy(buf + *o, "\\u00", 4);
			*o += 4;
			buf[(*o)++] = hex[s[i] >> 4];
			buf[(*o)++] = hex[s[i] & 15];
		} else
			buf[(*o)++] = (char)s[i];
	}
	buf[(*o)++] = '"';
}

/* A token for the user, from endpoint ep. The body holds the password: guarded memory. */
static int
etcd_auth(struct etcd *c, size_t ep, int64_t left_ms, int64_t connect_ms, struct error *e)
{
	size_t ulen = strlen(c->user), cap = 32 + 6 * (ulen + c->password_len), o = 0;
	char *body = sodium_malloc(cap);
	int (*on_line)(struct etcd *, json_t *, void *) = c->on_line;
	json_t *j = NULL;
	int rc;

	if (body == NULL)
		return util_error(e, E_NOMEM, "etcd: no memory for the password");
	memcpy(body + o, "{\"name\":", 8), o += 8;
	etcd_escape(body, &o, (const unsigned char *)c->user, ulen);
	memcpy(body + o, ",\"password\":", 12), o += 12;
	etcd_escape(body, &o, c->password, c->password_len);
	memcpy(body + o, "}", 2);
	/* Authentication may come in the middle of a watch: its answer is not the stream's. */
	c->on_line = NULL;
	rc = etcd_once(c, ep, "/v3/auth/authenticate", body, left_ms, connect_ms, 0, &j, e);
	c->on_line = on_line;
	/* curl may keep a pointer to POSTFIELDS until the next request: point it elsewhere. */
	curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, "");
	sodium_free(body);
	if (rc != E_OK)
		return rc == ETCD_UNAUTH ? (e->code = E_INVAL) : rc;
	if (json_string_value(json_object_get(j, "token")) == NULL) {
		json_decref(j);
		return util_error(e, E_INVAL, "etcd %s: authentication answered without a token",
		    c->endpoints.v[ep]);
	}
	free(c->token);
	c->token = util_xstrdup(json_string_value(json_object_get(j, "token")));
	json_decref(j);
	curl_slist_free_all(c->headers);
	{
		char *h = util_xasprintf("Authorization: %s", c->token);

		c->headers = curl_slist_append(curl_slist_append(NULL, ETCD_HASLEADER), h);
		sodium_memzero(h, strlen(h));
		free(h);
	}
	return E_OK;
}

/*
 * After a call that waits in etcd ran to its time with not a byte from endpoint ep: was it
 * waiting, or is ep gone (a partition, a proxy that accepts and never answers, a member
 * without a quorum)? A quick linearizable read of one key tells. One that fails moves the
 * next call to the next endpoint; without that, a campaign would wait on a dead member for
 * ever, while its key, made there before the partition and kept alive by this node's
 * renewals elsewhere, holds off every other node's campaign.
 */
static void
etcd_probe(struct etcd *c, size_t ep)
{
	int (*on_line)(struct etcd *, json_t *, void *) = c->on_line;
	int64_t ms = c->timeout_ms < 1000 ? c->timeout_ms : 1000;
	struct error e;
	json_t *j = NULL;
	int rc;

	c->on_line = NULL;
	rc = etcd_once(c, ep, "/v3/kv/range", "{\"key\":\"AA==\",\"count_only\":true}", ms, ms,
	    c->token != NULL, &j, &e);
	c->on_line = on_line;
	json_decref(j);
	if ((rc == ETCD_TRANSIENT || rc == E_TIMEOUT) && c->cur == ep)
		c->cur = (ep + 1) % c->endpoints.n;
}

/*
 * body to path on the endpoints in turn, from the one that answered last, by the deadline.
 * A quick call gives each endpoint a share of what is left, so one that accepts and then
 * never answers (a stopped process, a partition) leaves time for the others; a call that
 * waits in etcd (a lock, a campaign) or streams (a watch) gives each attempt all of it, and
 * one that ran to its time unanswered has its endpoint probed (etcd_probe).
 */
int
etcd_request(struct etcd *c, const char *path, json_t *body, int64_t timeout_ms, int quick,
    json_t **out, struct error *e)
{
	char *text = json_dumps(body, JSON_COMPACT);
	int64_t deadline = util_mono_ms() + timeout_ms;
	size_t n = c->endpoints.n, tried = 0;
	struct error last = { 0 };
	int reauthed = 0, rc = ETCD_TRANSIENT, silent = -1;

	json_decref(body);
	if (out != NULL)
		*out = NULL;
	while (tried < n) {
		size_t ep = (c->cur + tried) % n;
		int64_t left = deadline - util_mono_ms(), connect, attempt;
		json_t *j = NULL;

		if (left <= 0) {
			rc = E_TIMEOUT;
			break;
		}
		/*
		 * A blackholed endpoint must not eat the whole deadline: share it out, half of it
		 * to the first (the one that answered last), so that a lease's renewal in a ttl's
		 * third still reaches a second member when the first is cut off.
		 */
		connect = left / (int64_t)(n - tried);
		if (tried == 0 && n > 1 && connect < left / 2)
			connect = left / 2;
		if (connect < 100)
			connect = left < 100 ? left : 100;
		attempt = quick ? connect : left;
		if (c->user != NULL && c->token == NULL &&
		    (rc = etcd_auth(c, ep, left, connect, &last)) != E_OK) {
			if (rc != ETCD_TRANSIENT && rc != E_TIMEOUT)
				break;
			tried++;
			continue;
		}
		rc = etcd_once(c, ep, path, text, attempt, connect, c->token != NULL, &j, &last);
		if (ep == c->cur && !quick && rc == E_TIMEOUT && c->len == 0 && c->lines == 0)
			silent = (int)ep;
		if (rc == ETCD_UNAUTH && c->user != NULL && !reauthed) {
			reauthed = 1;
			free(c->token);
			c->token = NULL;
			continue;
		}
		if (rc == ETCD_TRANSIENT || (rc == E_TIMEOUT && util_mono_ms() < deadline)) {
			tried++;
			continue;
		}
		if (rc != E_STOPPED)
			c->cur = ep;
		if (out != NULL)
			*out = j;
		else
			json_decref(j);
		break;
	}
	free(text);
	if (rc == E_OK)
		return E_OK;
	if (rc == E_TIMEOUT && silent >= 0)
		etcd_probe(c, (size_t)silent);
	if (rc == ETCD_UNAUTH)
		rc = E_INVAL;
	if (rc == ETCD_TRANSIENT || rc == E_TIMEOUT)
		return util_error(e, rc == ETCD_TRANSIENT ? E_SYS : E_TIMEOUT,
		    "no etcd endpoint answered%s (last: %s)",
		    rc == E_TIMEOUT ? " in time" : "", last.msg[0] ? last.msg : "none tried");
	if (last.msg[0] != '\0')
		util_strlcpy(e->msg, last.msg, sizeof(e->msg));
	e->code = rc;
	return rc;
}

int
etcd_call(struct etcd *c, const char *path, json_t *body, json_t **out, struct error *e)
{
	return etcd_request(c, path, body, c->timeout_ms, 1, out, e);
}

/* ---- the client ---- */

int
etcd_open(struct etcd **out, const struct etcd_conf *conf, struct error *e)
{
	struct etcd *c;

	*out = NULL;
	if (conf->endpoints == NULL || conf->endpoints->n == 0)
		return util_error(e, E_CONFIG, "etcd: no endpoint");
	if ((conf->cert_file == NULL) != (conf->key_file == NULL))
		return util_error(e, E_CONFIG, "etcd: cert_file and key_file go together");
	c = util_xcalloc(1, sizeof(*c));
	if ((c->curl = curl_easy_init()) == NULL) {
		free(c);
		return util_error(e, E_NOMEM, "etcd: curl_easy_init failed");
	}
	for (size_t i = 0; i < conf->endpoints->n; i++) {
		const char *ep = conf->endpoints->v[i];
		size_t len = strlen(ep);

		/* Paths are appended: one trailing slash would make "//v3/...". */
		util_strv_push(&c->endpoints, ep);
		if (len > 0 && ep[len - 1] == '/')
			c->endpoints.v[i][len - 1] = '\0';
	}
	c->timeout_ms = conf->timeout_ms > 0 ? conf->timeout_ms : 5000;
	c->stop = conf->stop;
	if (conf->user != NULL) {
		int rc;

		c->user = util_xstrdup(conf->user);
		if (conf->password_file == NULL) {
			etcd_close(c);
			return util_error(e, E_CONFIG, "etcd: user %s needs a password_file",
			    conf->user);
		}
		if ((rc = secret_read(conf->password_file, &c->password, &c->password_len,
		    e)) != E_OK) {
			etcd_close(c);
			return rc;
		}
		/* A trailing newline is how an editor saves a file, not part of the password. */
		while (c->password_len > 0 && (c->password[c->password_len - 1] == '\n' ||
		    c->password[c->password_len - 1] == '\r'))
			c->password_len--;
	}
	c->lead = curl_slist_append(NULL, ETCD_HASLEADER);
	curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c->curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c->curl, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "deployd/" PACKAGE_VERSION " (fleet)");
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, etcd_receive);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, etcd_progress);
	curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, c);
	curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->curl_err);
	curl_easy_setopt(c->curl, CURLOPT_TCP_KEEPALIVE, 1L);
	/* Over TLS curl would offer HTTP/2, which etcd's port hands to gRPC, not the gateway. */
	curl_easy_setopt(c->curl, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	if (conf->ca_file != NULL)
		curl_easy_setopt(c->curl, CURLOPT_CAINFO, conf->ca_file);
	if (conf->cert_file != NULL) {
		curl_easy_setopt(c->curl, CURLOPT_SSLCERT, conf->cert_file);
		curl_easy_setopt(c->curl, CURLOPT_SSLKEY, conf->key_file);
	}
	*out = c;
	return E_OK;
}

void
etcd_close(struct etcd *c)
{
	if (c == NULL)
		return;
	if (c->curl != NULL)
		curl_easy_cleanup(c->curl);
	util_strv_free(&c->endpoints);
	free(c->user);
	if (c->password != NULL)
		secret_free(c->password, c->password_len);
	if (c->token != NULL) {
		sodium_memzero(c->token, strlen(c->token));
		free(c->token);
	}
	curl_slist_free_all(c->headers);
	curl_slist_free_all(c->lead);
	free(c->buf);
	free(c);
}

const char *
etcd_endpoint(const struct etcd *c)
{
	return c->endpoints.v[c->cur];
}

int64_t
etcd_revision(const struct etcd *c)
{
	return c->revision;
}

void
etcd_set_cancel(struct etcd *c, const int *flag)
{
	c->cancel = flag;
}

/* ---- watches ---- */

struct etcd_watch_ctx {
	int64_t		*rev;
	etcd_watch_fn	 fn;
	void		*arg;
	struct error	*e;
	int		 rc;		/* why the stream was ended: the reader's or the store's */
	size_t		 delivered;	/* events handed to fn in this call */
};

/*
 * The stream must end without a retry of the same request, which would start again from
 * the revision it began at and hand over events twice; the caller resumes from *rev. A
 * token that expired is dropped, so that the next call authenticates first.
 */
static int
etcd_watch_resume(struct etcd *c, struct etcd_watch_ctx *w, int why)
{
	if (why == ETCD_UNAUTH && c->token != NULL) {
		sodium_memzero(c->token, strlen(c->token));
		free(c->token);
		c->token = NULL;
	}
	w->rc = E_OK;
	return ETCD_ENDED;
}

static int
etcd_watch_line(struct etcd *c, json_t *line, void *arg)
{
	struct etcd_watch_ctx *w = arg;
	json_t *res = json_object_get(line, "result"), *events, *ev;
	size_t i;

	if (res == NULL) {
		int rc = etcd_answer_error(c, c->cur, "/v3/watch", line, 200, w->e);

		/* Before any event, etcd_request may retry (another endpoint, a new token). */
		if (w->delivered > 0 && (rc == ETCD_TRANSIENT || rc == ETCD_UNAUTH))
			return etcd_watch_resume(c, w, rc);
		return rc;
	}
	if (json_is_true(json_object_get(res, "canceled"))) {
		int64_t compact = etcd_int(res, "compact_revision");
		const char *why = json_string_value(json_object_get(res, "cancel_reason"));

		/* etcd 3.4 checks a watcher's token again at each event, and cancels the
		 * watch once the token has expired. */
		if (why != NULL && (strstr(why, "user name is empty") != NULL ||
		    strstr(why, "auth token") != NULL))
			return etcd_watch_resume(c, w, ETCD_UNAUTH);
		if (compact > 0) {
			/* What we wanted from is gone: the caller re-reads, then watches on. */
			*w->rev = compact;
			w->rc = util_error(w->e, E_STALE, "etcd: revisions before %lld were "
			    "compacted", (long long)compact);
		} else
			w->rc = util_error(w->e, E_INVAL, "etcd: watch canceled: %s",
			    why != NULL ? why : "no reason given");
		return ETCD_ENDED;
	}
	events = json_object_get(res, "events");
	json_array_foreach(events, i, ev) {
		struct etcd_kv kv;
		struct etcd_event event;
		int rc;

		etcd_read_kv(json_object_get(ev, "kv"), &kv);
		event.type = json_is_string(json_object_get(ev, "type")) &&
		    strcmp(json_string_value(json_object_get(ev, "type")), "DELETE") == 0 ?
		    ETCD_DELETE : ETCD_PUT;
		event.kv = &kv;
		rc = w->fn(w->arg, &event);
		w->delivered++;
		if (kv.mod_rev >= *w->rev)
			*w->rev = kv.mod_rev + 1;
		etcd_kv_free(&kv);
		if (rc != 0) {
			w->rc = rc;
			return ETCD_ENDED;
		}
	}
	return 0;
}

/*
 * Events on key (or every key under it) from revision *rev on, for at most max_ms; *rev
 * moves past each event delivered, so a watch that ends for any reason resumes where it
 * stopped and misses nothing. E_STALE: *rev was compacted away; read the keys again and
 * watch on from the revision that read returns.
 */
int
etcd_watch(struct etcd *c, const char *key, int prefix, int64_t *rev, int64_t max_ms,
    etcd_watch_fn fn, void *arg, struct error *e)
{
	json_t *req = json_object();
	struct error werr = { 0 };
	struct etcd_watch_ctx w = { rev, fn, arg, &werr, 0, 0 };
	int rc;

	etcd_set_key(req, key, prefix);
	if (*rev > 0)
		json_object_set_new(req, "start_revision", etcd_jint(*rev));
	c->on_line = etcd_watch_line;
	c->line_arg = &w;
	rc = etcd_request(c, "/v3/watch", json_pack("{s:o}", "create_request", req), max_ms, 0,
	    NULL, e);
	c->on_line = NULL;
	c->line_arg = NULL;
	if (rc != ETCD_ENDED)
		return rc;
	if (werr.code != E_OK)
		*e = werr;
	return w.rc;
}
