/* SPDX-License-Identifier: Apache-2.0 */
/* Tests and benchmarks run the real conclave-joind binary as a child process. */
#ifndef CONCLAVE_TEST_JOIND_PROC_H
#define CONCLAVE_TEST_JOIND_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct joind_args {
	const char *port_file, *log_file; /* where joind writes its port; its stdout+stderr */
	const char *tcti, *ak_state, *event_log, *ek_chain;
	const char *node_policy, *policy_key, *ca, *db;
	const char *recovery;	  /* NULL: joind waits for init or recover */
	const char *operator_key; /* NULL: no operator requests that change the cluster */
	bool enforce;
	int reattest_deadline_s; /* 0: joind's default; < 0: never */
	bool no_rate_limit;	 /* benchmarks: one client address opens hundreds of connections */
	const char *overlay_v4, *overlay_v6, *pod_pool;
	int workers;
	int timeout_ms; /* 0: joind's default */
	bool verbose;
};

/* Start conclave-joind and wait (up to timeout_ms) until it reports its port. Returns its pid,
 * or -1 with *why set (it exited, or never reported a port); the child is reaped then. */
pid_t joind_proc_start(const struct joind_args *a, int timeout_ms, uint16_t *port,
		       const char **why);

#endif
