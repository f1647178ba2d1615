// SPDX-License-Identifier: Apache-2.0
/* The node side of a join: attested TLS to the join service, then JOIN_REQUEST/JOIN_RESPONSE;
 * the session stays open for peer-set updates when the caller asks for them. */
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
#include "conclave/joinclient.h"
#include "conclave/kms.h"

void join_info_clear(struct join_info *j)
{
	secret_free(j->disk_key);
	peerset_clear(&j->view);
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
	return peerset_decode(m->peer_set.p, m->peer_set.len, &out->view, d);
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
