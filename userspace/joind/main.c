// SPDX-License-Identifier: Apache-2.0
/* conclave-joind: the join service. Parses options and runs joind_run (docs/joind.md). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "conclave/atls.h"
#include "conclave/disk.h"
#include "conclave/hub.h"
#include "conclave/joind.h"
#include "conclave/log.h"
#include "conclave/secret.h"
#include "conclave/verify.h"

static volatile sig_atomic_t stop, reload;
static char disk_dev[64]; /* --state-disk serial:NAME, resolved */

static void on_signal(int sig)
{
	if (sig == SIGHUP)
		reload = 1;
	else
		stop = 1;
}

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: conclave-joind [options]\n"
	    "The join service: attests nodes over attested TLS, admits them into the\n"
	    "membership store and hands each its disk key, addresses and the peer set.\n"
	    "\n"
	    "Network:\n"
	    "  --listen ADDR        numeric IPv4/IPv6 address to listen on (default ::)\n"
	    "  --port N             TCP port; 0 = any (default %d)\n"
	    "  --port-file FILE     write the bound port there (also printed on stdout as\n"
	    "                       \"listening on ADDR PORT\")\n"
	    "  --workers N          concurrent connections, 1..%d (default %d); more are\n"
	    "                       closed at once\n"
	    "  --timeout-ms N       deadline per message and handshake (default %d)\n"
	    "  --rate N             new connections per second per client address (default %g)\n"
	    "  --burst N            connections a client may open at once (default %g)\n"
	    "  --max-sessions N     nodes held for peer-set updates (default %d)\n"
	    "  --heartbeat-ms N     empty update to an idle node after this long (default %d)\n"
	    "  --reattest-deadline-s N  revoke a held node that has not re-attested for N s;\n"
	    "                       0 = never (default %d)\n"
	    "Our own attestation (the join service proves itself first):\n"
	    "  --tcti TCTI          our TPM, e.g. device:/dev/tpmrm0 (required)\n"
	    "  --ak-state DIR       directory recording our AK (required)\n"
	    "  --event-log FILE     our UEFI event log (default: none)\n"
	    "  --ek-chain FILE      PEM intermediates for our EK certificate (default: none)\n"
	    "  --pcrs MASK          SHA-256 PCRs we quote, hex bit mask (default 0x%x)\n"
	    "  --ak-per-boot        the AK record lives in memory: replace an unrecorded AK\n"
	    "                       of a previous boot\n"
	    "What nodes must show:\n"
	    "  --node-policy FILE   signed measurements policy for nodes (required)\n"
	    "  --policy-key FILE    Ed25519 public key (PEM) that signed it (required)\n"
	    "  --ca FILE            PEM bundle of EK manufacturer roots (required)\n"
	    "  --enforce            revoke members a new policy no longer admits (default:\n"
	    "                       report them only)\n"
	    "Operator:\n"
	    "  --operator-key FILE  Ed25519 public key (PEM) whose signature init, recover,\n"
	    "                       revoke and policy updates need (without: refused)\n"
	    "State:\n"
	    "  --db FILE            membership store (SQLite; created if missing; required)\n"
	    "  --state-disk DEV     the control plane's state disk (docs/disk.md): the store\n"
	    "                       lives on it, opened at init or recover; serial:NAME finds\n"
	    "                       it by its virtio serial\n"
	    "  --state-dir DIR      where it is mounted (default " DISK_DEFAULT_MOUNT "); --db\n"
	    "                       must lie under it\n"
	    "  --recovery FILE      recovery file holding the master secret (default: none;\n"
	    "                       wait for conclavectl init or recover)\n"
	    "  --overlay-v4 CIDR    node overlay IPv4 range (default 10.100.0.0/16)\n"
	    "  --overlay-v6 CIDR    node overlay IPv6 range (default fd00:100::/64)\n"
	    "  --pod-pool CIDR      pod address pool (default 10.244.0.0/16)\n"
	    "  --pod-prefix N       prefix length of each node's pod CIDR (default 24)\n"
	    "                       (ranges are fixed when the store is created)\n"
	    "  -v, --verbose        log every join (CONCLAVE_LOG=debug|info|warn|err also works)\n"
	    "  -h, --help           this text\n"
	    "SIGTERM or SIGINT stops the service; SIGHUP re-reads the node policy file.\n",
	    JOIND_DEFAULT_PORT, JOIND_MAX_WORKERS, JOIND_DEFAULT_WORKERS, ATLS_DEFAULT_TIMEOUT_MS,
	    JOIND_DEFAULT_RATE, JOIND_DEFAULT_BURST, HUB_DEFAULT_MAX_SESSIONS,
	    HUB_DEFAULT_HEARTBEAT_MS, JOIND_DEFAULT_REATTEST_DEADLINE_S, LOG_COVERED_PCRS);
}

