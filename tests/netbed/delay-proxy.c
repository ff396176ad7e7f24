/* delay-proxy.c: a TCP relay that delays each direction by a fixed time and can be cut and healed, for the two-clouds test bed (the kernel here has no netem). */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/*
 * usage: delay-proxy -l ADDR:PORT (-t ADDR:PORT | -T) [-d MS]
 * Every byte read from one side is written to the other MS milliseconds later (one way).
 * With -T the target is each connection's original destination, for connections an nftables
 * redirect sent here: the test bed's router relays everything between its clouds that way.
 * SIGUSR1 cuts the link: nothing is read, written or accepted, as if packets were dropped,
 * so peers see silence, not resets; TCP would retransmit, so SIGUSR2 heals it and what was
 * held goes on. The listening port is printed on stdout once it listens (PORT 0: any).
 */

#define MAX_CONNS	256
#define CHUNK		16384
#define MAX_HELD	(4 * 1024 * 1024)	/* per direction: then stop reading */

struct chunk {
	struct chunk	*next;
	int64_t		 due;		/* monotonic us */
	size_t		 len, off;	/* len 0: the sender closed */
	char		 data[];
};

struct dir {
	int		 from, to;
	struct chunk	*head, *tail;
	size_t		 held;
	int		 eof_read;	/* from said EOF: read no more */
};

struct conn {
	int		 used;
	int		 connecting;	/* to the target, until connect_by */
	int64_t		 connect_by;
	struct dir	 d[2];		/* 0: client to target, 1: back */
};

static struct conn conns[MAX_CONNS];
static volatile sig_atomic_t cut_wanted;
static int64_t delay_us = 20000;
static int transparent;

/* Microseconds: a delay counted in whole milliseconds could come out 1 ms short. */
static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
on_signal(int sig)
{
	cut_wanted = sig == SIGUSR1;
}

static int
parse_addr(const char *s, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(s, ':');

	if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)atoi(colon + 1));
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static void
conn_close(struct conn *c)
{
	struct chunk *k;
	int i;

	for (i = 0; i < 2; i++)
		while ((k = c->d[i].head) != NULL) {
			c->d[i].head = k->next;
			free(k);
		}
	close(c->d[0].from);
	close(c->d[0].to);
	memset(c, 0, sizeof(*c));
}

/*
 * A client arrived: start connecting it to the target, without waiting: a cut target is
 * silent, and one slow connect must not hold up every other link.
 */
static void
conn_open(int lfd, const struct sockaddr_in *target)
{
	struct sockaddr_in orig;
	socklen_t len = sizeof(orig);
	struct conn *c = NULL;
	int a, b, one = 1, i;

	if ((a = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
		return;
	if (transparent) {
		if (getsockopt(a, SOL_IP, SO_ORIGINAL_DST, &orig, &len) != 0) {
			close(a);
			return;
		}
		target = &orig;
	}
	for (i = 0; i < MAX_CONNS && c == NULL; i++)
		if (!conns[i].used)
			c = &conns[i];
	b = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c == NULL || b < 0 || (connect(b, (const struct sockaddr *)target,
	    sizeof(*target)) != 0 && errno != EINPROGRESS)) {
		close(a);
		if (b >= 0)
			close(b);
		return;
	}
	/* The delay is ours to add: Nagle would add its own. */
	setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	fcntl(a, F_SETFL, O_NONBLOCK);
	c->used = 1;
	c->connecting = 1;
	c->connect_by = now_us() + 2000000;
	c->d[0].from = c->d[1].to = a;
	c->d[0].to = c->d[1].from = b;
}

/* Read what there is into a chunk due one delay from now. -1: the connection is over. */
static int
dir_read(struct dir *d)
{
	struct chunk *k = malloc(sizeof(*k) + CHUNK);
	ssize_t n;

	if (k == NULL)
		return -1;
	n = read(d->from, k->data, CHUNK);
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		free(k);
		return 0;
	}
	if (n < 0) {
		free(k);
		return -1;
	}
	k->next = NULL;
	k->due = now_us() + delay_us;
	k->len = (size_t)n;
	k->off = 0;
	d->eof_read = n == 0;
	d->held += (size_t)n;
	if (d->tail != NULL)
		d->tail->next = k;
	else
		d->head = k;
	d->tail = k;
	return 0;
}

/* Deliver the chunks that are due. -1: the connection is over. */
static int
dir_write(struct dir *d, int64_t now)
{
	struct chunk *k;
	ssize_t n;

	while ((k = d->head) != NULL && k->due <= now) {
		if (k->len == 0) {
			/* The sender's EOF, passed on as late as its data. */
			shutdown(d->to, SHUT_WR);
		} else {
			n = write(d->to, k->data + k->off, k->len - k->off);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				return 0;
			if (n < 0)
				return -1;
			k->off += (size_t)n;
			if (k->off < k->len)
				return 0;
			d->held -= k->len;
		}
		if ((d->head = k->next) == NULL)
			d->tail = NULL;
		free(k);
	}
	return 0;
}

