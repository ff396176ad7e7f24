/* view.c: the listener's view of the sites, which the daemon keeps current, and the pushes it answers from it. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "server/deployd.h"

/*
 * The daemon remembers PRIVSEP_MSG_SEEN_MAX (256) deliveries a site; remembering more here
 * only means asking about a few that the daemon has forgotten.
 */
#define VIEW_SEEN_MAX	512

struct view_site {
	char		 name[PRIVSEP_SITE_MAX];
	int		 known;		/* a view came: answer from it */
	struct privsep_view v;
	int		 asking;	/* pushes sent to the daemon and not yet answered */
	int		 queued;	/* one was queued since the last view: busy */
	uint64_t	*seen;		/* VIEW_SEEN_MAX delivery hashes, a ring */
	size_t		 seen_next;
};

static struct {
	pthread_mutex_t	 mu;	/* everything below; held for a few compares at most */
	struct view_site *sites;
	size_t		 n;
} V = { .mu = PTHREAD_MUTEX_INITIALIZER };

/*
 * FNV-1a over "provider\0delivery". A collision only makes the listener ask the daemon,
 * which compares the whole ids; nobody gains by forging one.
 */
uint64_t
view_hash(const char *provider, const char *delivery)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	const unsigned char *p;

	for (p = (const unsigned char *)provider; *p != '\0'; p++)
		h = (h ^ *p) * 0x100000001b3ULL;
	h *= 0x100000001b3ULL;
	for (p = (const unsigned char *)delivery; *p != '\0'; p++)
		h = (h ^ *p) * 0x100000001b3ULL;
	return h;
}

/* The sites of the listener's own configuration; each answers nothing until its view comes. */
void
view_init(const struct config *cfg)
{
	size_t i;

	pthread_mutex_lock(&V.mu);
	V.sites = util_xcalloc(cfg->nsites > 0 ? cfg->nsites : 1, sizeof(*V.sites));
	for (i = 0; i < cfg->nsites; i++)
		util_strlcpy(V.sites[i].name, cfg->sites[i].site.name, sizeof(V.sites[i].name));
	V.n = cfg->nsites;
	pthread_mutex_unlock(&V.mu);
}

void
view_free(void)
{
	size_t i;

	pthread_mutex_lock(&V.mu);
	for (i = 0; i < V.n; i++)
		free(V.sites[i].seen);
	free(V.sites);
	V.sites = NULL;
	V.n = 0;
	pthread_mutex_unlock(&V.mu);
}

/* Call with the mutex held. */
static struct view_site *
view_find(const char *name)
{
	size_t i;

	for (i = 0; i < V.n; i++)
		if (strcmp(V.sites[i].name, name) == 0)
			return &V.sites[i];
	return NULL;
}

/* Call with the mutex held. */
static int
view_seen(const struct view_site *s, uint64_t h)
{
	size_t i;

	if (s->seen == NULL)
		return 0;
	for (i = 0; i < VIEW_SEEN_MAX; i++)
		if (s->seen[i] == h)
			return 1;
	return 0;
}

/* Call with the mutex held. */
static void
view_remember(struct view_site *s, uint64_t h)
{
	if (h == 0 || view_seen(s, h))
		return;
	if (s->seen == NULL)
		s->seen = util_xcalloc(VIEW_SEEN_MAX, sizeof(*s->seen));
	s->seen[s->seen_next] = h;
	s->seen_next = (s->seen_next + 1) % VIEW_SEEN_MAX;
}

/*
 * A view the daemon sent. It reflects every push it answered before it, so a deploy the
 * listener saw queued is in it (or already over).
 */
void
view_update(const struct privsep_view *v)
{
	struct view_site *s;

	pthread_mutex_lock(&V.mu);
	if ((s = view_find(v->site)) != NULL) {
		s->v = *v;
		s->known = 1;
		s->queued = 0;
	}
	pthread_mutex_unlock(&V.mu);
}

void
view_digest(const struct privsep_digest *d)
{
	struct view_site *s;
	size_t i;

	pthread_mutex_lock(&V.mu);
	if ((s = view_find(d->site)) != NULL)
		for (i = 0; i < d->n && i < PRIVSEP_DIGEST_MAX; i++)
			view_remember(s, d->hash[i]);
	pthread_mutex_unlock(&V.mu);
}

static int
view_hex40(const char *s)
{
	return strlen(s) == 40 && strspn(s, "0123456789abcdef") == 40;
}

/*
 * What the daemon would answer to this push, when the view alone can tell: PS_PAUSED for
 * a paused site, PS_LIVE for the live commit with nothing under way, PS_QUEUED when a
 * deploy waits (the push joins it, as the daemon's queue would have it). 0: ask. A delivery
 * the daemon queued a deploy for is always asked about (a duplicate, or a retry of a
 * failed deploy), and so is every push while another is on its way to the daemon.
 */
uint32_t
view_answer(const struct privsep_msg *m)
{
	struct view_site *s;
	uint32_t answer = 0;

	pthread_mutex_lock(&V.mu);
	if ((s = view_find(m->site)) == NULL || !s->known || !s->v.local)
		goto out;
	if (s->v.paused) {
		answer = PS_PAUSED;
		goto out;
	}
	if (m->delivery[0] != '\0' && view_seen(s, view_hash(m->provider, m->delivery)))
		goto out;
	if (!s->v.busy && !s->queued && s->asking == 0 && view_hex40(m->after) &&
	    strcmp(s->v.live, m->after) == 0) {
		answer = PS_LIVE;
	} else if (s->v.waiting) {
		/* It joins the waiting deploy; a repeat of it is asked about. */
		answer = PS_QUEUED;
		if (m->delivery[0] != '\0')
			view_remember(s, view_hash(m->provider, m->delivery));
	}
out:
	pthread_mutex_unlock(&V.mu);
	return answer;
}

void
view_asking(const char *site)
{
	struct view_site *s;

	pthread_mutex_lock(&V.mu);
	if ((s = view_find(site)) != NULL)
		s->asking++;
	pthread_mutex_unlock(&V.mu);
}

/*
 * The daemon's answer to a push, taken in the order of its records (or the ask gave up:
 * answer 0). A queued deploy makes the site busy until the next view says otherwise.
 */
void
view_answered(const struct privsep_msg *m, uint32_t answer)
{
	struct view_site *s;

	pthread_mutex_lock(&V.mu);
	if ((s = view_find(m->site)) != NULL) {
		if (s->asking > 0)
			s->asking--;
		if (answer == PS_QUEUED) {
			s->queued = 1;
			if (m->delivery[0] != '\0')
				view_remember(s, view_hash(m->provider, m->delivery));
		}
	}
	pthread_mutex_unlock(&V.mu);
}
