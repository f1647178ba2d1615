// SPDX-License-Identifier: Apache-2.0
/* Attested TLS: TLS 1.3 transport with per-message deadlines, channel binding through the TLS
 * exporter, and the attestation exchange (evidence, credential challenge, verdict). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <tss2/tss2_mu.h>

#include "conclave/atls.h"
#include "conclave/log.h"
#include "conclave/tpmobj.h"
#include "conclave/secret.h"
#include "conclave/util.h"

struct atls_ctx {
	SSL_CTX *ssl;
	bool server;
};

struct atls_session {
	SSL *ssl;
	int fd;
	int fd_flags; /* restored on close */
	int timeout_ms;
	uint8_t role, peer_role;
	struct secret *exporter;
	bool peer_accepted_us, we_accepted_peer;
};

/* ---- context: TLS 1.3 only, fresh key, self-signed certificate ---------------------------- */

/* Certificates carry no trust here: the quote over the exporter binds the channel. Accepting
 * any certificate is deliberate; TLS still checks the peer's CertificateVerify signature. */
static int accept_any_certificate(int preverify_ok, X509_STORE_CTX *x)
{
	return 1;
}

static X509 *self_signed(EVP_PKEY *key)
{
	X509 *x = X509_new();
	X509_NAME *name;
	BIGNUM *serial = BN_new();

	if (!x || !serial || !BN_rand(serial, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
	    !BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) ||
	    !X509_set_version(x, X509_VERSION_3) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600) || !X509_set_pubkey(x, key))
		goto fail;
	name = X509_get_subject_name(x);
	if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
					(const unsigned char *)"conclave-atls", -1, -1, 0) ||
	    !X509_set_issuer_name(x, name) || !X509_sign(x, key, EVP_sha256()))
		goto fail;
	BN_free(serial);
	return x;
fail:
	BN_free(serial);
	X509_free(x);
	return NULL;
}

static int ctx_configure(SSL_CTX *c, EVP_PKEY *key, X509 *cert)
{
	/* Resumption would reuse a session's secrets; every session must bring a fresh exporter. */
	SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
	/* Held sessions are mostly idle: no 34 KiB of buffers each while nothing moves. */
	SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
			   accept_any_certificate);
	return SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) == 1 &&
	       SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION) == 1 &&
	       SSL_CTX_set_num_tickets(c, 0) == 1 &&
	       SSL_CTX_set1_groups_list(c, "P-256:X25519") == 1 &&
	       SSL_CTX_set1_sigalgs_list(c, "ECDSA+SHA256") == 1 &&
	       SSL_CTX_use_certificate(c, cert) == 1 && SSL_CTX_use_PrivateKey(c, key) == 1 &&
	       SSL_CTX_check_private_key(c) == 1;
}

static const char *ssl_reason(void)
{
	static __thread char buf[160];
	unsigned long e = ERR_peek_last_error();

	if (!e)
		return "no further detail";
	ERR_error_string_n(e, buf, sizeof(buf));
	return buf;
}

int atls_ctx_new(bool server, struct atls_ctx **out, struct diag *d)
{
	struct atls_ctx *c = calloc(1, sizeof(*c));
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *cert = key ? self_signed(key) : NULL;
	int ret = 0;

	if (!c || !cert) {
		diag_set(d, "TLS key or certificate: %s", ssl_reason());
		ret = -ENOMEM;
		goto out;
	}
	c->server = server;
	c->ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!c->ssl || !ctx_configure(c->ssl, key, cert)) {
		diag_set(d, "TLS context: %s", ssl_reason());
		ret = -EIO;
		goto out;
	}
	*out = c;
	c = NULL;
out:
	atls_ctx_free(c);
	X509_free(cert);
	EVP_PKEY_free(key);
	return ret;
}

void atls_ctx_free(struct atls_ctx *c)
{
	if (!c)
		return;
	SSL_CTX_free(c->ssl);
	free(c);
}

/* ---- transport with deadlines ------------------------------------------------------------ */

static int64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int64_t deadline_in(const struct atls_session *s)
{
	return now_ms() + s->timeout_ms;
}