/* What a pollfd is for: a connection's direction, to read from or to write to, or its connect. */
enum { SLOT_READ, SLOT_WRITE, SLOT_CONNECT };
struct slot {
	int		 conn, dir, kind;
};

static void
relay(int lfd, const struct sockaddr_in *target)
{
	struct pollfd pfd[1 + 4 * MAX_CONNS];
	struct slot slot[1 + 4 * MAX_CONNS];
	sigset_t open_set;
	int64_t now, next;
	int64_t timeout;
	int i, j, n, cut;

	sigemptyset(&open_set);
	for (;;) {
		struct timespec ts;

		/* While cut, nothing is polled but signals: a hang-up must not spin the loop. */
		cut = cut_wanted;
		now = now_us();
		next = -1;
		n = 0;
		pfd[n].fd = cut ? -1 : lfd;
		pfd[n++].events = POLLIN;
		for (i = 0; i < MAX_CONNS && !cut; i++) {
			if (conns[i].used && conns[i].connecting && conns[i].connect_by <= now)
				conn_close(&conns[i]);
			if (conns[i].used && conns[i].connecting) {
				pfd[n] = (struct pollfd){ .fd = conns[i].d[0].to, .events = POLLOUT };
				slot[n++] = (struct slot){ i, 0, SLOT_CONNECT };
				if (next < 0 || conns[i].connect_by < next)
					next = conns[i].connect_by;
				continue;
			}
			for (j = 0; j < 2 && conns[i].used; j++) {
				struct dir *d = &conns[i].d[j];

				if (!d->eof_read && d->held < MAX_HELD) {
					pfd[n] = (struct pollfd){ .fd = d->from, .events = POLLIN };
					slot[n++] = (struct slot){ i, j, SLOT_READ };
				}
				if (d->head != NULL && d->head->due <= now) {
					pfd[n] = (struct pollfd){ .fd = d->to, .events = POLLOUT };
					slot[n++] = (struct slot){ i, j, SLOT_WRITE };
				} else if (d->head != NULL && (next < 0 || d->head->due < next))
					next = d->head->due;
			}
		}
		timeout = cut || next < 0 ? -1 : next - now;
		ts.tv_sec = (time_t)(timeout / 1000000);
		ts.tv_nsec = (long)(timeout % 1000000) * 1000;
		if (ppoll(pfd, (nfds_t)n, timeout < 0 ? NULL : &ts, &open_set) < 0 &&
		    errno != EINTR)
			return;
		if (cut_wanted)
			continue;
		if (pfd[0].revents & POLLIN)
			conn_open(lfd, target);
		now = now_us();
		for (i = 1; i < n; i++) {
			struct conn *c = &conns[slot[i].conn];
			struct dir *d = &c->d[slot[i].dir];

			if (!c->used || pfd[i].revents == 0)
				continue;
			if (slot[i].kind == SLOT_CONNECT) {
				int err = 0;
				socklen_t len = sizeof(err);

				if (getsockopt(d->to, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)
					conn_close(c);
				else
					c->connecting = 0;
				continue;
			}
			if ((slot[i].kind == SLOT_WRITE ? dir_write(d, now) : dir_read(d)) != 0) {
				conn_close(c);
				continue;
			}
			/* Both directions closed and delivered: the connection is done. */
			if (c->d[0].eof_read && c->d[1].eof_read && c->d[0].head == NULL &&
			    c->d[1].head == NULL)
				conn_close(c);
		}
	}
}

int
main(int argc, char **argv)
{
	struct sockaddr_in listen_at, target;
	struct sigaction sa;
	socklen_t len = sizeof(listen_at);
	sigset_t block;
	int lfd, one = 1, opt, have_l = 0, have_t = 0;

	memset(&target, 0, sizeof(target));

	while ((opt = getopt(argc, argv, "l:t:Td:")) != -1) {
		switch (opt) {
		case 'l':
			have_l = parse_addr(optarg, &listen_at) == 0;
			break;
		case 't':
			have_t = parse_addr(optarg, &target) == 0;
			break;
		case 'T':
			have_t = transparent = 1;
			break;
		case 'd':
			delay_us = atoll(optarg) * 1000;
			break;
		default:
			have_l = 0;
			break;
		}
	}
	if (!have_l || !have_t || delay_us < 0 || optind != argc) {
		fprintf(stderr, "usage: delay-proxy -l ADDR:PORT (-t ADDR:PORT | -T) [-d MS]\n");
		return 2;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* Signals arrive only inside ppoll, which then returns at once. */
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGUSR2);
	sigprocmask(SIG_BLOCK, &block, NULL);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(lfd, (struct sockaddr *)&listen_at, sizeof(listen_at)) != 0 ||
	    listen(lfd, 128) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&listen_at, &len) != 0) {
		perror("delay-proxy: listen");
		return 1;
	}
	fcntl(lfd, F_SETFL, O_NONBLOCK);
	printf("%u\n", (unsigned)ntohs(listen_at.sin_port));
	fflush(stdout);
	relay(lfd, &target);
	perror("delay-proxy: poll");
	return 1;
}
