// SPDX-License-Identifier: Apache-2.0
/* udp_probe: send and receive UDP datagrams inside a debug node VM (busybox's nc has no UDP);
 * tests/e2e/test_mesh.sh sends marked payloads across the mesh and from an unattested VM.
 *
 *   udp_probe send ADDRESS PORT PAYLOAD [COUNT]   COUNT datagrams (default 1), 100 ms apart
 *   udp_probe recv PORT SECONDS                   print "from ADDRESS:PORT PAYLOAD" for each
 *                                                 datagram that arrives (IPv4 and IPv6)
 *                                                 until SECONDS have passed
 *
 * Exit status: 0 done, 1 a socket call failed (the reason on stderr), 2 usage error. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int port_arg(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	return *s && !*end && v > 0 && v < 65536 ? (int)v : -1;
}

static int send_probe(const char *addr, int port, const char *payload, int count)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
	socklen_t len;
	int fd;

	if (inet_pton(AF_INET, addr, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)port);
		len = sizeof(*v4);
	} else if (inet_pton(AF_INET6, addr, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)port);
		len = sizeof(*v6);
	} else {
		fprintf(stderr, "udp_probe: %s is not a numeric address\n", addr);
		return 2;
	}
	fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "udp_probe: socket: %s\n", strerror(errno));
		return 1;
	}
	for (int i = 0; i < count; i++) {
		const struct timespec gap = { 0, 100 * 1000 * 1000 };

		if (sendto(fd, payload, strlen(payload), 0, (struct sockaddr *)&ss, len) < 0) {
			fprintf(stderr, "udp_probe: sendto %s:%d: %s\n", addr, port,
				strerror(errno));
			close(fd);
			return 1;
		}
		if (i + 1 < count)
			nanosleep(&gap, NULL);
	}
	close(fd);
	return 0;
}

static int recv_probe(int port, int seconds)
{
	struct sockaddr_in6 sa = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port) };
	struct timespec start, now;
	int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0), off = 0;

	/* One dual-stack socket: IPv4 senders show as ::ffff:a.b.c.d. */
	if (fd < 0 || setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "udp_probe: UDP port %d: %s\n", port, strerror(errno));
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		struct sockaddr_in6 from = { 0 };
		socklen_t flen = sizeof(from);
		char buf[2048], a[INET6_ADDRSTRLEN];
		long left;
		ssize_t n;

		clock_gettime(CLOCK_MONOTONIC, &now);
		left = (long)seconds * 1000 - ((now.tv_sec - start.tv_sec) * 1000 +
					       (now.tv_nsec - start.tv_nsec) / 1000000);
		if (left <= 0)
			break;
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		n = recvfrom(fd, buf, sizeof(buf) - 1, 0, (struct sockaddr *)&from, &flen);
		if (n < 0)
			continue;
		buf[n] = '\0';
		inet_ntop(AF_INET6, &from.sin6_addr, a, sizeof(a));
		printf("from %s:%u %s\n", a, ntohs(from.sin6_port), buf);
		fflush(stdout);
	}
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	int port = argc > 3 ? port_arg(argv[3]) : -1;

	if ((argc == 5 || argc == 6) && !strcmp(argv[1], "send") && port > 0) {
		int count = argc == 6 ? atoi(argv[5]) : 1;

		return count > 0 ? send_probe(argv[2], port, argv[4], count) : 2;
	}
	port = argc > 2 ? port_arg(argv[2]) : -1;
	if (argc == 4 && !strcmp(argv[1], "recv") && port > 0 && atoi(argv[3]) > 0)
		return recv_probe(port, atoi(argv[3]));
	fprintf(stderr, "usage: udp_probe send ADDRESS PORT PAYLOAD [COUNT]\n"
			"       udp_probe recv PORT SECONDS\n");
	return 2;
}
