/* SPDX-License-Identifier: Apache-2.0 */
/* A control plane for tests and tools: the real conclave-joind binary (joind_proc) with its own
 * swtpm, a recovery file, a signed node policy (the golden boot), an EK root bundle for every
 * node, and nodes that each have their own swtpm and join in-process (joinclient). */
#ifndef CONCLAVE_TEST_JOIND_FIXTURE_H
#define CONCLAVE_TEST_JOIND_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "attest_fixture.h"
#include "joind_proc.h"
#include "conclave/joinclient.h"
#include "conclave/kms.h"
#include "conclave/membership.h"

struct jnode {
	struct fixture fx;
	uint8_t wg[32];
	uint8_t uuid[16];
	char endpoint[48];
	int64_t id;		       /* from its first successful join; 0 before */
	uint8_t key[KMS_DISK_KEY_LEN]; /* the disk key of its first join */
};

struct jcluster {
	char dir[PATH_MAX]; /* everything below lives here */
	char db[PATH_MAX], recovery[PATH_MAX], policy[PATH_MAX], policy_pub[PATH_MAX],
	    ek_roots[PATH_MAX], port_file[PATH_MAX], log[PATH_MAX];
	struct fixture cp;	/* joind's TPM */
	struct joind_args args; /* filled by jcluster_setup; adjust before jcluster_start */
	struct membership_config ranges;
	struct jnode *nodes;
	size_t n_nodes;
	pid_t pid;
	uint16_t port;
};

/* Make the directory (under TMPDIR or /tmp, named after tag), joind's TPM, n nodes with their
 * TPMs (node i: WireGuard key 0x10+i..., disk UUID 0xa0+i..., endpoint 192.0.2.x:51820),
 * the recovery file, the policy and the EK roots. Does not start joind. */
int jcluster_setup(struct jcluster *c, const char *tag, struct jnode *nodes, size_t n);
/* Stop joind (SIGKILL) and every TPM, remove the directory. */
void jcluster_teardown(struct jcluster *c);

/* Start joind with c->args; 0, or -1 with *why set. */
int jcluster_start(struct jcluster *c, const char **why);
/* Send sig to joind and reap it; returns its wait status (or -1). */
int jcluster_stop(struct jcluster *c, int sig);

/* A node's join client configuration against c (uuid: NULL for its own disk). */
void jcluster_client(const struct jcluster *c, struct jnode *n, const uint8_t *uuid,
		     struct joinclient_config *out);
/* One join attempt of node n. */
int jcluster_join(const struct jcluster *c, struct jnode *n, struct join_info *out, struct diag *d);
/* A successful join's answer is n's: same node id and disk key as its first join (recorded
 * then). false with why set otherwise. */
bool jnode_same_as_first_join(struct jnode *n, const struct join_info *j, const char **why);

/* Sign p with a new Ed25519 key (PREFIX.key, PREFIX.pub) and write the envelope to path (0600). */
int signed_policy_write(const struct policy *p, const char *prefix, const char *path);
/* Append the contents of the file at path to out (an EK root bundle, one CA at a time). */
int file_append(FILE *out, const char *path);

/* A cmocka check that names the condition, says why, and shows the tail of c's joind log. */
#define JCHECK(c, cond, ...)                                                            \
	do {                                                                            \
		if (!(cond)) {                                                          \
			char *tail_ = jcluster_log_tail(c, 2500);                       \
			print_message("# %s:%d: %s\n# ", __FILE__, __LINE__, #cond);    \
			print_message(__VA_ARGS__);                                     \
			print_message("\n# joind log tail:\n%s\n", tail_ ? tail_ : ""); \
			free(tail_);                                                    \
			fail();                                                         \
		}                                                                       \
	} while (0)

/* A real TLS 1.3 ClientHello record as OpenSSL makes it (into memory); its length, 0 on error. */
size_t tls_client_hello(uint8_t *buf, size_t cap);

/* Last bytes (at most max) of joind's log, NUL-terminated, malloc'ed; NULL if unreadable. */
char *jcluster_log_tail(const struct jcluster *c, size_t max);
/* joind's resident set (kB) and open descriptors from /proc; -1 if unreadable. */
long proc_rss_kb(pid_t pid);
int proc_fd_count(pid_t pid);

#endif