static int number(const char *s, unsigned long max, int base, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(s, &end, base);
	return errno || end == s || *end || *s == '-' || *out > max ? -EINVAL : 0;
}

enum opt {
	O_LISTEN = 256,
	O_PORT,
	O_PORT_FILE,
	O_WORKERS,
	O_TIMEOUT,
	O_TCTI,
	O_AK_STATE,
	O_EVENT_LOG,
	O_EK_CHAIN,
	O_PCRS,
	O_NODE_POLICY,
	O_POLICY_KEY,
	O_CA,
	O_DB,
	O_STATE_DISK,
	O_STATE_DIR,
	O_RECOVERY,
	O_OVERLAY_V4,
	O_OVERLAY_V6,
	O_POD_POOL,
	O_POD_PREFIX,
	O_ENFORCE,
	O_OPERATOR_KEY,
	O_RATE,
	O_BURST,
	O_MAX_SESSIONS,
	O_HEARTBEAT,
	O_REATTEST,
	O_AK_PER_BOOT,
};

static const struct option options[] = {
	{ "listen", required_argument, NULL, O_LISTEN },
	{ "port", required_argument, NULL, O_PORT },
	{ "port-file", required_argument, NULL, O_PORT_FILE },
	{ "workers", required_argument, NULL, O_WORKERS },
	{ "timeout-ms", required_argument, NULL, O_TIMEOUT },
	{ "tcti", required_argument, NULL, O_TCTI },
	{ "ak-state", required_argument, NULL, O_AK_STATE },
	{ "event-log", required_argument, NULL, O_EVENT_LOG },
	{ "ek-chain", required_argument, NULL, O_EK_CHAIN },
	{ "pcrs", required_argument, NULL, O_PCRS },
	{ "node-policy", required_argument, NULL, O_NODE_POLICY },
	{ "policy-key", required_argument, NULL, O_POLICY_KEY },
	{ "ca", required_argument, NULL, O_CA },
	{ "db", required_argument, NULL, O_DB },
	{ "state-disk", required_argument, NULL, O_STATE_DISK },
	{ "state-dir", required_argument, NULL, O_STATE_DIR },
	{ "recovery", required_argument, NULL, O_RECOVERY },
	{ "overlay-v4", required_argument, NULL, O_OVERLAY_V4 },
	{ "overlay-v6", required_argument, NULL, O_OVERLAY_V6 },
	{ "pod-pool", required_argument, NULL, O_POD_POOL },
	{ "pod-prefix", required_argument, NULL, O_POD_PREFIX },
	{ "enforce", no_argument, NULL, O_ENFORCE },
	{ "operator-key", required_argument, NULL, O_OPERATOR_KEY },
	{ "rate", required_argument, NULL, O_RATE },
	{ "burst", required_argument, NULL, O_BURST },
	{ "max-sessions", required_argument, NULL, O_MAX_SESSIONS },
	{ "heartbeat-ms", required_argument, NULL, O_HEARTBEAT },
	{ "reattest-deadline-s", required_argument, NULL, O_REATTEST },
	{ "ak-per-boot", no_argument, NULL, O_AK_PER_BOOT },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* One option into c; -EINVAL for a bad value or an unknown option. */
static int set_option(struct joind_config *c, int opt, const char *arg)
{
	unsigned long v;

	switch (opt) {
	case O_LISTEN: c->listen_addr = arg; return 0;
	case O_PORT_FILE: c->port_file = arg; return 0;
	case O_TCTI: c->tcti = arg; return 0;
	case O_AK_STATE: c->ak_state = arg; return 0;
	case O_EVENT_LOG: c->event_log = arg; return 0;
	case O_EK_CHAIN: c->ek_chain = arg; return 0;
	case O_NODE_POLICY: c->node_policy = arg; return 0;
	case O_POLICY_KEY: c->policy_key = arg; return 0;
	case O_CA: c->ca_bundle = arg; return 0;
	case O_DB: c->db_path = arg; return 0;
	case O_STATE_DISK:
		if (strncmp(arg, "serial:", 7) != 0) {
			c->state_disk = arg;
			return 0;
		}
		if (disk_find_by_serial(arg + 7, disk_dev, sizeof(disk_dev)) < 0) {
			fprintf(stderr, "conclave-joind: no block device has serial %s\n", arg + 7);
			return -ENOENT;
		}
		c->state_disk = disk_dev;
		return 0;
	case O_STATE_DIR: c->state_dir = arg; return 0;
	case O_RECOVERY: c->recovery = arg; return 0;
	case O_OVERLAY_V4: c->ranges.overlay_v4 = arg; return 0;
	case O_OVERLAY_V6: c->ranges.overlay_v6 = arg; return 0;
	case O_POD_POOL: c->ranges.pod_pool = arg; return 0;
	case 'v': log_set_level(LOG_LVL_INFO); return 0;
	case O_ENFORCE: c->enforce = true; return 0;
	case O_AK_PER_BOOT: c->ak_per_boot = true; return 0;
	case O_OPERATOR_KEY: c->operator_key = arg; return 0;
	case O_RATE:
	case O_BURST: {
		char *end;
		double x = strtod(arg, &end);

		if (end == arg || *end || !(x >= (opt == O_RATE ? 0.001 : 1) && x <= 1e6))
			return -EINVAL;
		*(opt == O_RATE ? &c->rate : &c->burst) = x;
		return 0;
	}
	case O_MAX_SESSIONS:
		if (number(arg, 1u << 20, 10, &v) < 0 || v == 0)
			return -EINVAL;
		c->max_sessions = (unsigned int)v;
		return 0;
	case O_REATTEST:
		if (number(arg, 7 * 24 * 3600, 10, &v) < 0)
			return -EINVAL;
		c->reattest_deadline_ms = (int)v * 1000;
		return 0;
	case O_HEARTBEAT:
		if (number(arg, 3600000, 10, &v) < 0 || v == 0)
			return -EINVAL;
		c->heartbeat_ms = (int)v;
		return 0;
	case O_PORT:
		if (number(arg, 65535, 10, &v) < 0)
			return -EINVAL;
		c->port = (uint16_t)v;
		return 0;
	case O_WORKERS:
		if (number(arg, JOIND_MAX_WORKERS, 10, &v) < 0 || v == 0)
			return -EINVAL;
		c->workers = (unsigned int)v;
		return 0;
	case O_TIMEOUT:
		if (number(arg, 600000, 10, &v) < 0 || v == 0)
			return -EINVAL;
		c->timeout_ms = (int)v;
		return 0;
	case O_PCRS:
		if (number(arg, 0xffffff, 16, &v) < 0 || v == 0)
			return -EINVAL;
		c->pcr_mask = (uint32_t)v;
		return 0;
	case O_POD_PREFIX:
		if (number(arg, 32, 10, &v) < 0)
			return -EINVAL;
		c->ranges.pod_prefix = (unsigned int)v;
		return 0;
	default: return -EINVAL;
	}
}

/* Every held node session is a descriptor and a locked page (its TLS exporter): take the hard
 * limits. */
static void raise_limits(void)
{
	static const int which[] = { RLIMIT_NOFILE, RLIMIT_MEMLOCK };

	for (size_t i = 0; i < sizeof(which) / sizeof(which[0]); i++) {
		struct rlimit r;

		if (getrlimit(which[i], &r) == 0 && r.rlim_cur < r.rlim_max) {
			r.rlim_cur = r.rlim_max;
			(void)setrlimit(which[i], &r);
		}
	}
}

int main(int argc, char **argv)
{
	struct joind_config c = {
		.listen_addr = "::",
		.port = JOIND_DEFAULT_PORT,
		.workers = JOIND_DEFAULT_WORKERS,
		.pcr_mask = LOG_COVERED_PCRS,
		.ranges = { "10.100.0.0/16", "fd00:100::/64", "10.244.0.0/16", 24, 0 },
		.stop = &stop,
		.reload = &reload,
		.reattest_deadline_ms = JOIND_DEFAULT_REATTEST_DEADLINE_S * 1000,
	};
	struct sigaction sa = { .sa_handler = on_signal };
	struct diag d = { { 0 } };
	int opt;

	while ((opt = getopt_long(argc, argv, "vh", options, NULL)) != -1) {
		if (opt == 'h') {
			usage(stdout);
			return 0;
		}
		if (set_option(&c, opt, optarg) < 0) {
			if (opt != '?')
				fprintf(stderr, "conclave-joind: bad value for --%s: %s\n",
					options[opt - O_LISTEN].name, optarg);
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "conclave-joind: unexpected argument %s\n", argv[optind]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	raise_limits();
	/* It holds the master secret: no core dumps, no ptrace by others. */
	if (secret_harden_process() < 0)
		fprintf(stderr, "conclave-joind: warning: core dumps could not be disabled\n");
	if (joind_run(&c, &d) < 0) {
		fprintf(stderr, "conclave-joind: %s\n", d.msg);
		return 1;
	}
	return 0;
}
