/* cmd.c: the subcommands that ask the daemon: status, deploy, rollback, pause, resume, releases, reload. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/deployd.h"

static const char *
cmd_str(json_t *o, const char *key, const char *dflt)
{
	json_t *v = json_object_get(o, key);

	return json_is_string(v) ? json_string_value(v) : dflt;
}

/* "2026-11-25T22:43:29Z" as "5m ago" when recent, else the date. */
static void
cmd_ago(const char *iso, char *buf, size_t len)
{
	struct tm tm;
	time_t t;
	char d[32];

	memset(&tm, 0, sizeof(tm));
	if (iso == NULL || strptime(iso, "%Y-%m-%dT%H:%M:%SZ", &tm) == NULL) {
		util_strlcpy(buf, "-", len);
		return;
	}
	t = timegm(&tm);
	if (t > time(NULL) && util_format_duration((int64_t)(t - time(NULL)) * 1000, d,
	    sizeof(d)) == E_OK)
		snprintf(buf, len, "in %s", d);
	else if (t == time(NULL))
		util_strlcpy(buf, "now", len);
	else if (util_format_duration((int64_t)(time(NULL) - t) * 1000, d, sizeof(d)) == E_OK)
		snprintf(buf, len, "%s ago", d);
	else
		util_strlcpy(buf, iso, len);
}

/* One table row; the name column is as wide as the longest name, so 50 sites line up. */
#define CMD_ROW "%-*s %-10s %-12s %-30s %-12s %-17s %-10s %s\n"
static void
cmd_status_row(json_t *s, int namew)
{
	char deployed[48], next[48], commit[13], err[80], trig[32];
	const char *c = cmd_str(s, "commit", "-");
	const char *prov = cmd_str(s, "trigger_provider", NULL);
	json_t *paused = json_object_get(s, "paused");

	util_strlcpy(commit, c, sizeof(commit));
	/* "webhook:github": the JSON has the delivery id too. */
	snprintf(trig, sizeof(trig), "%s%s%s", cmd_str(s, "trigger", "-"),
	    prov != NULL ? ":" : "", prov != NULL ? prov : "");
	cmd_ago(cmd_str(s, "deployed_at", NULL), deployed, sizeof(deployed));
	cmd_ago(cmd_str(s, "next_poll_at", NULL), next, sizeof(next));
	util_sanitize(cmd_str(s, "last_error", "-"), err, sizeof(err));
	printf(CMD_ROW, namew, cmd_str(s, "name", "?"),
	    json_is_true(paused) ? "paused" : cmd_str(s, "state", "?"), commit,
	    cmd_str(s, "release", "-"), deployed, trig, next, err);
}

