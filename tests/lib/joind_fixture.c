// SPDX-License-Identifier: Apache-2.0
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "joind_fixture.h"
#include "conclave/util.h"

#define STARTERS 3 /* more threads provisioning or stopping nodes' swtpms */

int signed_policy_write(const struct policy *p, const char *prefix, const char *path)
{
	char key_path[PATH_MAX + 8], *json = NULL, *signed_doc = NULL;
	EVP_PKEY *key = NULL;
	struct diag d = { { 0 } };
	int ret;

	snprintf(key_path, sizeof(key_path), "%s.key", prefix);
	ret = policy_keygen(prefix, &d);
	if (ret == 0)
		ret = policy_load_private(key_path, &key, &d);
	if (ret == 0)
		ret = policy_to_json(p, &json);
	if (ret == 0)
		ret = policy_sign(key, json, strlen(json), &signed_doc, &d);
	if (ret == 0)
		ret = write_file_new(path, signed_doc, strlen(signed_doc), 0600);
	if (ret < 0)
		fprintf(stderr, "node policy: %s\n", d.msg);
	EVP_PKEY_free(key);
	free(json);
	free(signed_doc);
	return ret;
}

int file_append(FILE *out, const char *path)
{
	uint8_t *buf = NULL;
	size_t len;
	int ret = read_file(path, 1u << 20, &buf, &len);

	if (ret == 0 && fwrite(buf, 1, len, out) != len)
		ret = -EIO;
	free(buf);
	return ret;
}

/* The node policy (every TPM booted the golden image) and every node's EK root: each swtpm has
 * its own CA, joind trusts them all. */
static int write_trust(struct jcluster *c)
{
	char prefix[PATH_MAX];
	FILE *out;
	int ret = 0;

	snprintf(prefix, sizeof(prefix), "%s/policy", c->dir);
	snprintf(c->policy_pub, sizeof(c->policy_pub), "%s.pub", prefix);
	if (signed_policy_write(&c->cp.policy, prefix, c->policy) < 0)
		return -EIO;
	out = fopen(c->ek_roots, "we");
	if (!out)
		return -errno;
	for (size_t i = 0; i < c->n_nodes && ret == 0; i++)
		ret = file_append(out, c->nodes[i].fx.tpm.ca);
	return fclose(out) == 0 ? ret : -EIO;
}

static void node_init(struct jnode *n, size_t i)
{
	memset(n->wg, 0x10 + (int)(i & 0x3f), sizeof(n->wg));
	memcpy(n->wg, &i, sizeof(i)); /* distinct beyond 64 nodes */
	memset(n->uuid, 0xa0 + (int)(i & 0x3f), sizeof(n->uuid));
	memcpy(n->uuid, &i, sizeof(i));
	snprintf(n->endpoint, sizeof(n->endpoint), "192.0.%zu.%zu:51820", 2 + i / 250, 1 + i % 250);
}

struct starter {
	struct jnode *nodes;
	size_t n;
	atomic_size_t next;
	atomic_int failed;
};

/* Provisioning a swtpm takes a second or so, stopping one an orderly shutdown: a few at a time. */
static void *start_nodes(void *arg)
{
	struct starter *st = arg;
	size_t i;

	while ((i = atomic_fetch_add(&st->next, 1)) < st->n) {
		if (fixture_start(&st->nodes[i].fx) < 0)
			atomic_store(&st->failed, 1);
		node_init(&st->nodes[i], i);
	}
	return NULL;
}

static void *stop_nodes(void *arg)
{
	struct starter *st = arg;
	size_t i;

	while ((i = atomic_fetch_add(&st->next, 1)) < st->n)
		fixture_stop(&st->nodes[i].fx);
	return NULL;
}

/* Run fn over every node: this thread and up to STARTERS more take nodes in turn. */
static void for_nodes(struct starter *st, void *(*fn)(void *))
{
	pthread_t threads[STARTERS];
	size_t started = 0;

	while (started < STARTERS && started < st->n &&
	       pthread_create(&threads[started], NULL, fn, st) == 0)
		started++;
	fn(st);
	for (size_t i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
}

int jcluster_setup(struct jcluster *c, const char *tag, struct jnode *nodes, size_t n)
{
	struct starter st = { .nodes = nodes, .n = n };
	_cleanup_kms_ struct kms *k = NULL;
	const char *tmp = getenv("TMPDIR");
	struct diag d;

	memset(c, 0, sizeof(*c));
	c->pid = -1;
	c->nodes = nodes;
	c->n_nodes = n;
	c->ranges =
	    (struct membership_config){ "10.100.0.0/16", "fd00:100::/64", "10.244.0.0/16", 24, 0 };
	snprintf(c->dir, sizeof(c->dir), "%s/conclave-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", tag);
	if (!mkdtemp(c->dir))
		return -errno;
	snprintf(c->db, sizeof(c->db), "%s/members.db", c->dir);
	snprintf(c->recovery, sizeof(c->recovery), "%s/recovery", c->dir);
	snprintf(c->policy, sizeof(c->policy), "%s/node-policy.json", c->dir);
	snprintf(c->ek_roots, sizeof(c->ek_roots), "%s/ek-roots.pem", c->dir);
	snprintf(c->port_file, sizeof(c->port_file), "%s/port", c->dir);
	snprintf(c->log, sizeof(c->log), "%s/joind.log", c->dir);
	if (fixture_start(&c->cp) < 0)
		return -EIO;
	memset(nodes, 0, n * sizeof(*nodes));
	for_nodes(&st, start_nodes);
	if (atomic_load(&st.failed))
		return -EIO;
	if (kms_new_random(&k, &d) < 0 || kms_recovery_write(k, c->recovery, &d) < 0 ||
	    write_trust(c) < 0)
		return -EIO;
	c->args = (struct joind_args){
		.port_file = c->port_file,
		.log_file = c->log,
		.tcti = c->cp.tpm.tcti,
		.ak_state = c->cp.ak_state,
		.event_log = c->cp.log_path,
		.ek_chain = c->cp.tpm.issuer,
		.node_policy = c->policy,
		.policy_key = c->policy_pub,
		.ca = c->ek_roots,
		.db = c->db,
		.recovery = c->recovery,
		.overlay_v4 = c->ranges.overlay_v4,
		.overlay_v6 = c->ranges.overlay_v6,
		.pod_pool = c->ranges.pod_pool,
		.workers = 4,
		.timeout_ms = test_ms(2000),
		.verbose = true,
	};
	return 0;
}

void jcluster_teardown(struct jcluster *c)
{
	struct starter st = { .nodes = c->nodes, .n = c->n_nodes };
	char cmd[PATH_MAX + 16];

	if (c->pid > 0)
		jcluster_stop(c, SIGKILL);
	for_nodes(&st, stop_nodes);
	fixture_stop(&c->cp);
	if (c->dir[0] && !getenv("CONCLAVE_KEEP_WORK")) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", c->dir);
	}
}

