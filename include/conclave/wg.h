/* SPDX-License-Identifier: Apache-2.0 */
/* WireGuard through generic netlink (libmnl), no `wg` or `ip` (docs/mesh.md). The interface is
 * created and addressed over rtnetlink (rtnl.h); this module sets the device's private key and
 * port and its peers, reads the device back (coalescing the kernel's multi-part dumps), and
 * splits large peer sets across messages as the kernel requires. */
#ifndef CONCLAVE_WG_H
#define CONCLAVE_WG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "conclave/diag.h"
#include "conclave/secret.h"

#define WG_KEY_LEN	 32
#define WG_MAX_ALLOWED	 8
#define WG_OVERHEAD_IPV4 60 /* outer IPv4 20 + UDP 8 + WireGuard 32 */
#define WG_OVERHEAD_IPV6 80 /* outer IPv6 40 + UDP 8 + WireGuard 32 */

struct wg_allowed_ip {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	uint8_t cidr;
};

struct wg_peer {
	uint8_t pubkey[WG_KEY_LEN];
	struct sockaddr_storage endpoint; /* ss_family 0: none */
	struct wg_allowed_ip allowed[WG_MAX_ALLOWED];
	size_t n_allowed;
	uint16_t keepalive_s; /* 0: off */
	/* Read back only. */
	int64_t last_handshake_s; /* unix seconds, 0: never */
	uint64_t rx_bytes, tx_bytes;
};

struct wg_device {
	char ifname[16];
	int ifindex;
	bool has_private_key;
	uint8_t pubkey[WG_KEY_LEN];
	uint16_t listen_port;
	struct wg_peer *peers; /* malloc'ed */
	size_t n_peers;
};

struct wg;

/* Netlink sockets and the resolved "wireguard" generic-netlink family. -EPROTONOSUPPORT (with a
 * clear diag) when the kernel has no WireGuard. */
int wg_open(struct wg **out, struct diag *d);
void wg_close(struct wg *w);

/* Set the private key (copied from locked memory into the message, which is wiped after it is
 * sent) and the listen port; peers are not touched. */
int wg_set_device(struct wg *w, const char *ifname, const struct secret *private_key,
		  uint16_t listen_port, struct diag *d);

/* Add or update peers (allowed IPs replaced, endpoint and keepalive set) and remove others by
 * public key, without disturbing any peer not named. Large sets are split across messages. */
int wg_set_peers(struct wg *w, const char *ifname, const struct wg_peer *upsert, size_t n_upsert,
		 const uint8_t (*remove)[WG_KEY_LEN], size_t n_remove, struct diag *d);

/* Read the device and all its peers (a multi-part dump, coalesced). Free with wg_device_free. */
int wg_get_device(struct wg *w, const char *ifname, struct wg_device *out, struct diag *d);
void wg_device_free(struct wg_device *dev);

/* X25519 key pair from the CSPRNG: private key in locked memory (clamped as WireGuard wants). */
int wg_generate_key(struct secret **private_key, uint8_t pubkey[WG_KEY_LEN], struct diag *d);

/* The public key of a private key. */
int wg_public_key(const struct secret *private_key, uint8_t pubkey[WG_KEY_LEN], struct diag *d);

/* MTU of the WireGuard interface over an underlay of underlay_mtu for the outer family. */
static inline unsigned int wg_mtu(unsigned int underlay_mtu, int outer_family)
{
	unsigned int o = outer_family == AF_INET6 ? WG_OVERHEAD_IPV6 : WG_OVERHEAD_IPV4;

	return underlay_mtu > o ? underlay_mtu - o : 0;
}

#endif
