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
	bool allowed_truncated; /* the kernel holds more than WG_MAX_ALLOWED allowed IPs */
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
 * sent; NULL leaves the key) and the listen port (0: random); peers are not touched. */
int wg_set_device(struct wg *w, const char *ifname, const struct secret *private_key,
		  uint16_t listen_port, struct diag *d);

/* Add or update peers (allowed IPs replaced, endpoint and keepalive set) and remove others by
 * public key, without disturbing any peer not named. Allowed IPs must be networks (a bit set
 * after the prefix is -EINVAL; the kernel would mask it silently). Large sets are split across
 * messages (removals first); on failure the messages before the failing one stay applied. */
int wg_set_peers(struct wg *w, const char *ifname, const struct wg_peer *upsert, size_t n_upsert,
		 const uint8_t (*remove)[WG_KEY_LEN], size_t n_remove, struct diag *d);

/* Read the device and all its peers (a multi-part dump, coalesced; retried if a concurrent
 * change interrupts it). Free with wg_device_free. */
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

/* --- the message layer, exposed for tests and fuzzing ------------------------------------- */
struct nlmsghdr;

/* Upper bound of one SET_DEVICE message: far below the socket's send buffer. */
#define WG_MSG_BUDGET 32768

/* Build wg_set_peers' SET_DEVICE messages for generic-netlink family id genl_family, each at
 * most budget bytes, removals first, calling emit on each (stopping at its first -errno). A
 * peer that does not fit in what is left of a message starts the next; one too big for a whole
 * message is split between its allowed IPs, and only the first part carries
 * WGPEER_F_REPLACE_ALLOWEDIPS, the endpoint and the keepalive. Input is checked first
 * (-EINVAL: nothing emitted); -EMSGSIZE if budget cannot hold one peer with one allowed IP. */
int wg_build_peer_msgs(uint16_t genl_family, const char *ifname, const struct wg_peer *upsert,
		       size_t n_upsert, const uint8_t (*remove)[WG_KEY_LEN], size_t n_remove,
		       size_t budget, int (*emit)(struct nlmsghdr *nlh, void *arg), void *arg,
		       struct diag *d);

/* Merge one GET_DEVICE dump message into dev (zeroed before the first): a peer continued from
 * the previous message (same public key) is coalesced. Strict: -EBADMSG on any malformed
 * attribute, -EOVERFLOW past the kernel's peer limit. */
int wg_parse_device_msg(const struct nlmsghdr *nlh, struct wg_device *dev, struct diag *d);

#endif
