// SPDX-License-Identifier: Apache-2.0
/* Packet builder for the BPF tests (see pktgen.h). Aborts on misuse: a test that builds a
 * packet wrongly must stop, not test something else. */
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pktgen.h"

static void *put(struct pkt *p, size_t n)
{
	void *at;

	if (p->len + n > PKT_MAX) {
		fprintf(stderr, "pktgen: packet longer than %d bytes\n", PKT_MAX);
		abort();
	}
	at = p->buf + p->len;
	memset(at, 0, n);
	p->len += n;
	return at;
}

static void put16(uint8_t *at, uint16_t v)
{
	at[0] = (uint8_t)(v >> 8);
	at[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *at)
{
	return (uint16_t)(at[0] << 8 | at[1]);
}

/* Fill the previous header's "next" field; kind says which kind of field this push needs. */
static void link_next(struct pkt *p, int kind, unsigned value)
{
	if (p->next_kind != kind) {
		fprintf(stderr, "pktgen: header pushed where it cannot follow\n");
		abort();
	}
	if (kind == PKT_NEXT_ETHERTYPE)
		put16(p->buf + p->next_off, (uint16_t)value);
	else
		p->buf[p->next_off] = (uint8_t)value;
}

static void addr(int family, const char *text, void *out)
{
	if (inet_pton(family == 4 ? AF_INET : AF_INET6, text, out) != 1) {
		fprintf(stderr, "pktgen: bad address %s\n", text);
		abort();
	}
}

void pkt_eth(struct pkt *p)
{
	static const uint8_t dst[6] = { 0x02, 0, 0, 0, 0, 0x01 },
			     src[6] = { 0x02, 0, 0, 0, 0, 0x02 };
	uint8_t *h;

	memset(p, 0, sizeof(*p));
	h = put(p, 14);
	memcpy(h, dst, 6);
	memcpy(h + 6, src, 6);
	p->next_off = 12;
	p->next_kind = PKT_NEXT_ETHERTYPE;
}

void pkt_vlan(struct pkt *p, uint16_t tpid, uint16_t vid)
{
	uint8_t *h;

	link_next(p, PKT_NEXT_ETHERTYPE, tpid);
	h = put(p, 4);
	put16(h, vid & 0x0fff);
	p->next_off = (size_t)(h + 2 - p->buf);
}

void pkt_ethertype(struct pkt *p, uint16_t type)
{
	link_next(p, PKT_NEXT_ETHERTYPE, type);
	p->next_kind = PKT_NEXT_NONE;
}

void pkt_arp(struct pkt *p)
{
	uint8_t *h;

	link_next(p, PKT_NEXT_ETHERTYPE, 0x0806);
	h = put(p, 28);
	put16(h, 1);	      /* Ethernet */
	put16(h + 2, 0x0800); /* IPv4 */
	h[4] = 6;
	h[5] = 4;
	put16(h + 6, 1); /* request */
	p->next_kind = PKT_NEXT_NONE;
}

void pkt_ipv4(struct pkt *p, const char *src, const char *dst)
{
	uint8_t *h;

	link_next(p, PKT_NEXT_ETHERTYPE, 0x0800);
	p->l3 = p->len;
	h = put(p, 20);
	h[0] = 0x45;
	h[8] = 64;
	addr(4, src, h + 12);
	addr(4, dst, h + 16);
	p->family = 4;
	p->next_off = p->l3 + 9;
	p->next_kind = PKT_NEXT_IPPROTO;
}

void pkt_ipv6(struct pkt *p, const char *src, const char *dst)
{
	uint8_t *h;

	link_next(p, PKT_NEXT_ETHERTYPE, 0x86dd);
	p->l3 = p->len;
	h = put(p, 40);
	h[0] = 0x60;
	h[7] = 64;
	addr(6, src, h + 8);
	addr(6, dst, h + 24);
	p->family = 6;
	p->next_off = p->l3 + 6;
	p->next_kind = PKT_NEXT_IPPROTO;
}

void pkt_ipv6_ext(struct pkt *p, uint8_t type, size_t len)
{
	uint8_t *h;

	if (len < 8 || len % 8 || len > 2048) {
		fprintf(stderr, "pktgen: extension header length %zu\n", len);
		abort();
	}
	link_next(p, PKT_NEXT_IPPROTO, type);
	h = put(p, len);
	h[1] = (uint8_t)(len / 8 - 1);
	if (type == 43) { /* routing: type 0 is deprecated, use segments left 0 of type 4 */
		h[2] = 4;
	} else { /* PadN over the option space */
		h[2] = 1;
		h[3] = (uint8_t)(len - 4);
	}
	p->next_off = (size_t)(h - p->buf);
}

void pkt_ipv6_frag(struct pkt *p, uint16_t offset, int more)
{
	uint8_t *h;

	link_next(p, PKT_NEXT_IPPROTO, 44);
	h = put(p, 8);
	put16(h + 2, (uint16_t)((offset & ~7u) | (more ? 1 : 0)));
	h[7] = 0x2a; /* identification */
	p->next_off = (size_t)(h - p->buf);
}

void pkt_udp(struct pkt *p, uint16_t sport, uint16_t dport)
{
	uint8_t *h;

	link_next(p, PKT_NEXT_IPPROTO, IPPROTO_UDP);
	p->l4 = p->udp = p->len;
	h = put(p, 8);
	put16(h, sport);
	put16(h + 2, dport);
	p->next_kind = PKT_NEXT_NONE;
}

void pkt_tcp(struct pkt *p, uint16_t sport, uint16_t dport, uint8_t flags)
{
	uint8_t *h;

	link_next(p, PKT_NEXT_IPPROTO, IPPROTO_TCP);
	p->l4 = p->len;
	h = put(p, 20);
	put16(h, sport);
	put16(h + 2, dport);
	h[12] = 5 << 4;
	h[13] = flags;
	put16(h + 14, 65535);
	p->next_kind = PKT_NEXT_NONE;
}

void pkt_icmp(struct pkt *p, uint8_t type, uint8_t code)
{
	uint8_t *h;

	link_next(p, PKT_NEXT_IPPROTO, p->family == 6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP);
	p->l4 = p->len;
	h = put(p, 8);
	h[0] = type;
	h[1] = code;
	p->next_kind = PKT_NEXT_NONE;
}

void pkt_proto(struct pkt *p, uint8_t proto)
{
	link_next(p, PKT_NEXT_IPPROTO, proto);
	p->l4 = p->len;
	p->next_kind = PKT_NEXT_NONE;
}

void pkt_payload(struct pkt *p, const void *data, size_t n)
{
	uint8_t *at = put(p, n);

	if (data)
		memcpy(at, data, n);
}

void pkt_wireguard(struct pkt *p, size_t n)
{
	uint8_t *at = put(p, 16 + n);

	at[0] = 4; /* transport data; reserved bytes 1-3 zero */
}

static void ipv4_checksum(struct pkt *p)
{
	uint8_t *h = p->buf + p->l3;
	size_t hlen = (size_t)(h[0] & 0xf) * 4;
	uint32_t sum = 0;

	put16(h + 10, 0);
	for (size_t i = 0; i + 1 < hlen; i += 2)
		sum += get16(h + i);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	put16(h + 10, (uint16_t)~sum);
}

void pkt_finish(struct pkt *p)
{
	if (p->family == 4) {
		put16(p->buf + p->l3 + 2, (uint16_t)(p->len - p->l3));
		ipv4_checksum(p);
	} else if (p->family == 6) {
		put16(p->buf + p->l3 + 4, (uint16_t)(p->len - p->l3 - 40));
	}
	if (p->udp)
		put16(p->buf + p->udp + 4, (uint16_t)(p->len - p->udp));
}

uint8_t *pkt_at(struct pkt *p, size_t off)
{
	return p->buf + off;
}

void pkt_ipv4_frag(struct pkt *p, uint16_t offset, int more)
{
	put16(p->buf + p->l3 + 6, (uint16_t)((offset / 8) | (more ? 0x2000 : 0)));
	ipv4_checksum(p);
}

void pkt_ttl(struct pkt *p, uint8_t ttl)
{
	if (p->family == 4) {
		p->buf[p->l3 + 8] = ttl;
		ipv4_checksum(p);
	} else {
		p->buf[p->l3 + 7] = ttl;
	}
}

void pkt_truncate(struct pkt *p, size_t len)
{
	if (len < p->len)
		p->len = len;
}