/* Wait until OpenSSL can make progress or the deadline passes. */
static int wait_io(int fd, int ssl_err, int64_t deadline)
{
	struct pollfd p = { .fd = fd,
			    .events = ssl_err == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN };

	for (;;) {
		int64_t left = deadline - now_ms();
		int n;

		if (left <= 0)
			return -ETIMEDOUT;
		n = poll(&p, 1, (int)left);
		if (n > 0)
			return 0;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

/* Map a failed SSL call to -errno: retry (0), timeout, peer closed or protocol error. */
static int ssl_step(struct atls_session *s, int rc, int64_t deadline, const char *what,
		    struct diag *d)
{
	int err = SSL_get_error(s->ssl, rc);
	int ret;

	switch (err) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		ret = wait_io(s->fd, err, deadline);
		if (ret == -ETIMEDOUT)
			diag_set(d, "%s: peer too slow (deadline of %d ms passed)", what,
				 s->timeout_ms);
		else if (ret < 0)
			diag_set(d, "%s: poll: %s", what, strerror(-ret));
		return ret;
	case SSL_ERROR_ZERO_RETURN:
		diag_set(d, "%s: peer closed the connection", what);
		return -ECONNRESET;
	case SSL_ERROR_SYSCALL:
		if (!ERR_peek_error()) {
			diag_set(d, "%s: connection lost (%s)", what,
				 errno ? strerror(errno) : "EOF");
			return -ECONNRESET;
		}
		/* fall through */
	default: diag_set(d, "%s: TLS error: %s", what, ssl_reason()); return -EPROTO;
	}
}

static int read_full(struct atls_session *s, uint8_t *buf, size_t n, int64_t deadline,
		     const char *what, struct diag *d)
{
	size_t got = 0;

	while (got < n) {
		size_t r = 0;
		int rc, ret;

		ERR_clear_error();
		errno = 0;
		rc = SSL_read_ex(s->ssl, buf + got, n - got, &r);
		if (rc == 1) {
			got += r;
			continue;
		}
		ret = ssl_step(s, rc, deadline, what, d);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static int write_full(struct atls_session *s, const uint8_t *buf, size_t n, int64_t deadline,
		      struct diag *d)
{
	size_t put = 0;

	while (put < n) {
		size_t w = 0;
		int rc, ret;

		ERR_clear_error();
		errno = 0;
		rc = SSL_write_ex(s->ssl, buf + put, n - put, &w);
		if (rc == 1) {
			put += w;
			continue;
		}
		ret = ssl_step(s, rc, deadline, "send", d);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int atls_send(struct atls_session *s, const struct wire_msg *m, struct diag *d)
{
	uint8_t *buf;
	size_t len;
	int ret;

	ret = wire_encode(m, &buf, &len, d);
	if (ret < 0)
		return ret;
	ret = write_full(s, buf, len, deadline_in(s), d);
	if (ret < 0)
		diag_prefix(d, "sending %s", wire_type_name(m->type));
	explicit_bzero(buf, len); /* JOIN_RESPONSE carries keys */
	free(buf);
	return ret;
}

int atls_recv(struct atls_session *s, struct wire_msg *m, struct diag *d)
{
	int64_t deadline = deadline_in(s); /* for the whole frame: dribbling does not help */
	uint8_t hdr[WIRE_HEADER_SIZE], *buf;
	uint16_t type;
	uint32_t body;
	int ret;

	memset(m, 0, sizeof(*m));
	ret = read_full(s, hdr, sizeof(hdr), deadline, "receive", d);
	if (ret < 0)
		return ret;
	ret = wire_decode_header(hdr, &type, &body, d);
	if (ret < 0) {
		atls_send_error(s, ret == -EPROTONOSUPPORT ? WIRE_UNSUPPORTED : WIRE_BAD_MESSAGE,
				d ? d->msg : "bad frame header");
		return ret;
	}
	buf = malloc(WIRE_HEADER_SIZE + (size_t)body);
	if (!buf) {
		diag_set(d, "receive: out of memory for %u bytes", body);
		return -ENOMEM;
	}
	memcpy(buf, hdr, sizeof(hdr));
	ret = read_full(s, buf + WIRE_HEADER_SIZE, body, deadline, "receive", d);
	if (ret == 0) {
		ret = wire_decode(buf, WIRE_HEADER_SIZE + (size_t)body, m, d);
		if (ret < 0)
			atls_send_error(s, WIRE_BAD_MESSAGE, d ? d->msg : "bad frame");
	}
	if (ret < 0) {
		explicit_bzero(buf, WIRE_HEADER_SIZE + (size_t)body);
		free(buf);
		return ret;
	}
	m->owned = buf;
	m->owned_len = WIRE_HEADER_SIZE + (size_t)body;
	return 0;
}

/* Copy text into out as printable ASCII (what the wire accepts), truncated to fit. */
static size_t printable_copy(const char *text, char *out, size_t cap)
{
	size_t n = 0;

	for (; text[n] && n + 1 < cap; n++) {
		if (text[n] >= 0x20 && text[n] <= 0x7e)
			out[n] = text[n];
		else
			out[n] = '?';
	}
	out[n] = '\0';
	return n;
}

static int send_coded(struct atls_session *s, uint16_t type, uint16_t code, const char *text,
		      struct diag *d)
{
	char clean[WIRE_TEXT_MAX + 1];
	struct wire_msg m = { .type = type, .code = code };

	m.text.len = printable_copy(text ? text : "", clean, sizeof(clean));
	m.text.p = (const uint8_t *)clean;
	return atls_send(s, &m, d);
}

void atls_send_error(struct atls_session *s, uint16_t code, const char *text)
{
	/* Best effort: we are giving up on this peer anyway. */
	(void)send_coded(s, WIRE_ERROR, code, text, NULL);
}

/* The peer's text as a C string (the decoder let only printable ASCII through). */
static const char *text_of(const struct wire_msg *m)
{
	static __thread char buf[WIRE_TEXT_MAX + 1];

	memcpy(buf, m->text.p ? m->text.p : (const uint8_t *)"", m->text.len);
	buf[m->text.len] = '\0';
	return buf;
}

/* Receive a message of one of the wanted types; an ERROR from the peer ends the exchange. */
static int recv_expect(struct atls_session *s, uint32_t wanted, struct wire_msg *m, struct diag *d)
{
	int ret = atls_recv(s, m, d);

	if (ret < 0)
		return ret;
	if (m->type == WIRE_ERROR) {
		bool not_ready = m->code == WIRE_NOT_READY;

		diag_set(d, "peer reported %s: %s", wire_code_name(m->code), text_of(m));
		wire_msg_free(m);
		return not_ready ? -EAGAIN : -ECONNABORTED;
	}
	if (!(wanted & (1u << m->type))) {
		diag_set(d, "unexpected %s from the peer", wire_type_name(m->type));
		atls_send_error(s, WIRE_BAD_MESSAGE, d ? d->msg : "unexpected message");
		wire_msg_free(m);
		return -EBADMSG;
	}
	return 0;
}

/* ---- sessions ---------------------------------------------------------------------------- */

static int handshake(struct atls_session *s, bool server, struct diag *d)
{
	int64_t deadline = deadline_in(s);
	int ret;

	for (;;) {
		int rc;

		ERR_clear_error();
		errno = 0;
		rc = server ? SSL_accept(s->ssl) : SSL_connect(s->ssl);
		if (rc == 1)
			break;
		ret = ssl_step(s, rc, deadline, "TLS handshake", d);
		if (ret < 0)
			return ret;
	}
	/* The context allows nothing else; checked anyway because the binding depends on it. */
	if (SSL_version(s->ssl) != TLS1_3_VERSION || SSL_session_reused(s->ssl)) {
		diag_set(d, "TLS handshake: not a fresh TLS 1.3 session");
		return -EPROTO;
	}
	s->exporter = secret_new(ATLS_EXPORTER_LEN);
	if (!s->exporter) {
		diag_set(d, "locked memory for the exporter: %s", strerror(errno));
		return -ENOMEM;
	}
	if (SSL_export_keying_material(s->ssl, s->exporter->data, ATLS_EXPORTER_LEN,
				       ATLS_EXPORTER_LABEL, strlen(ATLS_EXPORTER_LABEL), NULL, 0,
				       0) != 1) {
		diag_set(d, "TLS exporter: %s", ssl_reason());
		return -EPROTO;
	}
	return 0;
}

static int send_hello(struct atls_session *s, struct diag *d)
{
	struct wire_msg m = {
		.type = WIRE_HELLO,
		.proto_version = WIRE_PROTO_VERSION,
		.role = s->role,
	};

	return atls_send(s, &m, d);
}

/* Each side announces the highest version it speaks; we speak 1, which every version must. */
static int recv_hello(struct atls_session *s, struct diag *d)
{
	struct wire_msg m;
	int ret = recv_expect(s, 1u << WIRE_HELLO, &m, d);

	if (ret < 0)
		return ret;
	if (s->peer_role == ATLS_ROLE_ANY &&
	    (m.role == ATLS_ROLE_NODE || m.role == ATLS_ROLE_OPERATOR))
		s->peer_role = m.role;
	if (m.role != s->peer_role) {
		diag_set(d, "peer announces role '%c', expected '%c'", m.role,
			 s->peer_role ? s->peer_role : '*');
		atls_send_error(s, WIRE_UNSUPPORTED, d ? d->msg : "wrong role");
		ret = -EPROTO;
	}
	wire_msg_free(&m);
	return ret;
}

static bool role_valid(enum atls_role r)
{
	return r == ATLS_ROLE_NODE || r == ATLS_ROLE_JOIND || r == ATLS_ROLE_OPERATOR;
}

static int session_open(struct atls_ctx *c, int fd, const struct atls_opts *o, bool server,
			struct atls_session **out, struct diag *d)
{
	struct atls_session *s;
	int ret;

	if (c->server != server || !role_valid(o->role) ||
	    !(role_valid(o->peer_role) || (server && o->peer_role == ATLS_ROLE_ANY)) ||
	    o->timeout_ms < 0) {
		diag_set(d, "invalid attested TLS options");
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		diag_set(d, "out of memory");
		return -ENOMEM;
	}
	/* Small messages in lock step: Nagle plus delayed ACKs would add ~40 ms per exchange.
	 * Not TCP (a socketpair in tests): nothing to set. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	s->fd = fd;
	s->timeout_ms = o->timeout_ms ? o->timeout_ms : ATLS_DEFAULT_TIMEOUT_MS;
	s->role = (uint8_t)o->role;
	s->peer_role = (uint8_t)o->peer_role;
	s->fd_flags = fcntl(fd, F_GETFL);
	s->ssl = SSL_new(c->ssl);
	if (s->fd_flags < 0 || !s->ssl || SSL_set_fd(s->ssl, fd) != 1 ||
	    fcntl(fd, F_SETFL, s->fd_flags | O_NONBLOCK) < 0) {
		diag_set(d, "TLS session on fd %d: %s", fd, ssl_reason());
		ret = -EIO;
		goto fail;
	}
	ret = handshake(s, server, d);
	if (ret < 0)
		goto fail;
	/* The client speaks first: a server commits nothing (least of all a TPM quote) to a
	 * peer that does not even speak the protocol. */
	if (server)
		ret = recv_hello(s, d);
	if (ret == 0)
		ret = send_hello(s, d);
	if (ret == 0 && !server)
		ret = recv_hello(s, d);
	if (ret < 0)
		goto fail;
	*out = s;
	return 0;
fail:
	atls_close(s);
	return ret;
}

int atls_server_accept(struct atls_ctx *c, int fd, const struct atls_opts *o,
		       struct atls_session **out, struct diag *d)
{
	return session_open(c, fd, o, true, out, d);
}

int atls_client_connect(struct atls_ctx *c, int fd, const struct atls_opts *o,
			struct atls_session **out, struct diag *d)
{
	return session_open(c, fd, o, false, out, d);
}

void atls_close(struct atls_session *s)
{
	if (!s)
		return;
	if (s->ssl) {
		/* One non-blocking close_notify; we do not wait for the peer's. */
		ERR_clear_error();
		(void)SSL_shutdown(s->ssl);
		ERR_clear_error();
		SSL_free(s->ssl);
	}
	if (s->fd_flags >= 0)
		(void)fcntl(s->fd, F_SETFL, s->fd_flags);
	secret_free(s->exporter);
	explicit_bzero(s, sizeof(*s));
	free(s);
}

uint8_t atls_peer_role(const struct atls_session *s)
{
	return s->peer_role;
}

const uint8_t *atls_exporter(const struct atls_session *s)
{
	return s->exporter->data;
}

void atls_set_timeout(struct atls_session *s, int timeout_ms)
{
	s->timeout_ms = timeout_ms > 0 ? timeout_ms : ATLS_DEFAULT_TIMEOUT_MS;
}

int atls_fd(const struct atls_session *s)
{
	return s->fd;
}

int atls_wait_readable(struct atls_session *s, int timeout_ms)
{
	struct pollfd p = { .fd = s->fd, .events = POLLIN };
	int n;

	if (SSL_has_pending(s->ssl))
		return 1;
	do
		n = poll(&p, 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n > 0;
}

bool atls_peer_accepted_us(const struct atls_session *s)
{
	return s->peer_accepted_us;
}

bool atls_we_accepted_peer(const struct atls_session *s)
{
	return s->we_accepted_peer;
}

/* ---- channel binding --------------------------------------------------------------------- */

void atls_binding(const uint8_t exporter[ATLS_EXPORTER_LEN], uint8_t role, const uint8_t *wg_pubkey,
		  const uint8_t *disk_uuid, uint8_t qdata[32])
{
	static const uint8_t zeros[32];
	EVP_MD_CTX *c = EVP_MD_CTX_new();

	/* Only memory exhaustion fails here; zero qdata then simply never verifies. */
	memset(qdata, 0, 32);
	if (c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) &&
	    EVP_DigestUpdate(c, exporter, ATLS_EXPORTER_LEN) && EVP_DigestUpdate(c, &role, 1) &&
	    EVP_DigestUpdate(c, wg_pubkey ? wg_pubkey : zeros, 32) &&
	    EVP_DigestUpdate(c, disk_uuid ? disk_uuid : zeros, 16))
		EVP_DigestFinal_ex(c, qdata, NULL);
	EVP_MD_CTX_free(c);
}

void atls_session_binding(const struct atls_session *s, uint8_t role, const uint8_t *wg_pubkey,
			  const uint8_t *disk_uuid, uint8_t qdata[32])
{
	atls_binding(s->exporter->data, role, wg_pubkey, disk_uuid, qdata);
}

/* ---- proving ----------------------------------------------------------------------------- */

static int send_evidence(struct atls_session *s, struct attest_opts *o, const uint8_t *key,
			 const uint8_t *disk_uuid, struct diag *d)
{
	struct wire_msg m = { .type = WIRE_EVIDENCE };
	uint8_t *ev;
	size_t len;
	int ret;

	ret = attest_produce(o, &ev, &len, d);
	if (ret < 0) {
		diag_prefix(d, "producing evidence");
		atls_send_error(s, WIRE_INTERNAL, "the prover could not produce evidence");
		return ret;
	}
	m.evidence = (struct blob){ ev, len };
	if (key && s->role == ATLS_ROLE_NODE)
		m.wg_pubkey = (struct blob){ key, 32 };
	else if (key)
		m.cluster_id = (struct blob){ key, 32 };
	if (disk_uuid)
		m.disk_uuid = (struct blob){ disk_uuid, 16 };
	ret = atls_send(s, &m, d);
	free(ev);
	return ret;
}

int atls_send_evidence(struct atls_session *s, const struct attest_opts *base, const uint8_t *key,
		       const uint8_t *disk_uuid, struct diag *d)
{
	struct attest_opts o = *base;
	uint8_t qdata[32];
	int ret;

	if (s->role != ATLS_ROLE_NODE || !key) {
		diag_set(d, "only a node re-attests, with its WireGuard key");
		return -EINVAL;
	}
	atls_session_binding(s, s->role, key, disk_uuid, qdata);
	o.qdata = qdata;
	o.qlen = sizeof(qdata);
	o.challenge = NULL;
	o.challenge_len = 0;
	ret = send_evidence(s, &o, key, disk_uuid, d);
	explicit_bzero(qdata, sizeof(qdata));
	return ret;
}

int atls_prove(struct atls_session *s, const struct attest_opts *base, const uint8_t *key,
	       const uint8_t *disk_uuid, struct diag *d)
{
	struct attest_opts o = *base;
	uint8_t qdata[32];
	bool answered = false;
	int ret;

	/* The verifier insists on the same rules (take_binding_inputs). */
	if (s->role == ATLS_ROLE_OPERATOR || (s->role == ATLS_ROLE_NODE && !key) ||
	    (s->role == ATLS_ROLE_JOIND && disk_uuid)) {
		diag_set(d, "a node proves with its WireGuard key, the join service with its "
			    "cluster identity and no disk, an operator never");
		return -EINVAL;
	}
	atls_session_binding(s, s->role, key, disk_uuid, qdata);
	o.qdata = qdata;
	o.qlen = sizeof(qdata);
	o.challenge = NULL;
	o.challenge_len = 0;
	ret = send_evidence(s, &o, key, disk_uuid, d);
	while (ret == 0) {
		struct wire_msg m;
		uint32_t wanted = 1u << WIRE_VERDICT | (answered ? 0 : 1u << WIRE_CHALLENGE);

		ret = recv_expect(s, wanted, &m, d);
		if (ret < 0)
			break;
		if (m.type == WIRE_CHALLENGE) {
			/* First contact: only our TPM can open it, and only for our AK. */
			o.challenge = m.challenge.p;
			o.challenge_len = m.challenge.len;
			answered = true;
			ret = send_evidence(s, &o, key, disk_uuid, d);
			wire_msg_free(&m);
			continue;
		}
		if (m.code == WIRE_OK) {
			s->peer_accepted_us = true;
		} else {
			diag_set(d, "the peer refused our attestation: %s", text_of(&m));
			ret = -EACCES;
		}
		wire_msg_free(&m);
		break;
	}
	explicit_bzero(qdata, sizeof(qdata));
	return ret;
}

/* ---- verifying --------------------------------------------------------------------------- */

/* "check: reason; check: reason" of every check with that status (the failed ones for the
 * VERDICT and the diag, the warnings for the log). */
static void verdict_summary(const struct verdict *v, enum check_status status, char *out,
			    size_t cap)
{
	size_t n = 0;

	out[0] = '\0';
	for (int c = 0; c < CHECK_COUNT && n + 1 < cap; c++) {
		int w;

		if (v->checks[c].status != status)
			continue;
		w = snprintf(out + n, cap - n, "%s%s: %s", n ? "; " : "",
			     verify_check_name((enum verify_check)c), v->checks[c].msg);
		if (w < 0)
			break;
		n += (size_t)w < cap - n ? (size_t)w : cap - n - 1;
	}
}

/* The prover's claimed binding inputs: a node names its WireGuard key (and disk), the join
 * service at most its cluster identity. */
static int take_binding_inputs(struct atls_session *s, const struct wire_msg *m,
			       struct atls_peer *peer, struct diag *d)
{
	bool node = s->peer_role == ATLS_ROLE_NODE;

	if (node != !!m->wg_pubkey.p || (node && m->cluster_id.p) || (!node && m->disk_uuid.p)) {
		diag_set(d,
			 "%s evidence with the wrong binding inputs (a node names its "
			 "WireGuard key, the join service only its cluster identity)",
			 node ? "node" : "join service");
		atls_send_error(s, WIRE_BAD_MESSAGE, d ? d->msg : "binding inputs");
		return -EBADMSG;
	}
	peer->has_wg_pubkey = !!m->wg_pubkey.p;
	peer->has_disk_uuid = !!m->disk_uuid.p;
	peer->has_cluster_id = !!m->cluster_id.p;
	if (m->wg_pubkey.p)
		memcpy(peer->wg_pubkey, m->wg_pubkey.p, 32);
	if (m->disk_uuid.p)
		memcpy(peer->disk_uuid, m->disk_uuid.p, 16);
	if (m->cluster_id.p)
		memcpy(peer->cluster_id, m->cluster_id.p, 32);
	return 0;
}

static bool same_blob(bool had, const uint8_t *kept, struct blob b)
{
	return had == !!b.p && (!b.p || !memcmp(kept, b.p, b.len));
}

static bool same_binding_inputs(const struct atls_peer *peer, const struct wire_msg *m)
{
	return same_blob(peer->has_wg_pubkey, peer->wg_pubkey, m->wg_pubkey) &&
	       same_blob(peer->has_disk_uuid, peer->disk_uuid, m->disk_uuid) &&
	       same_blob(peer->has_cluster_id, peer->cluster_id, m->cluster_id);
}

static bool blob_eq(struct blob a, struct blob b)
{
	return a.len == b.len && (!a.len || !memcmp(a.p, b.p, a.len));
}

static int decode_evidence(struct atls_session *s, const struct wire_msg *m, struct evidence *ev,
			   struct diag *d)
{
	int ret = evidence_decode(m->evidence.p, m->evidence.len, ev, d);

	if (ret < 0) {
		diag_prefix(d, "peer evidence");
		atls_send_error(s, WIRE_BAD_MESSAGE, d ? d->msg : "bad evidence");
	}
	return ret;
}

/* First contact: challenge the AK of the first evidence, then take the activated evidence,
 * which must come from the same EK and AK: the credential was wrapped for exactly those. A
 * prover that knows the credential could otherwise attach a proof for any other key. */
static int challenge_round(struct atls_session *s, const struct atls_verifier *v,
			   struct atls_peer *peer, struct wire_msg *m, struct evidence *ev,
			   struct credential *cred, struct diag *d)
{
	struct wire_msg chal = { .type = WIRE_CHALLENGE };
	struct evidence first = *ev;
	struct wire_msg first_msg = *m;
	uint8_t *buf;
	size_t len;
	int ret;

	ret = attest_make_challenge(ev, v->ca, &buf, &len, cred, d);
	if (ret < 0)
		return 1; /* not challengeable: verify_evidence names the failed checks */
	chal.challenge = (struct blob){ buf, len };
	ret = atls_send(s, &chal, d);
	free(buf);
	if (ret < 0)
		return ret;
	memset(m, 0, sizeof(*m));
	ret = recv_expect(s, 1u << WIRE_EVIDENCE, m, d);
	if (ret == 0 && !same_binding_inputs(peer, m)) {
		diag_set(d, "binding inputs changed between the evidence messages");
		atls_send_error(s, WIRE_BAD_MESSAGE, d ? d->msg : "binding changed");
		ret = -EBADMSG;
	}
	if (ret == 0)
		ret = decode_evidence(s, m, ev, d);
	if (ret == 0 &&
	    (!blob_eq(first.ek_cert, ev->ek_cert) || !blob_eq(first.ak_public, ev->ak_public))) {
		diag_set(d, "activated evidence names another EK or AK than the challenged one");
		atls_send_error(s, WIRE_BAD_MESSAGE, d ? d->msg : "EK or AK changed");
		ret = -EBADMSG;
	}
	wire_msg_free(&first_msg);
	return ret;
}

static int send_verdict(struct atls_session *s, const struct atls_peer *peer, struct diag *d)
{
	char text[WIRE_TEXT_MAX + 1];

	if (peer->verdict.ok)
		return send_coded(s, WIRE_VERDICT, WIRE_OK, "accepted", d);
	verdict_summary(&peer->verdict, CHECK_FAIL, text, sizeof(text));
	return send_coded(s, WIRE_VERDICT, WIRE_REFUSED, text, d);
}

static bool same_ak(const struct node_record *rec, const struct evidence *ev)
{
	TPMT_PUBLIC pub;
	uint8_t name[TPMOBJ_NAME_MAX];
	size_t off = 0, len = 0;

	memset(&pub, 0, sizeof(pub));
	if (Tss2_MU_TPMT_PUBLIC_Unmarshal(ev->ak_public.p, ev->ak_public.len, &off, &pub) !=
		TSS2_RC_SUCCESS ||
	    off != ev->ak_public.len || tpmobj_name(&pub, name, &len) < 0)
		return true; /* unparsable: the verifier names the failure */
	return len == rec->ak_name_len && !memcmp(name, rec->ak_name, len);
}

static int check_evidence(struct atls_session *s, const struct atls_verifier *v,
			  struct atls_peer *peer, struct wire_msg *m, struct diag *d)
{
	struct credential cred = { 0 };
	struct node_record *rec;
	struct verify_params p = { .policy = v->policy, .ca = v->ca, .qlen = 32 };
	struct evidence ev;
	uint8_t qdata[32];
	int ret;

	ret = decode_evidence(s, m, &ev, d);
	if (ret < 0)
		return ret;
	evidence_node_id(&ev, peer->node_id);
	rec = v->find_node ? v->find_node(v->arg, peer->node_id) : NULL;
	/* A known node with another AK (it rebooted without its AK record: AKs are per boot until
	 * the state disk keeps them) proves the new AK with a credential challenge, as at first
	 * contact; its counters are still held against the record. */
	peer->first_contact = !rec || !rec->known || !same_ak(rec, &ev);
	if (peer->first_contact) {
		ret = challenge_round(s, v, peer, m, &ev, &cred, d);
		if (ret < 0) {
			credential_clear(&cred);
			return ret;
		}
	}
	/* The binding uses the role we expect, never one the peer claims. */
	atls_session_binding(s, s->peer_role,
			     peer->has_wg_pubkey    ? peer->wg_pubkey
			     : peer->has_cluster_id ? peer->cluster_id
						    : NULL,
			     peer->has_disk_uuid ? peer->disk_uuid : NULL, qdata);
	p.qdata = qdata;
	p.credential = cred.secret ? &cred : NULL;
	p.node = rec;
	ret = verify_evidence(&ev, &p, &peer->verdict);
	credential_clear(&cred);
	if (ret < 0) {
		diag_set(d, "verifying peer evidence: %s", strerror(-ret));
		atls_send_error(s, WIRE_INTERNAL, "the verifier failed");
	}
	return ret;
}

int atls_verify_evidence_msg(struct atls_session *s, const struct atls_verifier *v,
			     struct wire_msg *m, struct atls_peer *peer, struct diag *d)
{
	char why[WIRE_TEXT_MAX + 1];
	int ret;

	memset(peer, 0, sizeof(*peer));
	peer->role = s->peer_role;
	ret = take_binding_inputs(s, m, peer, d);
	if (ret == 0)
		ret = check_evidence(s, v, peer, m, d);
	if (ret < 0)
		return ret;
	ret = send_verdict(s, peer, d);
	if (ret < 0)
		return ret;
	if (!peer->verdict.ok) {
		verdict_summary(&peer->verdict, CHECK_FAIL, why, sizeof(why));
		diag_set(d, "peer attestation refused: %s", why);
		return -EACCES;
	}
	/* Accepted, but the operator should hear of it (an unsafe TPM clock: the peer's TPM lost
	 * power; a missing event log; a warn-only PCR that moved). */
	verdict_summary(&peer->verdict, CHECK_WARN, why, sizeof(why));
	if (why[0])
		log_warn("attestation: peer accepted with warnings: %s", why);
	peer->accepted = true;
	s->we_accepted_peer = true;
	return 0;
}

int atls_verify_peer(struct atls_session *s, const struct atls_verifier *v, struct atls_peer *peer,
		     struct diag *d)
{
	struct wire_msg m;
	int ret;

	memset(peer, 0, sizeof(*peer));
	peer->role = s->peer_role;
	ret = recv_expect(s, 1u << WIRE_EVIDENCE, &m, d);
	if (ret < 0)
		return ret;
	ret = atls_verify_evidence_msg(s, v, &m, peer, d);
	wire_msg_free(&m);
	return ret;
}
