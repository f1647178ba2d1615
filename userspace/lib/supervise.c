// SPDX-License-Identifier: Apache-2.0
/* PID 1's cluster mode: read the node's configuration, start conclave-joind (control plane) and
 * conclave-agent, restart them when they exit. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "conclave/attest.h"
#include "conclave/boot.h"
#include "conclave/disk.h"
#include "conclave/supervise.h"
#include "conclave/util.h"

#define JOIND_BIN	"/usr/bin/conclave-joind"
#define AGENT_BIN	"/usr/bin/conclave-agent"
#define JOIND_PORT_FILE NODE_RUN_DIR "/joind.port"
#define POLICY_FILE	NODE_RUN_DIR "/policy.json"
#define AK_STATE	NODE_RUN_DIR "/ak"
#define JOIND_WAIT_MS	120000

/* A printable fw_cfg text of at most cap-1 bytes, trailing newline removed. */
static int fw_text(const char *name, char *out, size_t cap, struct diag *d)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int ret = boot_fw_cfg_read(name, cap, &buf, &len, d);

	if (ret < 0)
		return ret;
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
		len--;
	for (size_t i = 0; i < len; i++)
		if (buf[i] < 0x21 || buf[i] > 0x7e)
			ret = -EINVAL;
	if (ret < 0 || len == 0 || len >= cap) {
		diag_set(d, "fw_cfg %s: not a printable word of 1..%zu characters", name, cap - 1);
		free(buf);
		return -EINVAL;
	}
	memcpy(out, buf, len);
	out[len] = '\0';
	free(buf);
	return 0;
}

int node_config_read(const char *underlay_if, const char *underlay_cidr, struct node_config *c,
		     struct diag *d)
{
	static const char *const trust[] = { NODE_POLICY_KEY, NODE_EK_ROOTS, NODE_OPERATOR_KEY };
	char role[32] = "";
	uint8_t *policy = NULL;
	size_t len = 0;
	int ret;

	memset(c, 0, sizeof(*c));
	ret = fw_text(FW_JOIN, c->join, sizeof(c->join), d);
	if (ret == -ENOENT)
		return ret;
	if (ret == 0)
		ret = fw_text(FW_ROLE, role, sizeof(role), d);
	if (ret == 0 && strcmp(role, "control-plane") && strcmp(role, "worker")) {
		diag_set(d, "fw_cfg %s: '%s' is neither control-plane nor worker", FW_ROLE, role);
		ret = -EINVAL;
	}
	c->control_plane = !strcmp(role, "control-plane");
	if (ret == 0 &&
	    disk_find_by_serial(DISK_SERIAL, c->state_disk, sizeof(c->state_disk)) < 0) {
		diag_set(d, "no state disk: no block device has serial %s", DISK_SERIAL);
		ret = -EINVAL;
	}
	if (ret == 0 && fw_text(FW_REATTEST_S, c->reattest_s, sizeof(c->reattest_s), d) == -ENOENT)
		c->reattest_s[0] = '\0';
	for (size_t i = 0; ret == 0 && i < sizeof(trust) / sizeof(trust[0]); i++)
		if (access(trust[i], R_OK) != 0) {
			diag_set(d,
				 "the image has no %s: it was built without trust inputs "
				 "(scripts/build-image --trust-dir)",
				 trust[i]);
			ret = -EINVAL;
		}
	if (ret == 0 && (!underlay_if || !underlay_cidr)) {
		diag_set(d,
			 "cluster mode needs an underlay address (fw_cfg opt/conclave/underlay)");
		ret = -EINVAL;
	}
	if (ret == 0) {
		snprintf(c->underlay_if, sizeof(c->underlay_if), "%s", underlay_if);
		snprintf(c->underlay_ip, sizeof(c->underlay_ip), "%.*s",
			 (int)strcspn(underlay_cidr, "/"), underlay_cidr);
		ret = boot_fw_cfg_read(FW_POLICY, POLICY_MAX_SIZE, &policy, &len, d);
	}
	if (ret == 0) {
		mkdir(NODE_RUN_DIR, 0700);
		ret = write_file_atomic(POLICY_FILE, policy, len, 0644);
		if (ret < 0)
			diag_set(d, "cannot write %s: %s", POLICY_FILE, strerror(-ret));
	}
	free(policy);
	return ret;
}

static pid_t spawn(char *const argv[], void (*log)(const char *fmt, ...))
{
	pid_t pid = fork();

	if (pid == 0) {
		execv(argv[0], argv);
		_exit(127);
	}
	if (pid < 0)
		log("cannot start %s: %s", argv[0], strerror(errno));
	else
		log("started %s (pid %d)", argv[0], (int)pid);
	return pid;
}

