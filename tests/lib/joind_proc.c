// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "conclave/util.h"
#include "joind_proc.h"
#include "swtpm_harness.h"

static int64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void exec_joind(const struct joind_args *a)
{
	char bin[PATH_MAX], workers[16], timeout[16], deadline[16];
	char *argv[64];
	int n = 0, fd;

	build_path("conclave-joind", bin, sizeof(bin));
	snprintf(workers, sizeof(workers), "%d", a->workers);
	snprintf(timeout, sizeof(timeout), "%d", a->timeout_ms);
#define ARG(opt, val) (argv[n++] = (char *)(opt), argv[n++] = (char *)(val))
	argv[n++] = bin;
	ARG("--listen", "127.0.0.1");
	ARG("--port", "0");
	ARG("--port-file", a->port_file);
	ARG("--workers", workers);
	if (a->timeout_ms)
		ARG("--timeout-ms", timeout);
	ARG("--tcti", a->tcti);
	ARG("--ak-state", a->ak_state);
	ARG("--event-log", a->event_log);
	ARG("--ek-chain", a->ek_chain);
	ARG("--node-policy", a->node_policy);
	ARG("--policy-key", a->policy_key);
	ARG("--ca", a->ca);
	ARG("--db", a->db);
	if (a->recovery)
		ARG("--recovery", a->recovery);
	if (a->operator_key)
		ARG("--operator-key", a->operator_key);
	if (a->enforce)
		argv[n++] = "--enforce";
	snprintf(deadline, sizeof(deadline), "%d",
		 a->reattest_deadline_s < 0 ? 0 : a->reattest_deadline_s);
	if (a->reattest_deadline_s)
		ARG("--reattest-deadline-s", deadline);
	if (a->no_rate_limit) {
		ARG("--rate", "1000000");
		ARG("--burst", "1000000");
	}
	ARG("--overlay-v4", a->overlay_v4);
	ARG("--overlay-v6", a->overlay_v6);
	ARG("--pod-pool", a->pod_pool);
	ARG("--pod-prefix", "24");
#undef ARG
	if (a->verbose)
		argv[n++] = "-v";
	argv[n] = NULL;
	fd = open(a->log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
	}
	execv(bin, argv);
	_exit(127);
}

pid_t joind_proc_start(const struct joind_args *a, int timeout_ms, uint16_t *port, const char **why)
{
	int64_t deadline = now_ms() + test_ms(timeout_ms);
	pid_t pid;

	*port = 0;
	*why = "conclave-joind did not report its port in time";
	unlink(a->port_file);
	pid = fork();
	if (pid < 0) {
		*why = "fork failed";
		return -1;
	}
	if (pid == 0)
		exec_joind(a);
	while (now_ms() < deadline) {
		uint8_t *buf = NULL;
		size_t len;

		if (read_file(a->port_file, 64, &buf, &len) == 0) {
			*port = (uint16_t)strtoul((char *)buf, NULL, 10);
			free(buf);
			if (*port)
				return pid;
			*why = "the port file holds no port";
			break;
		}
		if (waitpid(pid, NULL, WNOHANG) != 0) {
			*why = "conclave-joind exited";
			return -1;
		}
		usleep(20000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}
