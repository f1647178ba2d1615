// SPDX-License-Identifier: Apache-2.0
/* Connections waiting for their first TLS record (include/conclave/pending.h). */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conclave/pending.h"
#include "conclave/util.h"

#define TLS_RECORD_HEADER 5
#define TLS_HANDSHAKE	  0x16

struct waiting {
	int fd;
	uint64_t deadline_ms;
	uint64_t seq; /* arrival order, for eviction */
};

struct pending {
	size_t max, n;
	int timeout_ms;
	uint64_t seq;
	struct waiting *w;  /* n entries, unordered */
	struct pollfd *pfd; /* 1 + max: the listener first */
	struct pending_stats stats;
};

struct pending *pending_new(size_t max, int timeout_ms)
{
	struct pending *p;

	if (max < 1 || max > 65536 || timeout_ms < 1) {
		errno = EINVAL;
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->max = max;
	p->timeout_ms = timeout_ms;
	p->w = calloc(max, sizeof(*p->w));
	p->pfd = calloc(max + 1, sizeof(*p->pfd));
	if (!p->w || !p->pfd) {
		pending_free(p);
		errno = ENOMEM;
		return NULL;
	}
	return p;
}

void pending_free(struct pending *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++)
		close(p->w[i].fd);
	free(p->w);
	free(p->pfd);
	free(p);
}

static void drop(struct pending *p, size_t i, bool keep_open)
{
	if (!keep_open)
		close(p->w[i].fd);
	p->w[i] = p->w[--p->n];
}

static void set_lowat(int fd, int bytes)
{
	/* Best effort: without it poll reports partial records and we only look more often. */
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &bytes, sizeof(bytes));
}

void pending_add(struct pending *p, int fd)
{
	if (p->n == p->max) {
		size_t oldest = 0;

		for (size_t i = 1; i < p->n; i++)
			if (p->w[i].seq < p->w[oldest].seq)
				oldest = i;
		drop(p, oldest, false);
		p->stats.evicted++;
	}
	set_lowat(fd, TLS_RECORD_HEADER);
	p->w[p->n++] = (struct waiting){ fd, mono_ms() + (uint64_t)p->timeout_ms, p->seq++ };
}

enum verdict { WAIT, READY, GARBAGE, CLOSED };

/* What the bytes so far say: a complete handshake record, not TLS, or wait for more. */
static enum verdict look(int fd)
{
	uint8_t hdr[TLS_RECORD_HEADER];
	static uint8_t sink[TLS_RECORD_HEADER + PENDING_RECORD_MAX]; /* peeked, never read */
	ssize_t n = recv(fd, hdr, sizeof(hdr), MSG_PEEK | MSG_DONTWAIT);
	size_t need;

	if (n == 0)
		return CLOSED;
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? WAIT : CLOSED;
	/* ContentType handshake, legacy_record_version 3.x (RFC 8446, 5.1). */
	if (hdr[0] != TLS_HANDSHAKE || (n >= 2 && hdr[1] != 3))
		return GARBAGE;
	if (n < TLS_RECORD_HEADER)
		return WAIT;
	need = TLS_RECORD_HEADER + ((size_t)hdr[3] << 8 | hdr[4]);
	if (need == TLS_RECORD_HEADER || need > sizeof(sink))
		return GARBAGE;
	n = recv(fd, sink, need, MSG_PEEK | MSG_DONTWAIT);
	if (n == 0)
		return CLOSED;
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? WAIT : CLOSED;
	if ((size_t)n == need)
		return READY;
	set_lowat(fd, (int)need); /* wake us when the whole record is there */
	return WAIT;
}

int pending_poll(struct pending *p, int lfd, int timeout_ms, void (*ready)(void *arg, int fd),
		 void *arg)
{
	uint64_t now_ms = mono_ms();
	size_t n = p->n;
	int ret;

	p->pfd[0] = (struct pollfd){ .fd = lfd, .events = POLLIN };
	for (size_t i = 0; i < n; i++) {
		uint64_t left = p->w[i].deadline_ms > now_ms ? p->w[i].deadline_ms - now_ms : 0;

		p->pfd[1 + i] = (struct pollfd){ .fd = p->w[i].fd, .events = POLLIN | POLLRDHUP };
		if (left < (uint64_t)timeout_ms)
			timeout_ms = (int)left;
	}
	ret = poll(p->pfd, 1 + n, timeout_ms);
	if (ret < 0)
		return errno == EINTR ? 0 : -errno;
	now_ms = mono_ms();
	/* Walk backwards: drop() moves the last entry into the hole. */
	for (size_t i = n; i-- > 0;) {
		enum verdict v = WAIT;

		if (p->pfd[1 + i].revents)
			v = look(p->w[i].fd);
		/* Closed with its record incomplete: it never will be (and poll would keep saying
		 * so at once, the read side being at its end). */
		if (v == WAIT && p->pfd[1 + i].revents & (POLLRDHUP | POLLHUP | POLLERR))
			v = CLOSED;
		switch (v) {
		case READY:
			set_lowat(p->w[i].fd, 1);
			p->stats.handed++;
			ready(arg, p->w[i].fd);
			drop(p, i, true);
			break;
		case GARBAGE:
			p->stats.garbage++;
			drop(p, i, false);
			break;
		case CLOSED:
			p->stats.closed++;
			drop(p, i, false);
			break;
		case WAIT:
			if (p->w[i].deadline_ms <= now_ms) {
				p->stats.expired++;
				drop(p, i, false);
			}
			break;
		}
	}
	return p->pfd[0].revents ? 1 : 0;
}

size_t pending_count(const struct pending *p)
{
	return p->n;
}

const struct pending_stats *pending_stats(const struct pending *p)
{
	return &p->stats;
}