static pid_t start_joind(const struct node_config *c, void (*log)(const char *fmt, ...))
{
	const char *port = strrchr(c->join, ':') + 1;
	char *argv[48];
	int n = 0;

#define ARG(x) (argv[n++] = (char *)(x))
	ARG(JOIND_BIN);
	ARG("--listen"), ARG("::");
	ARG("--port"), ARG(port);
	ARG("--port-file"), ARG(JOIND_PORT_FILE);
	ARG("--tcti"), ARG("device:/dev/tpmrm0");
	ARG("--ak-state"), ARG(AK_STATE);
	ARG("--event-log"), ARG(DEFAULT_EVENTLOG);
	ARG("--node-policy"), ARG(POLICY_FILE);
	ARG("--policy-key"), ARG(NODE_POLICY_KEY);
	ARG("--ca"), ARG(NODE_EK_ROOTS);
	ARG("--operator-key"), ARG(NODE_OPERATOR_KEY);
	/* The store lives on the state disk, opened at init or recover (docs/disk.md). */
	ARG("--db"), ARG(NODE_JOIND_DB);
	ARG("--state-disk"), ARG(c->state_disk);
	ARG("--state-dir"), ARG(NODE_STATE_DIR);
	ARG("--overlay-v4"), ARG(NODE_OVERLAY_V4);
	ARG("--overlay-v6"), ARG(NODE_OVERLAY_V6);
	ARG("--pod-pool"), ARG(NODE_POD_POOL);
	ARG("--ak-per-boot");
	ARG("-v");
	argv[n] = NULL;
#undef ARG
	unlink(JOIND_PORT_FILE);
	return spawn(argv, log);
}

static pid_t start_agent(const struct node_config *c, void (*log)(const char *fmt, ...))
{
	char endpoint[64];
	char *argv[40];
	int n = 0;

	snprintf(endpoint, sizeof(endpoint), "%s:51820", c->underlay_ip);
#define ARG(x) (argv[n++] = (char *)(x))
	ARG(AGENT_BIN);
	ARG("--join"), ARG(c->join);
	ARG("--cp-policy"), ARG(POLICY_FILE);
	ARG("--policy-key"), ARG(NODE_POLICY_KEY);
	ARG("--ek-roots"), ARG(NODE_EK_ROOTS);
	ARG("--tcti"), ARG("device:/dev/tpmrm0");
	ARG("--ak-state"), ARG(AK_STATE);
	ARG("--ak-per-boot");
	ARG("--state-disk"), ARG(c->state_disk);
	ARG("--state-dir"), ARG(NODE_STATE_DIR);
	ARG("--endpoint"), ARG(endpoint);
	ARG("--underlay"), ARG(c->underlay_if);
	ARG("--overlay-v4"), ARG(NODE_OVERLAY_V4);
	ARG("--overlay-v6"), ARG(NODE_OVERLAY_V6);
	ARG("--pod-pool"), ARG(NODE_POD_POOL);
	if (c->control_plane)
		ARG("--control-plane");
	if (c->reattest_s[0])
		ARG("--reattest-s"), ARG(c->reattest_s);
	ARG("-v");
	argv[n] = NULL;
#undef ARG
	return spawn(argv, log);
}

static void sleep_ms(int ms)
{
	struct timespec t = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&t, &t) < 0 && errno == EINTR)
		;
}

/* The agent of a control plane joins its own join service: start it once joind listens (and has
 * created the AK both share). */
static void wait_for_joind(pid_t joind, void (*log)(const char *fmt, ...))
{
	for (int waited = 0; waited < JOIND_WAIT_MS; waited += 100) {
		if (access(JOIND_PORT_FILE, F_OK) == 0)
			return;
		if (waitpid(joind, NULL, WNOHANG) == joind) {
			log("conclave-joind exited before it listened");
			return;
		}
		sleep_ms(100);
	}
	log("conclave-joind did not listen within %d s", JOIND_WAIT_MS / 1000);
}

void supervise(const struct node_config *c, void (*log)(const char *fmt, ...))
{
	pid_t joind = -1, agent;

	log("cluster mode: %s, join service %s", c->control_plane ? "control plane" : "worker",
	    c->join);
	if (c->control_plane) {
		joind = start_joind(c, log);
		if (joind > 0)
			wait_for_joind(joind, log);
	}
	agent = start_agent(c, log);
	for (;;) {
		int status = 0;
		pid_t pid = wait(&status);

		if (pid < 0) {
			sleep_ms(NODE_RESTART_DELAY_MS);
			continue;
		}
		if (pid != joind && pid != agent)
			continue; /* an orphan PID 1 inherited, or the debug script */
		log("%s exited (%s %d): restarting",
		    pid == joind ? "conclave-joind" : "conclave-agent",
		    WIFSIGNALED(status) ? "signal" : "status",
		    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
		sleep_ms(NODE_RESTART_DELAY_MS);
		if (pid == joind)
			joind = start_joind(c, log);
		else
			agent = start_agent(c, log);
	}
}
