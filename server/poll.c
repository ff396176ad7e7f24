/* poll.c: when to poll next: jitter, backoff after failures, and the watch for webhooks that never came. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/deployd.h"

/* Spread polls so a thousand sites do not fetch in the same second: +-10 %. */
int64_t
poll_jitter(int64_t ms)
{
	int64_t span = ms / 5;

	if (span <= 0)
		return ms;
	return ms - span / 2 + (int64_t)(random() % (span + 1));
}

/* After failures, wait twice as long each time, up to 16 polls or 15 minutes. */
int64_t
poll_delay(const struct sched_site *s)
{
	int64_t d = s->cfg->poll_ms, cap = s->cfg->poll_ms * 16;
	int i;

	if (cap > 15 * 60 * 1000)
		cap = s->cfg->poll_ms > 15 * 60 * 1000 ? s->cfg->poll_ms : 15 * 60 * 1000;
	for (i = 0; i < s->failures && d < cap; i++)
		d *= 2;
	if (d > cap)
		d = cap;
	return poll_jitter(d);
}

/*
 * Call with the scheduler's mutex held: backoff bookkeeping and the missed-webhook watch.
 * Returns 1 when the timer must look again (a missed-webhook check was set).
 */
int
poll_after_deploy(struct sched_site *s, const struct deploy_request *req,
    const struct deploy_result *res)
{
	int64_t now = util_mono_ms();

	if (res->rc != E_OK) {
		util_strlcpy(s->last_error, res->error[0] ? res->error : "deploy failed",
		    sizeof(s->last_error));
		s->last_error_at = util_now_ms() / 1000;
		s->failures++;
		if (s->cfg->poll_ms > 0)
			s->next_poll = now + poll_delay(s);
		return 0;
	}
	s->last_error[0] = '\0';
	s->last_error_at = 0;
	if (s->failures > 0 && s->cfg->poll_ms > 0)
		s->next_poll = now + poll_jitter(s->cfg->poll_ms);
	s->failures = 0;
	/*
	 * A poll that found a new tip: a webhook should announce it within the grace
	 * period around now. Judge that later, since the webhook may still be on its way.
	 */
	if (res->changed && req->trigger == TRIG_POLL && s->cfg->secret_file != NULL &&
	    s->cfg->webhook_grace_ms > 0) {
		s->missed_since = util_now_ms() - s->cfg->webhook_grace_ms;
		s->missed_check = now + s->cfg->webhook_grace_ms;
		util_strlcpy(s->missed_commit, res->commit, sizeof(s->missed_commit));
		return 1;
	}
	return 0;
}

/* Call with the scheduler's mutex held, when a site's missed-webhook check is due. */
void
poll_judge_missed(struct sched_site *s)
{
	s->missed_check = 0;
	if (s->last_webhook_at >= s->missed_since)
		return;
	s->missed_count++;
	s->last_missed_at = util_now_ms();
	log_warn("site=%s commit=%.12s webhook missed: polling found this commit and no "
	    "webhook announced it; check the webhook on the git host", s->cfg->site.name,
	    s->missed_commit);
	metrics_webhook_missed(s->cfg->site.name);
}