static int64_t
cmd_int(json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

/* "fleet: node web-1 in aws, coordinator web-2, store reachable" */
static void
cmd_fleet_line(json_t *f)
{
	char zone[64], coord[64], err[200];

	if (f == NULL)
		return;
	util_sanitize(cmd_str(f, "zone", ""), zone, sizeof(zone));
	util_sanitize(cmd_str(f, "coordinator", "none"), coord, sizeof(coord));
	util_sanitize(cmd_str(f, "store_error", ""), err, sizeof(err));
	printf("\nfleet: node %s%s%s, coordinator %s, store %s%s%s\n", cmd_str(f, "node", "?"),
	    zone[0] ? " in " : "", zone, coord, json_is_true(json_object_get(f,
	    "store_reachable")) ? "reachable" : "UNREACHABLE", err[0] ? ": " : "", err);
}

static void
cmd_commit12(json_t *o, const char *key, char buf[13])
{
	util_strlcpy(buf, cmd_str(o, key, "-")[0] ? cmd_str(o, key, "-") : "-", 13);
}

/* status --fleet: a line per site, then a row per node. */
static int
cmd_status_fleet(struct cli *cli)
{
	json_t *v, *s, *n, *t, *c;
	char live[13], prep[13], tc[13], cc[13], err[80], zone[24], swapped[32], why[200];
	size_t i, j;
	int status, rc;

	if ((rc = client_call(cli, "GET", "/v1/fleet", NULL, &v, &status)) != 0)
		return rc;
	if (cli->json) {
		json_dumpf(v, stdout, JSON_INDENT(2));
		printf("\n");
		json_decref(v);
		return 0;
	}
	util_sanitize(json_is_true(json_object_get(json_object_get(v, "store"),
	    "reachable")) ? "reachable" : cmd_str(json_object_get(v, "store"), "error",
	    "unreachable"), why, sizeof(why));
	printf("node %s, coordinator %s, store %s\n", cmd_str(v, "node", "?"),
	    cmd_str(v, "coordinator", "none"), why);
	json_array_foreach(json_object_get(v, "sites"), i, s) {
		t = json_object_get(s, "target");
		c = json_object_get(s, "cutover");
		cmd_commit12(t, "commit", tc);
		cmd_commit12(c, "commit", cc);
		printf("\nsite %s: target %s (generation %lld, %s), cutover %s (generation %lld)",
		    cmd_str(s, "name", "?"), tc, (long long)cmd_int(t, "gen"),
		    cmd_str(t, "why", "-"), cc, (long long)cmd_int(c, "gen"));
		if (json_is_integer(json_object_get(s, "skew_ms")))
			printf(", skew %lld ms", (long long)cmd_int(s, "skew_ms"));
		if (json_is_object(json_object_get(s, "paused")))
			printf(", PAUSED");
		printf("\n");
		if (cmd_str(t, "failed", NULL) != NULL) {
			util_sanitize(cmd_str(t, "failed", ""), why, sizeof(why));
			printf("  no cutover: %s\n", why);
		}
		if (cmd_str(s, "refused", NULL) != NULL) {
			util_sanitize(cmd_str(s, "refused", ""), why, sizeof(why));
			printf("  this node: %s\n", why);
		}
		printf("  %-16s %-14s %-12s %-12s %-12s %-8s %s\n", "NODE", "ZONE", "STATE",
		    "LIVE", "PREPARED", "SWAP-GEN", "LAST-ERROR");
		json_array_foreach(json_object_get(s, "nodes"), j, n) {
			cmd_commit12(n, "live", live);
			cmd_commit12(n, "prepared", prep);
			util_sanitize(cmd_str(n, "zone", "-")[0] ? cmd_str(n, "zone", "-") : "-",
			    zone, sizeof(zone));
			util_sanitize(cmd_str(n, "error", "-")[0] ? cmd_str(n, "error", "-") : "-",
			    err, sizeof(err));
			snprintf(swapped, sizeof(swapped), "%lld", (long long)cmd_int(n,
			    "swapped_gen"));
			printf("  %-16s %-14s %-12s %-12s %-12s %-8s %s\n", cmd_str(n, "node", "?"),
			    zone, json_is_true(json_object_get(n, "alive")) ? cmd_str(n, "state",
			    "?") : "gone", live, prep, swapped, err);
		}
	}
	json_decref(v);
	return 0;
}

int
cmd_status(struct cli *cli)
{
	json_t *answer, *sites, *s;
	char path[128];
	size_t i;
	int status, rc, namew = 8;

	if (cli->fleet)
		return cmd_status_fleet(cli);
	if (cli->nargs == 1) {
		if (!config_value_name(cli->args[0])) {
			fprintf(stderr, "deployd: '%s' is not a site name\n", cli->args[0]);
			return 2;
		}
		snprintf(path, sizeof(path), "/v1/sites/%s", cli->args[0]);
	} else
		util_strlcpy(path, "/v1/sites", sizeof(path));
	if ((rc = client_call(cli, "GET", path, NULL, &answer, &status)) != 0)
		return rc;
	if (cli->json) {
		json_t *out = answer;

		json_dumpf(out, stdout, JSON_INDENT(2));
		printf("\n");
		json_decref(answer);
		return 0;
	}
	if (cli->nargs == 1) {
		sites = json_array();
		json_array_append(sites, answer);
	} else
		sites = json_incref(json_object_get(answer, "sites"));
	json_array_foreach(sites, i, s)
		if ((int)strlen(cmd_str(s, "name", "?")) > namew)
			namew = (int)strlen(cmd_str(s, "name", "?"));
	printf(CMD_ROW, namew, "SITE", "STATE", "COMMIT", "RELEASE", "DEPLOYED", "TRIGGER",
	    "NEXT-POLL", "LAST-ERROR");
	json_array_foreach(sites, i, s)
		cmd_status_row(s, namew);
	json_decref(sites);
	cmd_fleet_line(json_object_get(answer, "fleet"));
	if (cli->nargs == 1) {
		const char *subject = cmd_str(answer, "subject", NULL);

		if (subject != NULL) {
			char safe[256];

			util_sanitize(subject, safe, sizeof(safe));
			printf("\ncommit %s  %s\n", cmd_str(answer, "commit", "-"), safe);
		}
		if (cmd_str(answer, "note", NULL) != NULL) {
			char safe[NOTE_MAX];

			util_sanitize(cmd_str(answer, "note", ""), safe, sizeof(safe));
			printf("note: %s\n", safe);
		}
	}
	json_decref(answer);
	return 0;
}

/* 1536 as "1.5 KiB": progress lines stay short. */
static void
cmd_bytes(int64_t n, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	size_t u = 0;

	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%lld B", (long long)n);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
}

/* "fetching 120/400 objects, 1.2 MiB" or "writing 800/2000 files", from an event's progress. */
static void
cmd_progress(const char *state, json_t *p, int bar, char *buf, size_t len)
{
	int64_t done = 0, total = 0;
	char size[32], meter[24] = "";
	const char *what = NULL;
	int i, fill;

	if (strcmp(state, "fetching") == 0 && cmd_int(p, "objects_total") > 0) {
		done = cmd_int(p, "objects");
		total = cmd_int(p, "objects_total");
		what = "objects";
	} else if (strcmp(state, "writing") == 0 && cmd_int(p, "files_total") > 0) {
		done = cmd_int(p, "files");
		total = cmd_int(p, "files_total");
		what = "files";
	}
	if (what == NULL) {
		util_strlcpy(buf, state, len);
		return;
	}
	if (bar) {
		fill = (int)(done * 20 / total);
		meter[0] = '[';
		for (i = 0; i < 20; i++)
			meter[i + 1] = i < fill ? '#' : '.';
		meter[21] = ']';
		meter[22] = ' ';
		meter[23] = '\0';
	}
	cmd_bytes(cmd_int(p, "bytes"), size, sizeof(size));
	if (strcmp(what, "objects") == 0)
		snprintf(buf, len, "%s %s%lld/%lld objects, %s", state, meter, (long long)done,
		    (long long)total, size);
	else
		snprintf(buf, len, "%s %s%lld/%lld files", state, meter, (long long)done,
		    (long long)total);
}

/* The step's count is full: its last progress line is always worth a line. */
static int
cmd_complete(const char *state, json_t *p)
{
	if (strcmp(state, "fetching") == 0)
		return cmd_int(p, "objects_total") > 0 &&
		    cmd_int(p, "objects") == cmd_int(p, "objects_total");
	if (strcmp(state, "writing") == 0)
		return cmd_int(p, "files_total") > 0 &&
		    cmd_int(p, "files") == cmd_int(p, "files_total");
	return 0;
}

/* The outcome of job id, once an event says it is done; returns the exit code. */
static int
cmd_outcome(const char *site, const char *what, json_t *ev)
{
	const char *commit = cmd_str(ev, "done_commit", "?");
	const char *note = cmd_str(ev, "done_note", NULL);
	char safe[NOTE_MAX];

	if (note != NULL) {
		util_sanitize(note, safe, sizeof(safe));
		note = safe;
	}
	if (!json_is_true(json_object_get(ev, "done_ok"))) {
		fprintf(stderr, "%s: %s failed: %s\n", site, what,
		    cmd_str(ev, "done_error", "unknown error"));
		return 1;
	}
	if (strcmp(what, "deploy") != 0 && strcmp(what, "rollback") != 0)
		printf("%s: %s done\n", site, what);
	else if (json_is_true(json_object_get(ev, "done_changed")))
		printf("%s: %s %.12s is live as %s%s%s\n", site,
		    strcmp(what, "rollback") == 0 ? "rolled back;" : "deployed;", commit,
		    cmd_str(ev, "done_release", "?"), note != NULL ? "; " : "",
		    note != NULL ? note : "");
	else if (note != NULL)
		printf("%s: %s\n", site, note);
	else if (json_is_true(json_object_get(ev, "paused")) && commit[0] == '?')
		printf("%s: paused, nothing deployed (`deployd resume %s` resumes)\n", site, site);
	else
		printf("%s: already up to date at %.12s\n", site, commit);
	return 0;
}

/* What the --wait display remembers between events. */
struct cmd_watch {
	const char	*site;
	const char	*what;		/* "deploy", "rollback": for the messages */
	int64_t		 id;
	int		 tty;
	int64_t		 start;		/* monotonic ms */
	int64_t		 last_line;	/* monotonic ms of the last progress line */
	char		 state[32];
	char		 shown[160];	/* the last progress line printed */
};

/*
 * One event of the stream. On a terminal: one line rewritten in place with a progress bar.
 * Otherwise: a line per state, progress lines at most once a second, and each step's last.
 */
static void
cmd_show(struct cmd_watch *w, json_t *ev)
{
	char text[160], el[32];
	const char *state;
	json_t *p = json_object_get(ev, "progress");
	int64_t now = util_mono_ms();

	state = cmd_int(ev, "running_id") == w->id ? cmd_str(ev, "state", "?") :
	    "queued";
	cmd_progress(state, p, w->tty, text, sizeof(text));
	if (w->tty) {
		util_format_duration(now - w->start, el, sizeof(el));
		printf("\r\033[K%s: %s ... %s", w->site, text, el);
		fflush(stdout);
	} else if (strcmp(state, w->state) != 0 || (strcmp(text, w->shown) != 0 &&
	    (now - w->last_line >= 1000 || cmd_complete(state, p)))) {
		printf("%s: %s\n", w->site, text);
		fflush(stdout);
		util_strlcpy(w->shown, text, sizeof(w->shown));
		w->last_line = now;
	}
	util_strlcpy(w->state, state, sizeof(w->state));
}

/* One line of the events stream: progress, or the outcome of the job (an exit code). */
static int
cmd_wait_line(void *arg, char *line)
{
	struct cmd_watch *w = arg;
	json_t *ev;
	int rc = -1;

	if (line == NULL) {
		fprintf(stderr, "%s%s: the daemon stopped before the %s finished\n",
		    w->tty && w->state[0] != '\0' ? "\n" : "", w->site, w->what);
		return 1;
	}
	if ((ev = json_loads(line, 0, NULL)) == NULL)
		return -1;	/* not an event of ours: skip it */
	if (json_object_get(ev, "error") != NULL) {
		fprintf(stderr, "%s: %s\n", w->site, cmd_str(ev, "error", "?"));
		rc = 1;
	} else if (cmd_int(ev, "done_id") >= w->id) {
		if (w->tty && w->state[0] != '\0')
			printf("\r\033[K");
		rc = cmd_outcome(w->site, w->what, ev);
	} else
		cmd_show(w, ev);
	json_decref(ev);
	return rc;
}

/*
 * Follow the site's events stream until the job that answers request id is done; the
 * daemon sends a line at least every 10 s.
 */
static int
cmd_wait(struct cli *cli, const char *site, int64_t id, const char *what)
{
	struct cmd_watch w = { .site = site, .id = id, .what = what,
	    .tty = isatty(STDOUT_FILENO) };

	w.start = util_mono_ms();
	return client_follow(cli, site, id, cmd_wait_line, &w);
}

/* The fleet's progress line: COMMIT prepared on READY of ALIVE nodes. */
static void
cmd_fleet_ready(const char *site, const char *commit, size_t ready, size_t alive)
{
	printf("%s: %.12s prepared on %zu of %zu node%s\n", site, commit, ready, alive,
	    alive == 1 ? "" : "s");
	fflush(stdout);
}

/*
 * A fleet took the job: say so; with --wait, follow the fleet until a cutover of a newer
 * generation than the one live when asked has gone live on every node that is up.
 */
static int
cmd_fleet_job(struct cli *cli, const char *site, const char *action, json_t *answer)
{
	json_t *v, *s, *n;
	char path[128], msg[256];
	int64_t base = cmd_int(answer, "gen"), t0 = util_mono_ms(), gen, tgen;
	size_t i, alive, live, ready, said_ready = SIZE_MAX, said_alive = 0;
	const char *tc;
	int status, rc;

	util_sanitize(cmd_str(answer, "message", ""), msg, sizeof(msg));
	printf("%s: %s: %s\n", site, action, msg);
	if (!cli->wait || (strcmp(action, "deploy") != 0 && strcmp(action, "rollback") != 0))
		return 0;
	snprintf(path, sizeof(path), "/v1/fleet");
	while (util_mono_ms() - t0 < 15 * 60 * 1000) {
		if ((rc = client_call(cli, "GET", path, NULL, &v, &status)) != 0)
			return rc;
		s = NULL;
		json_array_foreach(json_object_get(v, "sites"), i, n)
			if (strcmp(cmd_str(n, "name", ""), site) == 0)
				s = n;
		gen = cmd_int(json_object_get(s, "cutover"), "gen");
		tgen = cmd_int(json_object_get(s, "target"), "gen");
		alive = live = ready = 0;
		tc = cmd_str(json_object_get(s, "target"), "commit", "");
		json_array_foreach(json_object_get(s, "nodes"), i, n) {
			if (!json_is_true(json_object_get(n, "alive")))
				continue;
			alive++;
			live += cmd_int(n, "live_gen") == gen;
			ready += tc[0] != '\0' && (strcmp(cmd_str(n, "prepared", ""), tc) == 0 ||
			    strcmp(cmd_str(n, "live", ""), tc) == 0);
		}
		/* The fleet's progress, each time it moves: prepared out of live nodes. */
		if (tgen > base && tgen > gen && (ready != said_ready || alive != said_alive)) {
			cmd_fleet_ready(site, tc, ready, alive);
			said_ready = ready;
			said_alive = alive;
		}
		if (cmd_str(json_object_get(s, "target"), "failed", NULL) != NULL && tgen > gen) {
			util_sanitize(cmd_str(json_object_get(s, "target"), "failed", ""), msg,
			    sizeof(msg));
			fprintf(stderr, "%s: the fleet did not cut over: %s\n", site, msg);
			json_decref(v);
			return 1;
		}
		/* Nothing new after a few seconds: the remote's tip was the fleet's already. */
		if ((gen > base || (tgen <= base && util_mono_ms() - t0 > 3000)) &&
		    tgen <= gen && alive > 0 && live == alive) {
			/* A cutover quicker than a poll: every node it went live on prepared it. */
			if (gen > base && said_ready == SIZE_MAX)
				cmd_fleet_ready(site, cmd_str(json_object_get(s, "cutover"),
				    "commit", "?"), live, alive);
			printf("%s: %.12s live on %zu node%s (cutover %lld)\n", site,
			    cmd_str(json_object_get(s, "cutover"), "commit", "?"), live,
			    live == 1 ? "" : "s", (long long)gen);
			json_decref(v);
			return 0;
		}
		json_decref(v);
		usleep(100 * 1000);
	}
	fprintf(stderr, "%s: gave up waiting for the fleet\n", site);
	return 1;
}

/* POST a job for SITE, then report it or wait for it. */
static int
cmd_job(struct cli *cli, const char *site, const char *action, const char *body)
{
	json_t *answer;
	char path[128];
	int64_t id;
	int status, rc;

	if (!config_value_name(site)) {
		fprintf(stderr, "deployd: '%s' is not a site name\n", site);
		return 2;
	}
	snprintf(path, sizeof(path), "/v1/sites/%s/%s", site, action);
	if ((rc = client_call(cli, "POST", path, body, &answer, &status)) != 0)
		return rc;
	if (json_is_true(json_object_get(answer, "fleet"))) {
		rc = cmd_fleet_job(cli, site, action, answer);
		json_decref(answer);
		return rc;
	}
	id = json_integer_value(json_object_get(answer, "id"));
	json_decref(answer);
	if (!cli->wait) {
		printf("%s: %s queued (request %lld)\n", site, action, (long long)id);
		return 0;
	}
	return cmd_wait(cli, site, id, action);
}

int
cmd_deploy(struct cli *cli)
{
	json_t *body = json_object();
	char *text;
	int rc;

	if (cli->rev != NULL)
		json_object_set_new(body, "rev", json_string(cli->rev));
	text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	rc = cmd_job(cli, cli->args[0], "deploy", text);
	free(text);
	return rc;
}

/* Rollback, pause and resume wait for their result: they are quick, and scripts need it. */
int
cmd_rollback(struct cli *cli)
{
	json_t *body = json_object();
	char *text;
	int rc;

	if (cli->nargs > 1)
		json_object_set_new(body, "release", json_string(cli->args[1]));
	text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	cli->wait = 1;
	rc = cmd_job(cli, cli->args[0], "rollback", text);
	free(text);
	return rc;
}

int
cmd_pause(struct cli *cli)
{
	cli->wait = 1;
	return cmd_job(cli, cli->args[0], strcmp(cli->cmd, "pause") == 0 ? "pause" :
	    "resume", "{}");
}

int
cmd_releases(struct cli *cli)
{
	json_t *answer, *arr, *r;
	char path[128], when[32];
	size_t i;
	int status, rc;

	if (!config_value_name(cli->args[0])) {
		fprintf(stderr, "deployd: '%s' is not a site name\n", cli->args[0]);
		return 2;
	}
	snprintf(path, sizeof(path), "/v1/sites/%s/releases", cli->args[0]);
	if ((rc = client_call(cli, "GET", path, NULL, &answer, &status)) != 0)
		return rc;
	if (cli->json) {
		json_dumpf(answer, stdout, JSON_INDENT(2));
		printf("\n");
		json_decref(answer);
		return 0;
	}
	arr = json_object_get(answer, "releases");
	printf("%-32s %-12s %-20s %s\n", "RELEASE", "COMMIT", "ACTIVATED", "MARKS");
	json_array_foreach(arr, i, r) {
		char marks[64];
		int bad = json_is_true(json_object_get(r, "bad"));

		snprintf(marks, sizeof(marks), "%s%s%s%s",
		    json_is_true(json_object_get(r, "current")) ? "current " : "",
		    bad ? "bad " : "",
		    json_is_true(json_object_get(r, "pinned")) ? "pinned " : "",
		    !json_is_true(json_object_get(r, "good")) && !bad ? "unrecorded " : "");
		util_strlcpy(when, cmd_str(r, "activated_at", "-"), sizeof(when));
		printf("%-32s %-12.12s %-20s %s\n", cmd_str(r, "name", "?"),
		    cmd_str(r, "commit", "?"), when, marks);
	}
	json_decref(answer);
	return 0;
}

int
cmd_reload(struct cli *cli)
{
	json_t *answer;
	int status, rc;

	if ((rc = client_call(cli, "POST", "/v1/reload", "{}", &answer, &status)) != 0)
		return rc;
	json_decref(answer);
	printf("deployd: reloading the configuration\n");
	return 0;
}
