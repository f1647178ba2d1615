/* SPDX-License-Identifier: Apache-2.0 */
/* Packet builder for BPF_PROG_TEST_RUN tests: push headers outermost first, then pkt_finish()
 * fills every length (IPv4 total length and checksum, IPv6 payload length, UDP length) from
 * where the headers ended up. Each push also sets the previous header's "next" field (the
 * Ethernet/VLAN type, the IPv4 protocol, the IPv6 next header). Addresses are text. */
#ifndef CONCLAVE_TEST_PKTGEN_H
#define CONCLAVE_TEST_PKTGEN_H

#include <stddef.h>
#include <stdint.h>

#define PKT_MAX 2048

struct pkt {
	uint8_t buf[PKT_MAX];
	size_t len;
	size_t l3, l4;	 /* offsets of the IP and transport headers (0: none) */
	int family;	 /* 4 or 6 once an IP header is pushed */
	size_t next_off; /* where the next header's type goes */
	int next_kind;	 /* PKT_NEXT_ETHERTYPE / PKT_NEXT_IPPROTO / PKT_NEXT_NONE */
	size_t udp;	 /* offset of the UDP header (0: none) */
};

enum { PKT_NEXT_NONE, PKT_NEXT_ETHERTYPE, PKT_NEXT_IPPROTO };

/* Start a packet: an Ethernet header with fixed MACs, ethertype filled by the next push. */
void pkt_eth(struct pkt *p);
/* An in-data VLAN tag: tpid 0x8100 (802.1Q) or 0x88a8 (802.1ad). */
void pkt_vlan(struct pkt *p, uint16_t tpid, uint16_t vid);
/* Set the ethertype by hand (for non-IP frames) and stop chaining. */
void pkt_ethertype(struct pkt *p, uint16_t type);
/* An Ethernet/IPv4 ARP request (28 bytes). */
void pkt_arp(struct pkt *p);
/* IPv4 header without options, TTL 64, DF clear. */
void pkt_ipv4(struct pkt *p, const char *src, const char *dst);
/* IPv6 header, hop limit 64. */
void pkt_ipv6(struct pkt *p, const char *src, const char *dst);
/* An IPv6 options-style extension header (hop-by-hop 0, routing 43, destination options 60)
 * of len bytes (a multiple of 8, >= 8), padded with PadN. */
void pkt_ipv6_ext(struct pkt *p, uint8_t type, size_t len);
/* An IPv6 fragment header: offset in bytes (multiple of 8), more = M flag. */
void pkt_ipv6_frag(struct pkt *p, uint16_t offset, int more);
void pkt_udp(struct pkt *p, uint16_t sport, uint16_t dport);
/* TCP header without options; flags as in the header byte 13 (0x02 SYN, 0x10 ACK). */
void pkt_tcp(struct pkt *p, uint16_t sport, uint16_t dport, uint8_t flags);
/* ICMP (IPv4) or ICMPv6 (IPv6, picked from the IP header) with an 8-byte header. */
void pkt_icmp(struct pkt *p, uint8_t type, uint8_t code);
/* Another transport protocol number, no header (ESP, GRE, ...). */
void pkt_proto(struct pkt *p, uint8_t proto);
/* Append n bytes (NULL: zeros). */
void pkt_payload(struct pkt *p, const void *data, size_t n);
/* Fill lengths and the IPv4 header checksum. Call once, after the last push. */
void pkt_finish(struct pkt *p);

/* Header access for tweaks after pkt_finish() (fragments, TTL, IHL, ...). */
uint8_t *pkt_at(struct pkt *p, size_t off);
/* IPv4 fragment fields: offset in bytes, more = MF. Recomputes the checksum. */
void pkt_ipv4_frag(struct pkt *p, uint16_t offset, int more);
/* Set the TTL / hop limit. */
void pkt_ttl(struct pkt *p, uint8_t ttl);
/* Cut the packet to len bytes (lengths in headers stay as they were). */
void pkt_truncate(struct pkt *p, size_t len);

/* A crafted WireGuard "transport data" message header (type 4, reserved zero) plus n bytes. */
void pkt_wireguard(struct pkt *p, size_t n);

#endif
