/* privsep_msg.c: the daemon's answers to the listener's records, every field checked first. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "server/deployd.h"

#define PRIVSEP_MSG_SEEN_MAX	256	/* delivery ids remembered per site */

/* A delivery id the daemon answered, and the deploy it asked for. */
struct privsep_seen {
	char		provider[16];
	char		delivery[HOOK_DELIVERY_MAX];
	int64_t		id;
};

struct privsep_ring {
	char		site[PRIVSEP_SITE_MAX];
	struct privsep_seen seen[PRIVSEP_MSG_SEEN_MAX];
	size_t		next;
};

static struct {
	pthread_mutex_t		 mu;	/* everything below */
	const struct config	*cfg;
	struct privsep_ring	*rings;
	size_t			 nrings;
} M = { .mu = PTHREAD_MUTEX_INITIALIZER };

static int
privsep_msg_terminated(const char *s, size_t size)
{
	return memchr(s, '\0', size) != NULL;
}

/* Printable ASCII only: these end up in logs and deploy history. */
static int
privsep_msg_printable(const char *s)
{
	for (; *s != '\0'; s++)
		if (*s < 0x21 || *s > 0x7e)
			return 0;
	return 1;
}

static int
privsep_msg_hex40(const char *s)
{
	return s[0] == '\0' || (strlen(s) == 40 && strspn(s, "0123456789abcdef") == 40);
}

/* A record from the listener is untrusted: every field is checked before use. */
static int
privsep_msg_valid(const struct privsep_msg *m)
{
	if (!privsep_msg_terminated(m->site, sizeof(m->site)) ||
	    !privsep_msg_terminated(m->provider, sizeof(m->provider)) ||
	    !privsep_msg_terminated(m->delivery, sizeof(m->delivery)) ||
	    !privsep_msg_terminated(m->ref, sizeof(m->ref)) ||
	    !privsep_msg_terminated(m->after, sizeof(m->after)) ||
	    !privsep_msg_terminated(m->result, sizeof(m->result)))
		return 0;
	if (m->type != PS_PUSH && m->type != PS_TOLD && m->type != PS_COUNT &&
	    m->type != PS_ANSWERED)
		return m->type == PS_METRICS || m->type == PS_HELLO;
	/* A count with no site is a refusal before routing (metrics_refused). */
	if ((!config_value_name(m->site) && !(m->type == PS_COUNT && m->site[0] == '\0')) ||
	    (m->provider[0] != '\0' && provider_bit(m->provider) == 0))
		return 0;
	/* The listener answers only "ignored" from its view; anything else it asks. */
	if (m->type == PS_ANSWERED)
		return m->provider[0] != '\0' && strcmp(m->result, "ignored") == 0;
	if (m->type == PS_COUNT)
		return m->result[0] != '\0' &&
		    strspn(m->result, "abcdefghijklmnopqrstuvwxyz_") == strlen(m->result);
	return m->provider[0] != '\0' && privsep_msg_printable(m->delivery) &&
	    privsep_msg_printable(m->ref) && privsep_msg_hex40(m->after);
}

/* Call with the mutex held. */
static struct privsep_ring *
privsep_msg_ring(const char *site)
{
	size_t i;

	for (i = 0; i < M.nrings; i++)
		if (strcmp(M.rings[i].site, site) == 0)
			return &M.rings[i];
	return NULL;
}

/* Call with the mutex held. */
static struct privsep_seen *
privsep_msg_seen(struct privsep_ring *r, const struct privsep_msg *m)
{
	size_t i;

	for (i = 0; i < PRIVSEP_MSG_SEEN_MAX; i++)
		if (r->seen[i].delivery[0] != '\0' &&
		    strcmp(r->seen[i].delivery, m->delivery) == 0 &&
		    strcmp(r->seen[i].provider, m->provider) == 0)
			return &r->seen[i];
	return NULL;
}

/* Remember m's delivery as job id's (the fleet's: 1), so that a redelivery is a duplicate. */
static void
privsep_msg_remember(const struct privsep_msg *m, int64_t id)
{
	struct privsep_ring *r;
	struct privsep_seen *seen;

	if (m->delivery[0] == '\0' || id <= 0)
		return;
	pthread_mutex_lock(&M.mu);
	if ((r = privsep_msg_ring(m->site)) != NULL) {
		if ((seen = privsep_msg_seen(r, m)) == NULL) {
			seen = &r->seen[r->next];
			r->next = (r->next + 1) % PRIVSEP_MSG_SEEN_MAX;
			util_strlcpy(seen->provider, m->provider, sizeof(seen->provider));
			util_strlcpy(seen->delivery, m->delivery, sizeof(seen->delivery));
		}
		seen->id = id;
	}
	pthread_mutex_unlock(&M.mu);
}

