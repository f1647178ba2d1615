// SPDX-License-Identifier: Apache-2.0
/* conclave-init: PID 1 of the node image. Mounts the kernel file systems, loads the image's
 * modules, runs the node's attestation step, powers off.
 *
 * INTERIM (until the node agent and join service exist): the attestation step is the
 * file-channel exchange of node.h — the nonce comes from QEMU fw_cfg, the evidence and the
 * activation round trip go over a virtio-serial port the host backs. See docs/image.md.
 * For the cluster harness the host may also pass an underlay address and ask the node to stay
 * up after attesting instead of powering off. */
#include <errno.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conclave/attest.h"
#include "conclave/boot.h"
#include "conclave/node.h"
#include "conclave/supervise.h"

#define PORT_TIMEOUT_MS	 15000
#define REPLY_TIMEOUT_MS 120000
/* Debug images only (they have a shell): a script the host passes runs after attestation. */
#define DEBUG_SCRIPT_FW_CFG "opt/conclave/debug-script"
/* Cluster harness: the node's underlay address, and whether to stay up after attesting. */
#define UNDERLAY_FW_CFG	  "opt/conclave/underlay"
#define STAY_UP_FW_CFG	  "opt/conclave/stay-up"
#define DEBUG_SCRIPT_PATH "/run/conclave/debug-script"

/* One console line, stamped with the time since the kernel started (bench-boot reads it). */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "[%8.3f] conclave-init: ", boot_uptime());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void run_debug_script(void)
{
	struct diag d = { { 0 } };
	uint8_t *script = NULL;
	size_t len;
	FILE *f;
	pid_t pid;

	if (access("/bin/sh", X_OK) != 0 ||
	    boot_fw_cfg_read(DEBUG_SCRIPT_FW_CFG, 1u << 20, &script, &len, &d) < 0)
		return;
	f = fopen(DEBUG_SCRIPT_PATH, "we");
	if (!f || fwrite(script, 1, len, f) != len || fclose(f) != 0) {
		say("cannot write %s", DEBUG_SCRIPT_PATH);
		free(script);
		return;
	}
	free(script);
	say("debug image: running the host's %s", DEBUG_SCRIPT_FW_CFG);
	pid = fork();
	if (pid == 0) {
		execl("/bin/sh", "sh", DEBUG_SCRIPT_PATH, (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
}

/* The underlay the host asked for: its interface and address (empty if none or it failed). */
static void configure_underlay(char ifname[IFNAMSIZ], char cidr_out[64])
{
	struct diag d = { { 0 } };
	uint8_t *cidr = NULL;
	size_t len;

	ifname[0] = cidr_out[0] = '\0';
	if (boot_fw_cfg_read(UNDERLAY_FW_CFG, 64, &cidr, &len, &d) < 0)
		return; /* no network asked for */
	cidr[strcspn((char *)cidr, " \n")] = '\0';
	if (boot_net_configure((char *)cidr, ifname, &d) < 0) {
		say("%s", d.msg);
		ifname[0] = '\0';
	} else {
		say("underlay %s on %s", (char *)cidr, ifname);
		snprintf(cidr_out, 64, "%s", (char *)cidr);
	}
	free(cidr);
}

/* Cluster mode: the agent (and on the control plane the join service) instead of the interim
 * attestation step. Returns only if the host asked for no cluster. */
static void cluster_mode(const char *ifname, const char *cidr)
{
	struct node_config c;
	struct diag d = { { 0 } };
	int ret = node_config_read(ifname[0] ? ifname : NULL, cidr[0] ? cidr : NULL, &c, &d);

	if (ret == -ENOENT)
		return;
	if (ret < 0) {
		say("cluster mode: %s", d.msg);
		say("powering off");
		boot_poweroff();
	}
	/* A debug image's script runs beside the services (tests look inside a running node). */
	if (fork() == 0) {
		run_debug_script();
		_exit(0);
	}
	supervise(&c, say);
}

/* PID 1 may not exit: reap whatever exits, forever. */
static void __attribute__((noreturn)) stay_up(void)
{
	say("interim: no node agent yet; staying up until the host stops the VM");
	for (;;)
		if (wait(NULL) < 0)
			pause();
}

static int attest_step(void)
{
	struct node_exchange x = {
		.tcti = NODE_DEFAULT_TCTI,
		.ak_state = NODE_AK_STATE,
		.reply_timeout_ms = REPLY_TIMEOUT_MS,
	};
	struct diag d = { { 0 } };
	uint8_t *text = NULL, nonce[64];
	bool activated;
	size_t len;
	int ret;

	if (access(DEFAULT_EVENTLOG, R_OK) == 0)
		x.event_log = DEFAULT_EVENTLOG;
	else
		say("no UEFI event log at %s: evidence goes without it", DEFAULT_EVENTLOG);
	ret = boot_virtio_port_open(NODE_PORT_NAME, PORT_TIMEOUT_MS, &x.fd, &d);
	if (ret < 0) {
		say("%s", d.msg);
		return ret;
	}
	ret = boot_fw_cfg_read(NODE_FW_CFG_NONCE, 256, &text, &len, &d);
	if (ret == 0 && node_parse_nonce(text, len, nonce, &x.nonce_len) < 0) {
		snprintf(d.msg, sizeof(d.msg), "fw_cfg %s is not 16-128 hex characters",
			 NODE_FW_CFG_NONCE);
		ret = -EINVAL;
	}
	free(text);
	if (ret < 0) {
		say("%s", d.msg);
		dprintf(x.fd, "ERROR %s\n", d.msg);
		close(x.fd);
		return ret;
	}
	x.nonce = nonce;
	mkdir("/run/conclave", 0700);
	say("attesting (TPM %s)", x.tcti);
	ret = node_attest_exchange(&x, &activated, &d);
	if (ret < 0)
		say("attestation failed: %s", d.msg);
	else if (activated)
		say("attested: evidence with credential activation sent");
	else
		say("evidence sent; %s", d.msg[0] ? d.msg : "no activation");
	close(x.fd);
	return ret;
}

int main(int argc, char **argv)
{
	struct diag d = { { 0 } };
	unsigned long used, total;
	unsigned int loaded = 0, skipped = 0;
	char ifname[IFNAMSIZ], cidr[64];
	int mounted;

	if (getpid() != 1) {
		fprintf(stderr, "%s: runs only as PID 1 of the node image\n", argv[0]);
		return 2;
	}
	mounted = boot_mount_basics(&d);
	boot_console(); /* needs /dev: after the mounts, before anything is said */
	if (mounted < 0)
		say("%s", d.msg);
	setenv("TSS2_LOG", "all+none", 0);
	if (boot_load_modules(BOOT_MODULE_LIST, &loaded, &skipped, &d) < 0)
		say("%s", d.msg);
	say("loaded %u kernel modules (%u not for this machine's CPU or hardware)", loaded,
	    skipped);
	configure_underlay(ifname, cidr);
	cluster_mode(ifname, cidr);
	attest_step();
	if (boot_memory(&used, &total) == 0)
		say("memory in use: %lu KiB of %lu KiB", used, total);
	run_debug_script();
	if (access(BOOT_FW_CFG_DIR "/" STAY_UP_FW_CFG, F_OK) == 0)
		stay_up();
	say("powering off");
	boot_poweroff();
}
