// SPDX-License-Identifier: Apache-2.0
/* The node side of a join: attested TLS to the join service, then JOIN_REQUEST/JOIN_RESPONSE;
 * and the peer-set document both sides share. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conclave/atls.h"
#include "conclave/bytes.h"
#include "conclave/joinclient.h"
#include "conclave/kms.h"

static int wr_str(struct writer *w, const char *s, size_t field_size)
{
	size_t n = strnlen(s, field_size);

	if (n >= field_size || n > UINT8_MAX)
		return -EINVAL;
	wr_u8(w, (uint8_t)n);
	return wr_bytes(w, s, n);
}

static int wr_peer(struct writer *w, const struct peer *p)
{
	wr_be64(w, (uint64_t)p->node_id);
	wr_bytes(w, p->wg_pubkey, sizeof(p->wg_pubkey));
	if (wr_str(w, p->endpoints, sizeof(p->endpoints)) < 0 ||
	    wr_str(w, p->overlay_v4, sizeof(p->overlay_v4)) < 0 ||
	    wr_str(w, p->overlay_v6, sizeof(p->overlay_v6)) < 0 ||
	    wr_str(w, p->pod_cidr, sizeof(p->pod_cidr)) < 0)
		return -EINVAL;
	return w->failed ? -ENOMEM : 0;
}

int peerset_encode(uint64_t generation, const struct peer *self, const struct peer *peers, size_t n,
		   uint8_t **out, size_t *len)
{
	struct writer w = { 0 };
	int ret;

	if (n > UINT32_MAX)
		return -E2BIG;
	wr_bytes(&w, PEERSET_MAGIC, 4);
	wr_u8(&w, PEERSET_VERSION);
	wr_be64(&w, generation);
	ret = wr_peer(&w, self);
	wr_be32(&w, (uint32_t)n);
	for (size_t i = 0; ret == 0 && i < n; i++)
		ret = wr_peer(&w, &peers[i]);
	if (ret == 0 && w.failed)
		ret = -ENOMEM;
	if (ret < 0) {
		writer_free(&w);
		return ret;
	}
	*out = w.p;
	*len = w.len;
	return 0;
}

static int rd_str(struct reader *r, char *out, size_t size)
{
	const uint8_t *p;
	uint8_t n;

	if (rd_u8(r, &n) < 0 || n >= size || rd_bytes(r, n, &p) < 0)
		return -EBADMSG;
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] > 0x7e)
			return -EBADMSG;
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

static int rd_peer(struct reader *r, struct peer *p)
{
	const uint8_t *wg;
	uint64_t id;

	memset(p, 0, sizeof(*p));
	if (rd_be64(r, &id) < 0 || id == 0 || id > INT64_MAX ||
	    rd_bytes(r, sizeof(p->wg_pubkey), &wg) < 0 ||
	    rd_str(r, p->endpoints, sizeof(p->endpoints)) < 0 ||
	    rd_str(r, p->overlay_v4, sizeof(p->overlay_v4)) < 0 ||
	    rd_str(r, p->overlay_v6, sizeof(p->overlay_v6)) < 0 ||
	    rd_str(r, p->pod_cidr, sizeof(p->pod_cidr)) < 0)
		return -EBADMSG;
	p->node_id = (int64_t)id;
	memcpy(p->wg_pubkey, wg, sizeof(p->wg_pubkey));
	return 0;
}

/* The smallest encoded peer: id, key and four empty strings. */
#define PEER_MIN_SIZE (8 + 32 + 4)

int peerset_decode(const uint8_t *buf, size_t len, struct join_info *out, struct diag *d)
{
	struct reader r = reader_init(buf, len);
	const uint8_t *magic;
	uint8_t version;
	uint32_t n;

	free(out->peers);
	out->peers = NULL;
	out->n_peers = 0;
	if (rd_bytes(&r, 4, &magic) < 0 || memcmp(magic, PEERSET_MAGIC, 4) != 0 ||
	    rd_u8(&r, &version) < 0 || version != PEERSET_VERSION ||
	    rd_be64(&r, &out->generation) < 0) {
		diag_set(d, "peer set: not a version %d peer-set document", PEERSET_VERSION);
		return -EBADMSG;
	}
	if (rd_peer(&r, &out->self) < 0 || rd_be32(&r, &n) < 0 ||
	    n > reader_left(&r) / PEER_MIN_SIZE) {
		diag_set(d, "peer set: malformed header at offset %zu", r.off);
		return -EBADMSG;
	}
	out->peers = calloc(n ? n : 1, sizeof(*out->peers));
	if (!out->peers) {
		diag_set(d, "peer set: out of memory");
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++, out->n_peers++)
		if (rd_peer(&r, &out->peers[i]) < 0) {
			diag_set(d, "peer set: malformed peer %u at offset %zu", i, r.off);
			return -EBADMSG;
		}
	if (reader_left(&r) != 0) {
		diag_set(d, "peer set: %zu trailing bytes", reader_left(&r));
		return -EBADMSG;
	}
	return 0;
}

