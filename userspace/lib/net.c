// SPDX-License-Identifier: Apache-2.0
/* TCP connections with a deadline. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conclave/net.h"

int net_connect(const char *host, uint16_t port, int timeout_ms, int *out, struct diag *d)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	char service[8];
	int fd, rc, err = 0;
	socklen_t elen = sizeof(err);
	struct pollfd p;

	snprintf(service, sizeof(service), "%u", port);
	rc = getaddrinfo(host, service, &hints, &ai);
	if (rc != 0) {
		diag_set(d, "address %s: %s", host, gai_strerror(rc));
		return -EINVAL;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		rc = -errno;
		freeaddrinfo(ai);
		diag_set(d, "socket: %s", strerror(-rc));
		return rc;
	}
	rc = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ? 0 : -errno;
	freeaddrinfo(ai);
	if (rc == -EINPROGRESS) {
		p = (struct pollfd){ .fd = fd, .events = POLLOUT };
		rc = poll(&p, 1, timeout_ms);
		if (rc == 0)
			rc = -ETIMEDOUT;
		else if (rc < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
			rc = -errno;
		else
			rc = -err;
	}
	if (rc < 0) {
		diag_set(d, "connect to %s port %u: %s", host, port, strerror(-rc));
		close(fd);
		return rc;
	}
	*out = fd;
	return 0;
}

int net_parse_hostport(const char *s, char *host, size_t cap, uint16_t *port)
{
	const char *colon, *h = s;
	size_t hlen;
	char *end;
	unsigned long p;

	if (*s == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			return -EINVAL;
		h = s + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || memchr(s, ':', (size_t)(colon - s)))
			return -EINVAL; /* a bare IPv6 address needs brackets */
		hlen = (size_t)(colon - s);
	}
	if (hlen == 0 || hlen >= cap)
		return -EINVAL;
	errno = 0;
	p = strtoul(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || p == 0 || p > 65535)
		return -EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	*port = (uint16_t)p;
	return 0;
}
