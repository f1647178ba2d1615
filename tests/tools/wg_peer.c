// SPDX-License-Identifier: Apache-2.0
/* wg_peer: look at and tamper with a node's WireGuard peers from inside a debug node VM (the
 * debug image carries it; tests/e2e/test_mesh.sh uses it to remove a peer behind the agent's
 * back and check that the traffic is then dropped, never sent in the clear). No `wg` in the
 * image: this is the project's own netlink module (userspace/lib/wg.c).
 *
 *   wg_peer list IFNAME            one line per peer: public key (hex), endpoint, allowed IPs,
 *                                  last handshake (unix s), rx and tx bytes
 *   wg_peer remove IFNAME KEY_HEX  remove the peer with this public key (64 hex digits)
 *
 * Exit status: 0 done, 1 failed (the reason on stderr), 2 usage error. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "conclave/util.h"
#include "conclave/wg.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: wg_peer list IFNAME\n"
		   "       wg_peer remove IFNAME PUBLIC_KEY_HEX\n");
}

static void print_endpoint(const struct sockaddr_storage *ss)
{
	char a[INET6_ADDRSTRLEN] = "-";

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *v4 = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &v4->sin_addr, a, sizeof(a));
		printf(" %s:%u", a, ntohs(v4->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &v6->sin6_addr, a, sizeof(a));
		printf(" [%s]:%u", a, ntohs(v6->sin6_port));
	} else {
		printf(" -");
	}
}

static int list(struct wg *w, const char *ifname, struct diag *d)
{
	struct wg_device dev = { 0 };
	char hex[2 * WG_KEY_LEN + 1], a[INET6_ADDRSTRLEN];
	int ret = wg_get_device(w, ifname, &dev, d);

	if (ret < 0)
		return ret;
	for (size_t i = 0; i < dev.n_peers; i++) {
		const struct wg_peer *p = &dev.peers[i];

		hex_encode(p->pubkey, WG_KEY_LEN, hex);
		printf("%s", hex);
		print_endpoint(&p->endpoint);
		for (size_t j = 0; j < p->n_allowed; j++) {
			inet_ntop(p->allowed[j].family, p->allowed[j].addr, a, sizeof(a));
			printf("%s%s/%u", j ? "," : " ", a, p->allowed[j].cidr);
		}
		if (!p->n_allowed)
			printf(" -");
		printf(" %lld %llu %llu\n", (long long)p->last_handshake_s,
		       (unsigned long long)p->rx_bytes, (unsigned long long)p->tx_bytes);
	}
	wg_device_free(&dev);
	return 0;
}

int main(int argc, char **argv)
{
	uint8_t key[1][WG_KEY_LEN];
	struct diag d = { { 0 } };
	struct wg *w = NULL;
	size_t len = 0;
	int ret;

	if (argc == 3 && !strcmp(argv[1], "list")) {
		ret = wg_open(&w, &d);
		if (ret == 0)
			ret = list(w, argv[2], &d);
	} else if (argc == 4 && !strcmp(argv[1], "remove")) {
		if (hex_decode(argv[3], key[0], WG_KEY_LEN, &len) < 0 || len != WG_KEY_LEN) {
			fprintf(stderr, "wg_peer: the public key must be 64 hex digits\n");
			return 2;
		}
		ret = wg_open(&w, &d);
		if (ret == 0)
			ret = wg_set_peers(w, argv[2], NULL, 0, (const uint8_t(*)[WG_KEY_LEN])key,
					   1, &d);
	} else {
		usage(stderr);
		return 2;
	}
	if (ret < 0)
		fprintf(stderr, "wg_peer: %s\n", d.msg);
	wg_close(w);
	return ret < 0 ? 1 : 0;
}
