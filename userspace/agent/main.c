// SPDX-License-Identifier: Apache-2.0
/* conclave-agent: the node agent. Parses options, loads the trust inputs, runs agent_run
 * (docs/agent.md). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conclave/agent.h"
#include "conclave/atls.h"
#include "conclave/disk.h"
#include "conclave/joinclient.h"
#include "conclave/log.h"
#include "conclave/net.h"
#include "conclave/secret.h"
#include "conclave/util.h"
#include "conclave/verify.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	stop = 1;
}

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: conclave-agent [options]\n"
	    "The node agent: attests and joins the cluster, keeps WireGuard and the eBPF\n"
	    "datapath equal to the attested peer set, re-attests and rotates its WireGuard key.\n"
	    "\n"
	    "The join service:\n"
	    "  --join HOST:PORT        its address (required)\n"
	    "  --cp-policy FILE        signed policy the control plane must match (required)\n"
	    "  --policy-key FILE       Ed25519 public key that signed it (required)\n"
	    "  --ek-roots FILE         PEM roots for the control plane's EK (required)\n"
	    "  --expect-cluster HEX    the cluster identity to accept (default: any)\n"
	    "  --timeout-ms N          per message (default %d)\n"
	    "Our attestation:\n"
	    "  --tcti TCTI             our TPM (default device:/dev/tpmrm0)\n"
	    "  --ak-state DIR          our AK record (required)\n"
	    "  --event-log FILE        default %s\n"
	    "  --no-event-log          send none\n"
	    "  --ek-chain FILE         PEM intermediates of our EK certificate\n"
	    "  --pcrs MASK             PCRs to quote, hex (default 0x%x: must include 15)\n"
	    "  --no-pcr-extend         do not record the cluster in PCR 15 (tests)\n"
	    "  --ak-per-boot           the AK record lives in memory: replace an unrecorded\n"
	    "                          AK of a previous boot (nodes without a state disk)\n"
	    "This node:\n"
	    "  --state-disk DEV        the state disk: formatted or opened with the key the join\n"
	    "                          service sends, mounted at --state-dir (docs/disk.md);\n"
	    "                          serial:NAME finds it by its virtio serial\n"
	    "  --state-dir DIR         where it is mounted (default %s)\n"
	    "  --disk-uuid HEX         without a state disk (hosts without device-mapper): the\n"
	    "                          UUID to bind, 32 hex digits; the disk key is not used\n"
	    "  --endpoint IP:PORT      where peers reach our WireGuard (required)\n"
	    "  --name NAME             node name\n"
	    "The mesh:\n"
	    "  --wg-if NAME            WireGuard interface (default %s)\n"
	    "  --no-wireguard          no WireGuard (a host without it; the mesh is then the\n"
	    "                          datapath only: not a production configuration)\n"
	    "  --wg-port N             WireGuard port (default %d)\n"
	    "  --underlay IF           interface the datapath guards (default: no datapath)\n"
	    "  --pin-root DIR          bpffs directory of the datapath's pins\n"
	    "  --overlay-v4 CIDR --overlay-v6 CIDR --pod-pool CIDR   the cluster's ranges\n"
	    "  --control-plane         this node serves the join port (--join's port)\n"
	    "  --keepalive S           WireGuard persistent keepalive (default %d)\n"
	    "  --reattest-s N          re-attest and rotate keys every N s; 0 = never\n"
	    "                          (default %d)\n"
	    "  --session-timeout-s N   a held session silent this long (no heartbeat) is\n"
	    "                          presumed lost: reconnect (default %d)\n"
	    "  --status PATH           status socket (default %s; '-' = none)\n"
	    "  -v, --verbose           log every state change and peer-set change\n",
	    ATLS_DEFAULT_TIMEOUT_MS, DEFAULT_EVENTLOG, NODE_QUOTE_PCRS, DISK_DEFAULT_MOUNT,
	    AGENT_DEFAULT_WG_IFNAME, AGENT_DEFAULT_WG_PORT, AGENT_DEFAULT_KEEPALIVE_S,
	    AGENT_DEFAULT_REATTEST_S, AGENT_DEFAULT_SILENCE_S, AGENT_DEFAULT_STATUS_PATH);
}

enum opt {
	O_JOIN = 256,
	O_CP_POLICY,
	O_POLICY_KEY,
	O_EK_ROOTS,
	O_EXPECT_CLUSTER,
	O_TIMEOUT,
	O_TCTI,
	O_AK_STATE,
	O_EVENT_LOG,
	O_NO_EVENT_LOG,
	O_EK_CHAIN,
	O_PCRS,
	O_NO_PCR_EXTEND,
	O_AK_PER_BOOT,
	O_DISK_UUID,
	O_STATE_DISK,
	O_STATE_DIR,
	O_ENDPOINT,
	O_NAME,
	O_WG_IF,
	O_NO_WIREGUARD,
	O_WG_PORT,
	O_UNDERLAY,
	O_PIN_ROOT,
	O_OVERLAY_V4,
	O_OVERLAY_V6,
	O_POD_POOL,
	O_CONTROL_PLANE,
	O_KEEPALIVE,
	O_REATTEST,
	O_SILENCE,
	O_STATUS,
};

static const struct option options[] = {
	{ "join", required_argument, NULL, O_JOIN },
	{ "cp-policy", required_argument, NULL, O_CP_POLICY },
	{ "policy-key", required_argument, NULL, O_POLICY_KEY },
	{ "ek-roots", required_argument, NULL, O_EK_ROOTS },
	{ "expect-cluster", required_argument, NULL, O_EXPECT_CLUSTER },
	{ "timeout-ms", required_argument, NULL, O_TIMEOUT },
	{ "tcti", required_argument, NULL, O_TCTI },
	{ "ak-state", required_argument, NULL, O_AK_STATE },
	{ "event-log", required_argument, NULL, O_EVENT_LOG },
	{ "no-event-log", no_argument, NULL, O_NO_EVENT_LOG },
	{ "ek-chain", required_argument, NULL, O_EK_CHAIN },
	{ "pcrs", required_argument, NULL, O_PCRS },
	{ "no-pcr-extend", no_argument, NULL, O_NO_PCR_EXTEND },
	{ "ak-per-boot", no_argument, NULL, O_AK_PER_BOOT },
	{ "disk-uuid", required_argument, NULL, O_DISK_UUID },
	{ "state-disk", required_argument, NULL, O_STATE_DISK },
	{ "state-dir", required_argument, NULL, O_STATE_DIR },
	{ "endpoint", required_argument, NULL, O_ENDPOINT },
	{ "name", required_argument, NULL, O_NAME },
	{ "wg-if", required_argument, NULL, O_WG_IF },
	{ "no-wireguard", no_argument, NULL, O_NO_WIREGUARD },
	{ "wg-port", required_argument, NULL, O_WG_PORT },
	{ "underlay", required_argument, NULL, O_UNDERLAY },
	{ "pin-root", required_argument, NULL, O_PIN_ROOT },
	{ "overlay-v4", required_argument, NULL, O_OVERLAY_V4 },
	{ "overlay-v6", required_argument, NULL, O_OVERLAY_V6 },
	{ "pod-pool", required_argument, NULL, O_POD_POOL },
	{ "control-plane", no_argument, NULL, O_CONTROL_PLANE },
	{ "keepalive", required_argument, NULL, O_KEEPALIVE },
	{ "reattest-s", required_argument, NULL, O_REATTEST },
	{ "session-timeout-s", required_argument, NULL, O_SILENCE },
	{ "status", required_argument, NULL, O_STATUS },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct inputs {
	char join_host[64];
	const char *cp_policy, *policy_key, *ek_roots;
	uint8_t cluster[32];
	bool has_cluster, has_uuid;
	char disk_dev[64];
};

static int number(const char *s, unsigned long max, int base, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(s, &end, base);
	return errno || end == s || *end || *s == '-' || *out > max ? -EINVAL : 0;
}

static int hex_exact(const char *s, uint8_t *out, size_t n)
{
	size_t len = 0;

	return hex_decode(s, out, n, &len) == 0 && len == n ? 0 : -EINVAL;
}

static int set_option(struct agent_config *c, struct inputs *in, int opt, const char *arg)
{
	unsigned long v;

	switch (opt) {
	case O_JOIN:
		return net_parse_hostport(arg, in->join_host, sizeof(in->join_host), &c->join_port);
	case O_CP_POLICY: in->cp_policy = arg; return 0;
	case O_POLICY_KEY: in->policy_key = arg; return 0;
	case O_EK_ROOTS: in->ek_roots = arg; return 0;
	case O_EXPECT_CLUSTER:
		in->has_cluster = true;
		return hex_exact(arg, in->cluster, sizeof(in->cluster));
	case O_TCTI: c->attest.tcti = arg; return 0;
	case O_AK_STATE: c->attest.ak_state = arg; return 0;
	case O_EVENT_LOG: c->attest.event_log = arg; return 0;
	case O_NO_EVENT_LOG: c->attest.event_log = NULL; return 0;
	case O_EK_CHAIN: c->attest.ek_chain = arg; return 0;
	case O_NO_PCR_EXTEND: c->extend_pcr = false; return 0;
	case O_AK_PER_BOOT: c->attest.ak_per_boot = true; return 0;
	case O_DISK_UUID:
		in->has_uuid = true;
		return hex_exact(arg, c->disk_uuid, sizeof(c->disk_uuid));
	case O_STATE_DISK:
		if (strncmp(arg, "serial:", 7) != 0) {
			c->state_disk = arg;
			return 0;
		}
		if (disk_find_by_serial(arg + 7, in->disk_dev, sizeof(in->disk_dev)) < 0) {
			fprintf(stderr, "conclave-agent: no block device has serial %s\n", arg + 7);
			return -ENOENT;
		}
		c->state_disk = in->disk_dev;
		return 0;
	case O_STATE_DIR: c->state_dir = arg; return 0;
	case O_ENDPOINT: c->endpoint = arg; return 0;
	case O_NAME: c->node_name = arg; return 0;
	case O_WG_IF: c->wg_ifname = arg; return 0;
	case O_NO_WIREGUARD: c->wg_ifname = NULL; return 0;
	case O_UNDERLAY: c->underlay_ifname = arg; return 0;
	case O_PIN_ROOT: c->pin_root = arg; return 0;
	case O_OVERLAY_V4: c->overlay_v4 = arg; return 0;
	case O_OVERLAY_V6: c->overlay_v6 = arg; return 0;
	case O_POD_POOL: c->pod_pool = arg; return 0;
	case O_CONTROL_PLANE: c->control_plane = true; return 0;
	case O_STATUS: c->status_path = strcmp(arg, "-") ? arg : NULL; return 0;
	case 'v': log_set_level(LOG_LVL_INFO); return 0;
	case O_TIMEOUT:
	case O_PCRS:
	case O_WG_PORT:
	case O_KEEPALIVE:
	case O_REATTEST:
	case O_SILENCE: break;
	default: return -EINVAL;
	}
	if (number(arg, opt == O_PCRS ? 0xffffff : 86400 * 7, opt == O_PCRS ? 16 : 10, &v) < 0)
		return -EINVAL;
	switch (opt) {
	case O_TIMEOUT: c->timeout_ms = (int)v; return v ? 0 : -EINVAL;
	case O_PCRS: c->attest.pcr_mask = (uint32_t)v; return v ? 0 : -EINVAL;
	case O_WG_PORT: c->wg_port = (uint16_t)v; return v && v < 65536 ? 0 : -EINVAL;
	case O_KEEPALIVE: c->keepalive_s = (uint16_t)v; return v < 65536 ? 0 : -EINVAL;
	case O_SILENCE: c->silence_s = (int)v; return v ? 0 : -EINVAL;
	default: c->reattest_s = (int)v; return 0;
	}
}

/* The control plane's policy and roots: what a join service must prove. */
static int load_trust(const struct inputs *in, struct policy *p, X509_STORE **ca, struct diag *d)
{
	EVP_PKEY *pub = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;
	int ret = policy_load_public(in->policy_key, &pub, d);

	if (ret == 0) {
		ret = read_file(in->cp_policy, POLICY_MAX_SIZE, &buf, &len);
		if (ret < 0)
			diag_set(d, "control-plane policy %s: %s", in->cp_policy, strerror(-ret));
	}
	if (ret == 0)
		ret = policy_verify((const char *)buf, len, pub, p, d);
	if (ret == 0)
		ret = ca_store_load(in->ek_roots, ca, d);
	free(buf);
	EVP_PKEY_free(pub);
	return ret;
}