/*
 * In a fleet a push rings the fleet's doorbell, for the coordinator to act on. A delivery
 * seen before is a duplicate (the fleet keeps no per-delivery outcome to retry on), and
 * a node cut off from the store says so rather than take a push it cannot pass on.
 */
static uint32_t
privsep_msg_fleet(const struct privsep_msg *m)
{
	struct privsep_ring *r;
	struct privsep_seen *seen;
	int rc;

	if (m->delivery[0] != '\0') {
		pthread_mutex_lock(&M.mu);
		r = privsep_msg_ring(m->site);
		seen = r != NULL ? privsep_msg_seen(r, m) : NULL;
		pthread_mutex_unlock(&M.mu);
		if (seen != NULL)
			return PS_DUPLICATE;
	}
	if (strlen(m->after) == 40 && fleet_is_live(m->site, m->after))
		return PS_LIVE;
	if ((rc = fleet_ring(m->site, m->provider, m->delivery, NULL)) != E_OK)
		return rc == E_NOTFOUND ? PS_UNKNOWN : PS_NOSTORE;
	privsep_msg_remember(m, 1);
	return PS_QUEUED;
}

/*
 * A verified push to the tracked ref: ring the doorbell, unless the site is paused or
 * this delivery already rang for a deploy that is waiting, running or succeeded.
 */
static uint32_t
privsep_msg_push(const struct privsep_msg *m)
{
	struct deploy_request req;
	struct privsep_ring *r;
	struct privsep_seen *seen;
	int64_t id = 0, prev = 0;
	int rc, paused = 0, state;

	sched_note_webhook(m->site);
	if (fleet_on())
		return privsep_msg_fleet(m);
	if (m->delivery[0] != '\0') {
		pthread_mutex_lock(&M.mu);
		if ((r = privsep_msg_ring(m->site)) != NULL &&
		    (seen = privsep_msg_seen(r, m)) != NULL)
			prev = seen->id;
		pthread_mutex_unlock(&M.mu);
	}
	/* A repeat whose deploy waits, runs or succeeded is a duplicate; a failed one rings. */
	state = sched_request_state(m->site, prev, &paused);
	if (paused)
		return PS_PAUSED;
	if (prev > 0 && (state == REQ_WAITING || state == REQ_OK))
		return PS_DUPLICATE;
	/*
	 * A flood, or the webhook of a commit polling already deployed, queues nothing. A
	 * push the listener answered "queued" joined the deploy that has made it live since,
	 * read late: a redelivery of it is that deploy's duplicate.
	 */
	if (strlen(m->after) == 40 && sched_is_live(m->site, m->after, &id)) {
		if (m->type == PS_TOLD)
			privsep_msg_remember(m, id);
		return PS_LIVE;
	}

	memset(&req, 0, sizeof(req));
	req.trigger = TRIG_WEBHOOK;
	util_strlcpy(req.provider, m->provider, sizeof(req.provider));
	util_strlcpy(req.delivery, m->delivery, sizeof(req.delivery));
	if (strlen(m->after) == 40)
		util_strlcpy(req.after, m->after, sizeof(req.after));
	if ((rc = sched_request(m->site, &req, &id)) != E_OK)
		return rc == E_STOPPED ? PS_STOPPING : rc == E_NOTFOUND ? PS_UNKNOWN :
		    PS_UNAVAILABLE;
	privsep_msg_remember(m, id);
	return PS_QUEUED;
}

/* The metric result of a push, by the answer. */
static const char *
privsep_msg_result(uint32_t answer)
{
	static const char *const names[] = {
		[PS_QUEUED] = "queued",
		[PS_DUPLICATE] = "duplicate",
		[PS_PAUSED] = "ignored",
		[PS_LIVE] = "ignored",
	};

	if (answer < sizeof(names) / sizeof(names[0]) && names[answer] != NULL)
		return names[answer];
	return "unavailable";
}

/*
 * Answer one record. *text gets the metrics text for PS_METRICS (malloc'd; a->len is
 * its length). PS_READY and PS_QUIESCED concern the sender and are handled by privsep.c.
 */
