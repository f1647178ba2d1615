/* SPDX-License-Identifier: Apache-2.0 */
/* Test harness: a private swtpm per test (own state directory, own swtpm-localca CA),
 * driven through tests/tools/swtpm-env so C and shell tests share one setup. */
#ifndef CONCLAVE_TEST_SWTPM_HARNESS_H
#define CONCLAVE_TEST_SWTPM_HARNESS_H

#include <limits.h>

struct swtpm {
	char dir[PATH_MAX];	  /* temporary directory holding state, CA and sockets */
	char tcti[PATH_MAX + 32]; /* "swtpm:path=DIR/sock" */
	char ca[PATH_MAX];	  /* root CA certificate (PEM) the EK certificate chains to */
	char
	    issuer[PATH_MAX]; /* intermediate CA certificate (PEM) that signed the EK certificate */
};

/* Create a fresh directory, provision (EK + EK certificate) and start swtpm. */
int swtpm_start(struct swtpm *t);
/* Stop the swtpm process (state stays). */
int swtpm_stop(struct swtpm *t);
/* Start again on the existing state (a TPM reset: resetCount moves forward). */
int swtpm_restart(struct swtpm *t);
/* Kill swtpm without TPM2_Shutdown and start it again: a power loss (hard reset of a VM). */
int swtpm_power_loss(struct swtpm *t);
/* Copy the TPM state to DIR/snap-NAME or back from it (swtpm must be stopped). */
int swtpm_snapshot(struct swtpm *t, const char *name);
int swtpm_restore(struct swtpm *t, const char *name);
/* Stop and remove everything. */
void swtpm_destroy(struct swtpm *t);

/* Path of a repository file (CONCLAVE_ROOT, else the current directory). */
const char *test_path(const char *rel, char *buf, size_t len);
/* Path of a build output (CONCLAVE_BUILD, else ./build). */
const char *build_path(const char *rel, char *buf, size_t len);
/* A test's deadline of ms, times CONCLAVE_TIME_SCALE (default 1): `make valgrind` sets 10, since
 * code under memcheck runs 20-50 times slower and the other side's deadlines would fire. */
int test_ms(int ms);

#endif