int main(int argc, char **argv)
{
	struct agent_config c = {
		.attest = { .tcti = "device:/dev/tpmrm0",
			    .event_log = DEFAULT_EVENTLOG,
			    .pcr_mask = NODE_QUOTE_PCRS },
		.extend_pcr = true,
		.wg_ifname = AGENT_DEFAULT_WG_IFNAME,
		.wg_port = AGENT_DEFAULT_WG_PORT,
		.keepalive_s = AGENT_DEFAULT_KEEPALIVE_S,
		.reattest_s = AGENT_DEFAULT_REATTEST_S,
		.status_path = AGENT_DEFAULT_STATUS_PATH,
		.stop = &stop,
	};
	struct inputs in;
	struct sigaction sa = { .sa_handler = on_signal };
	struct policy cp = { 0 };
	X509_STORE *ca = NULL;
	struct diag d = { { 0 } };
	int opt, ret;

	memset(&in, 0, sizeof(in));
	setenv("TSS2_LOG", "all+none", 0);
	while ((opt = getopt_long(argc, argv, "vh", options, NULL)) != -1) {
		if (opt == 'h') {
			usage(stdout);
			return 0;
		}
		if (set_option(&c, &in, opt, optarg) < 0) {
			if (opt != '?')
				fprintf(stderr, "conclave-agent: bad value for --%s: %s\n",
					options[opt - O_JOIN].name, optarg);
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || !in.join_host[0] || !in.cp_policy || !in.policy_key || !in.ek_roots ||
	    !c.attest.ak_state || in.has_uuid == !!c.state_disk || !c.endpoint) {
		fprintf(stderr, "conclave-agent: --join, --cp-policy, --policy-key, --ek-roots, "
				"--ak-state, --endpoint and one of --state-disk or --disk-uuid are "
				"required\n");
		return 2;
	}
	if (!(c.attest.pcr_mask & 1u << AGENT_CLUSTER_PCR)) {
		fprintf(stderr, "conclave-agent: --pcrs must include PCR %d\n", AGENT_CLUSTER_PCR);
		return 2;
	}
	/* It holds WireGuard private keys and its disk key: no core dumps, no ptrace by others. */
	if (secret_harden_process() < 0)
		fprintf(stderr, "conclave-agent: warning: core dumps could not be disabled\n");
	if (load_trust(&in, &cp, &ca, &d) < 0) {
		fprintf(stderr, "conclave-agent: %s\n", d.msg);
		return 1;
	}
	c.join_host = in.join_host;
	c.cp_policy = &cp;
	c.cp_ca = ca;
	c.expect_cluster = in.has_cluster ? in.cluster : NULL;
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	ret = agent_run(&c, &d);
	if (ret < 0)
		fprintf(stderr, "conclave-agent: %s\n", d.msg);
	policy_free(&cp);
	X509_STORE_free(ca);
	return ret < 0 ? 1 : 0;
}