int jcluster_start(struct jcluster *c, const char **why)
{
	c->pid = joind_proc_start(&c->args, 20000, &c->port, why);
	return c->pid > 0 ? 0 : -1;
}

int jcluster_stop(struct jcluster *c, int sig)
{
	int status = -1;

	if (c->pid <= 0)
		return -1;
	kill(c->pid, sig);
	if (waitpid(c->pid, &status, 0) != c->pid)
		status = -1;
	c->pid = -1;
	return status;
}

void jcluster_client(const struct jcluster *c, struct jnode *n, const uint8_t *uuid,
		     struct joinclient_config *out)
{
	*out = (struct joinclient_config){
		.host = "127.0.0.1",
		.port = c->port,
		.connect_timeout_ms = test_ms(2000),
		.timeout_ms = test_ms(5000),
		.cp_policy = &c->cp.policy,
		.cp_ca = c->cp.ca,
		.wg_pubkey = n->wg,
		.disk_uuid = uuid ? uuid : n->uuid,
		.endpoints = { n->endpoint },
		.n_endpoints = 1,
	};
	/* A node quotes its boot and PCR 15 (the cluster it joined), with its event log. */
	out->attest = (struct attest_opts){ .tcti = n->fx.tpm.tcti,
					    .ak_state = n->fx.ak_state,
					    .pcr_mask = NODE_QUOTE_PCRS };
	out->attest.event_log = n->fx.log_path;
	out->attest.ek_chain = n->fx.tpm.issuer;
}

int jcluster_join(const struct jcluster *c, struct jnode *n, struct join_info *out, struct diag *d)
{
	struct joinclient_config cfg;

	jcluster_client(c, n, NULL, &cfg);
	memset(d, 0, sizeof(*d));
	return joinclient_join(&cfg, out, d);
}

bool jnode_same_as_first_join(struct jnode *n, const struct join_info *j, const char **why)
{
	if (!j->disk_key || j->disk_key->len != KMS_DISK_KEY_LEN) {
		*why = "no 32-byte disk key";
		return false;
	}
	if (!n->id) {
		n->id = j->view.self.node_id;
		memcpy(n->key, j->disk_key->data, KMS_DISK_KEY_LEN);
	}
	if (j->view.self.node_id != n->id) {
		*why = "another node id than at its first join";
		return false;
	}
	if (memcmp(j->disk_key->data, n->key, KMS_DISK_KEY_LEN) != 0) {
		*why = "another disk key than at its first join";
		return false;
	}
	return true;
}

char *jcluster_log_tail(const struct jcluster *c, size_t max)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	char *tail;

	if (read_file(c->log, 64u << 20, &buf, &len) < 0)
		return NULL;
	tail = malloc(max + 1);
	if (tail) {
		size_t from = len > max ? len - max : 0;

		memcpy(tail, buf + from, len - from);
		tail[len - from] = '\0';
	}
	free(buf);
	return tail;
}

long proc_rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

int proc_fd_count(pid_t pid)
{
	char path[64];
	struct dirent *e;
	int n = 0;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	if (!dir)
		return -1;
	while ((e = readdir(dir)))
		n += e->d_name[0] != '.';
	closedir(dir);
	return n;
}

size_t tls_client_hello(uint8_t *buf, size_t cap)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = ctx ? SSL_new(ctx) : NULL;
	BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
	int n = 0;

	if (ssl && rb && wb) {
		SSL_set_bio(ssl, rb, wb);
		rb = wb = NULL;
		SSL_set_connect_state(ssl);
		(void)SSL_do_handshake(ssl); /* wants to read the answer: the hello is written */
		n = BIO_read(SSL_get_wbio(ssl), buf, (int)cap);
	}
	BIO_free(rb);
	BIO_free(wb);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	return n > 0 ? (size_t)n : 0;
}