int
privsep_msg_handle(const struct privsep_msg *m, struct privsep_reply *a, char **text)
{
	int known;
	size_t len;

	memset(a, 0, sizeof(*a));
	a->kind = PS_K_REPLY;
	a->seq = m->seq;
	if (text != NULL)
		*text = NULL;
	if (!privsep_msg_valid(m)) {
		a->answer = PS_REFUSED;
		return E_INVAL;
	}
	if (m->type == PS_PUSH || m->type == PS_TOLD || m->type == PS_ANSWERED ||
	    (m->type == PS_COUNT && m->site[0] != '\0')) {
		pthread_mutex_lock(&M.mu);
		known = M.cfg != NULL && config_site(M.cfg, m->site) != NULL;
		pthread_mutex_unlock(&M.mu);
		if (!known) {
			a->answer = PS_UNKNOWN;
			return E_OK;
		}
	}
	switch (m->type) {
	case PS_PUSH:
		a->answer = privsep_msg_push(m);
		metrics_webhook(m->site, m->provider, privsep_msg_result(a->answer));
		break;
	case PS_TOLD:
		/*
		 * Answered "queued" already: a deploy was waiting. Should the site have been
		 * paused since, the pause came later and wins; resuming catches up.
		 */
		if ((a->answer = privsep_msg_push(m)) != PS_QUEUED)
			log_debug("site=%s delivery=%s: told queued, now %s", m->site,
			    m->delivery[0] != '\0' ? m->delivery : "-",
			    privsep_msg_result(a->answer));
		metrics_webhook(m->site, m->provider, "queued");
		break;
	case PS_ANSWERED:
		sched_note_webhook(m->site);
		metrics_webhook(m->site, m->provider, m->result);
		break;
	case PS_COUNT:
		if (m->site[0] == '\0')
			metrics_refused(m->result);
		else
			metrics_webhook(m->site, m->provider[0] != '\0' ? m->provider : NULL,
			    m->result);
		break;
	case PS_METRICS:
		if (text == NULL || (*text = metrics_render()) == NULL ||
		    (len = strlen(*text)) > PRIVSEP_METRICS_MAX) {
			if (text != NULL) {
				free(*text);
				*text = NULL;
			}
			a->answer = PS_UNAVAILABLE;
			break;
		}
		a->len = (uint32_t)len;
		break;
	default:
		break;
	}
	return E_OK;
}

/* The delivery ids remembered for site, hashed: what a new listener must ask about. */
size_t
privsep_msg_digest(const char *site, uint64_t *hash, size_t max)
{
	struct privsep_ring *r;
	size_t i, n = 0;

	pthread_mutex_lock(&M.mu);
	if ((r = privsep_msg_ring(site)) != NULL)
		for (i = 0; i < PRIVSEP_MSG_SEEN_MAX && n < max; i++)
			if (r->seen[i].delivery[0] != '\0')
				hash[n++] = view_hash(r->seen[i].provider, r->seen[i].delivery);
	pthread_mutex_unlock(&M.mu);
	return n;
}

/*
 * The sites the records may name, at start-up and on each reload (also in a process with
 * no listener: the fuzz targets). The delivery rings follow the sites; remembered
 * deliveries carry over a reload.
 */
void
privsep_msg_init(const struct config *cfg)
{
	struct privsep_ring *rings, *old;
	size_t i;

	rings = util_xcalloc(cfg->nsites > 0 ? cfg->nsites : 1, sizeof(*rings));
	pthread_mutex_lock(&M.mu);
	for (i = 0; i < cfg->nsites; i++) {
		if ((old = privsep_msg_ring(cfg->sites[i].site.name)) != NULL)
			memcpy(&rings[i], old, sizeof(rings[i]));
		util_strlcpy(rings[i].site, cfg->sites[i].site.name, sizeof(rings[i].site));
	}
	free(M.rings);
	M.rings = rings;
	M.nrings = cfg->nsites;
	M.cfg = cfg;
	pthread_mutex_unlock(&M.mu);
}

/* The daemon stops: forget the sites, and answer PS_UNKNOWN from now on. */
void
privsep_msg_free(void)
{
	pthread_mutex_lock(&M.mu);
	free(M.rings);
	M.rings = NULL;
	M.nrings = 0;
	M.cfg = NULL;
	pthread_mutex_unlock(&M.mu);
}