void join_info_clear(struct join_info *j)
{
	secret_free(j->disk_key);
	free(j->peers);
	memset(j, 0, sizeof(*j));
}

/* A TCP connection to host:port within timeout_ms. */
static int tcp_connect(const char *host, uint16_t port, int timeout_ms, int *out, struct diag *d)
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
		diag_set(d, "join service address %s: %s", host, gai_strerror(rc));
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
		diag_set(d, "connect to join service %s port %u: %s", host, port, strerror(-rc));
		close(fd);
		return rc;
	}
	*out = fd;
	return 0;
}

/* The join service's answer to our JOIN_REQUEST. */
static int read_response(const struct wire_msg *m, struct join_info *out, struct diag *d)
{
	if (m->type == WIRE_VERDICT || m->type == WIRE_ERROR) {
		diag_set(d, "join service refused the join (%s): %.*s", wire_code_name(m->code),
			 (int)m->text.len, m->text.p ? (const char *)m->text.p : "");
		return m->code == WIRE_REFUSED ? -EACCES : -EPROTO;
	}
	if (m->type != WIRE_JOIN_RESPONSE) {
		diag_set(d, "join service sent %s instead of JOIN_RESPONSE",
			 wire_type_name(m->type));
		return -EPROTO;
	}
	if (m->key_material.len != KMS_DISK_KEY_LEN || !m->peer_set.p) {
		diag_set(d, "JOIN_RESPONSE: want a %d-byte disk key and a peer set",
			 KMS_DISK_KEY_LEN);
		return -EPROTO;
	}
	out->disk_key = secret_new(KMS_DISK_KEY_LEN);
	if (!out->disk_key) {
		diag_set(d, "out of locked memory for the disk key");
		return -ENOMEM;
	}
	memcpy(out->disk_key->data, m->key_material.p, KMS_DISK_KEY_LEN);
	return peerset_decode(m->peer_set.p, m->peer_set.len, out, d);
}

static int join_session(const struct joinclient_config *c, struct atls_session *s,
			struct join_info *out, struct diag *d)
{
	struct atls_verifier v = { c->cp_policy, c->cp_ca, NULL, NULL };
	struct wire_msg req = { .type = WIRE_JOIN_REQUEST }, resp = { 0 };
	struct atls_peer joind;
	int ret;

	/* The join service first: a node gives nothing of its own to one it refused. */
	ret = atls_verify_peer(s, &v, &joind, d);
	if (ret < 0) {
		diag_prefix(d, "join service failed attestation");
		return ret;
	}
	ret = atls_prove(s, &c->attest, c->wg_pubkey, c->disk_uuid, d);
	if (ret < 0)
		return ret;
	for (size_t i = 0; i < c->n_endpoints && i < WIRE_MAX_ENDPOINTS; i++)
		req.endpoints[req.n_endpoints++] =
		    (struct blob){ (const uint8_t *)c->endpoints[i], strlen(c->endpoints[i]) };
	if (c->node_name)
		req.node_name =
		    (struct blob){ (const uint8_t *)c->node_name, strlen(c->node_name) };
	ret = atls_send(s, &req, d);
	if (ret == 0)
		ret = atls_recv(s, &resp, d);
	if (ret < 0)
		return ret;
	ret = read_response(&resp, out, d);
	wire_msg_free(&resp);
	return ret;
}

int joinclient_join(const struct joinclient_config *c, struct join_info *out, struct diag *d)
{
	struct atls_opts o = { ATLS_ROLE_NODE, ATLS_ROLE_JOIND, c->timeout_ms };
	struct atls_session *s = NULL;
	struct atls_ctx *ctx = NULL;
	int fd = -1, ret;

	memset(out, 0, sizeof(*out));
	if (!c->wg_pubkey || !c->disk_uuid || c->n_endpoints == 0) {
		diag_set(d, "join: a WireGuard key, a disk UUID and an endpoint are required");
		return -EINVAL;
	}
	ret = tcp_connect(c->host, c->port,
			  c->connect_timeout_ms ? c->connect_timeout_ms : ATLS_DEFAULT_TIMEOUT_MS,
			  &fd, d);
	if (ret == 0)
		ret = atls_ctx_new(false, &ctx, d);
	if (ret == 0)
		ret = atls_client_connect(ctx, fd, &o, &s, d);
	if (ret == 0)
		ret = join_session(c, s, out, d);
	if (ret < 0)
		join_info_clear(out);
	atls_close(s);
	atls_ctx_free(ctx);
	if (fd >= 0)
		close(fd);
	return ret;
}
