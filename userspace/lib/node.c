// SPDX-License-Identifier: Apache-2.0
/* The interim attestation exchange between a booted node and its host (see node.h). It runs
 * exactly what `conclavectl attest` runs: attest_produce over the node's TPM. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conclave/attest.h"
#include "conclave/frame.h"
#include "conclave/node.h"
#include "conclave/util.h"
#include "conclave/verify.h"

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int send_frame(int fd, const char *label, const uint8_t *data, size_t len)
{
	char *text = NULL;
	size_t n;
	int ret = frame_encode(label, data, len, &text, &n);

	if (ret == 0)
		ret = write_all(fd, text, n);
	free(text);
	return ret;
}

static int produce(const struct node_exchange *x, const uint8_t *challenge, size_t chal_len,
		   uint8_t **ev, size_t *ev_len, struct diag *d)
{
	uint8_t qdata[32];
	struct attest_opts o = {
		.tcti = x->tcti,
		.ak_state = x->ak_state,
		.qdata = qdata,
		.qlen = sizeof(qdata),
		.pcr_mask = LOG_COVERED_PCRS,
		.event_log = x->event_log,
		.challenge = challenge,
		.challenge_len = chal_len,
	};

	nonce_qualifying_data(x->nonce, x->nonce_len, qdata);
	return attest_produce(&o, ev, ev_len, d);
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The host's reply: a CHALLENGE frame (*chal set) or an ABORT line (*chal NULL). */
static int read_reply(int fd, int timeout_ms, uint8_t **chal, size_t *len, struct diag *d)
{
	static const char end[] = "\nEND CHALLENGE\n";
	long long deadline = now_ms() + timeout_ms;
	char *buf = malloc(NODE_HOST_LINE_MAX + 1);
	size_t used = 0;
	int ret = -ETIMEDOUT;

	*chal = NULL;
	if (!buf)
		return -ENOMEM;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		long long left = deadline - now_ms();
		char *e;
		ssize_t n;

		if (left <= 0) {
			diag_set(d, "the host sent no challenge within %d ms", timeout_ms);
			break;
		}
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		n = read(fd, buf + used, NODE_HOST_LINE_MAX - used);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			/* virtio-serial reads 0 while the host side is not connected */
			struct timespec ms = { 0, 20 * 1000 * 1000 };

			nanosleep(&ms, NULL);
			continue;
		}
		used += (size_t)n;
		buf[used] = '\0';
		if (!strncmp(buf, "ABORT", 5) && memchr(buf, '\n', used)) {
			*strchr(buf, '\n') = '\0';
			diag_set(d, "the host aborted: %.200s", buf + 5 + (buf[5] == ' '));
			ret = 0;
			break;
		}
		e = strstr(buf, end);
		if (e) {
			ret = frame_decode(buf, (size_t)(e - buf) + sizeof(end) - 1, "CHALLENGE",
					   NODE_CHALLENGE_MAX, chal, len, d);
			if (ret < 0)
				diag_prefix(d, "the host's challenge");
			break;
		}
		if (used == NODE_HOST_LINE_MAX) {
			diag_set(d, "the host sent more than %u bytes without a challenge",
				 NODE_HOST_LINE_MAX);
			ret = -EBADMSG;
			break;
		}
	}
	free(buf);
	return ret;
}

static int exchange(const struct node_exchange *x, bool *activated, struct diag *d)
{
	uint8_t *ev = NULL, *chal = NULL;
	size_t ev_len, chal_len;
	int ret;

	ret = produce(x, NULL, 0, &ev, &ev_len, d);
	if (ret == 0)
		ret = send_frame(x->fd, "EVIDENCE", ev, ev_len);
	free(ev);
	ev = NULL;
	if (ret < 0)
		return ret;
	ret = read_reply(x->fd, x->reply_timeout_ms, &chal, &chal_len, d);
	if (ret < 0 || !chal)
		return ret; /* an ABORT is not the node's failure: the host decided */
	ret = produce(x, chal, chal_len, &ev, &ev_len, d);
	if (ret == 0)
		ret = send_frame(x->fd, "EVIDENCE", ev, ev_len);
	if (ret == 0)
		*activated = true;
	free(chal);
	free(ev);
	return ret;
}

int node_attest_exchange(const struct node_exchange *x, bool *activated, struct diag *d)
{
	char line[sizeof(d->msg) + 16];
	int ret;

	*activated = false;
	ret = exchange(x, activated, d);
	if (ret < 0) {
		snprintf(line, sizeof(line), "ERROR %s\n", d->msg);
		for (char *p = line; p[1]; p++) /* one line, whatever the message holds */
			if (*p == '\n' || *p == '\r')
				*p = ' ';
	} else {
		snprintf(line, sizeof(line), "DONE\n");
	}
	write_all(x->fd, line, strlen(line));
	return ret;
}

int node_parse_nonce(const uint8_t *text, size_t len, uint8_t *out, size_t *out_len)
{
	char hex[2 * 64 + 1];
	size_t a = 0, b = len;

	while (a < b && (text[a] == ' ' || text[a] == '\n' || text[a] == '\r' || text[a] == '\t'))
		a++;
	while (b > a && (text[b - 1] == ' ' || text[b - 1] == '\n' || text[b - 1] == '\r' ||
			 text[b - 1] == 0))
		b--;
	if (b - a >= sizeof(hex))
		return -E2BIG;
	memcpy(hex, text + a, b - a);
	hex[b - a] = '\0';
	if (hex_decode(hex, out, 64, out_len) < 0 || *out_len < 8)
		return -EINVAL;
	return 0;
}
