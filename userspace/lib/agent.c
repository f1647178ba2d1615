// SPDX-License-Identifier: Apache-2.0
/* The node agent's state machine (include/conclave/agent.h, docs/agent.md). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "conclave/agent.h"
#include "conclave/datapath.h"
#include "conclave/disk.h"
#include "conclave/features.h"
#include "conclave/joinclient.h"
#include "conclave/log.h"
#include "conclave/mesh.h"
#include "conclave/rtnl.h"
#include "conclave/tpm.h"
#include "conclave/util.h"
#include "conclave/wg.h"

enum state {
	ST_STARTING,
	ST_MODULES,
	ST_KEYS,
	ST_MESH_SETUP,
	ST_JOINING,
	ST_RUNNING,
	ST_RECONNECTING,
	ST_REFUSED,
	ST_STOPPED,
};

static const char *const state_names[] = {
	[ST_STARTING] = "starting",	    [ST_MODULES] = "modules", [ST_KEYS] = "keys",
	[ST_MESH_SETUP] = "mesh-setup",	    [ST_JOINING] = "joining", [ST_RUNNING] = "running",
	[ST_RECONNECTING] = "reconnecting", [ST_REFUSED] = "refused", [ST_STOPPED] = "stopped",
};

struct shown {
	enum state state;
	char last_error[256];
	bool joined;
	uint8_t cluster_id[32], pub[32];
	struct peer self;
	uint64_t generation, attested_ms;
	size_t peers;
	bool session;
	char disk[160];
};

struct agent {
	const struct agent_config *c;
	/* Keys: the current pair, and the next one while a re-attestation is in flight. */
	struct secret *priv, *next_priv;
	/* Session and view. */
	struct joinclient_session *sess;
	uint64_t last_attested_ms, joined_ms; /* last attempt (schedule), join */
	uint64_t attested_ok_ms;	      /* last accepted attestation (status) */
	/* Mesh. */
	struct wg *wg;
	struct datapath *dp;
	struct mesh *mesh;
	/* Status: a thread answers from `shown`, a copy the state machine publishes, so a status
	 * request never waits for a join or a TPM. */
	pthread_t status_thread;
	pthread_mutex_t shown_lock;
	/* The state disk: what it is (probed before each join until it is open). */
	struct disk_config disk;
	struct disk_probe probe;
	struct joinclient_config jc;
	struct join_info info;
	struct shown shown;
	enum state state;
	int wg_ifindex;
	int status_fd;
	int backoff_ms;
	bool joined_once;
	bool addressed;
	bool status_running;
	atomic_bool stopping;
	bool disk_open;
	uint8_t pub[32], next_pub[32];
	uint8_t node_id[32]; /* our EK's hash: the disk's owner */
	char disk_status[160];
	char last_error[256];
};

static const char *state_name(enum state s)
{
	return s < sizeof(state_names) / sizeof(state_names[0]) && state_names[s] ? state_names[s]
										  : "unknown";
}

/* Copy what status shows. */
static void publish(struct agent *a)
{
	pthread_mutex_lock(&a->shown_lock);
	a->shown.state = a->state;
	memcpy(a->shown.last_error, a->last_error, sizeof(a->shown.last_error));
	a->shown.joined = a->joined_once;
	memcpy(a->shown.cluster_id, a->info.cluster_id, 32);
	memcpy(a->shown.pub, a->pub, 32);
	a->shown.self = a->info.view.self;
	a->shown.generation = a->info.view.generation;
	a->shown.attested_ms = a->attested_ok_ms;
	a->shown.peers = a->mesh ? mesh_peer_count(a->mesh) : 0;
	a->shown.session = a->sess != NULL;
	memcpy(a->shown.disk, a->disk_status, sizeof(a->shown.disk));
	pthread_mutex_unlock(&a->shown_lock);
}

static void set_state(struct agent *a, enum state s, const char *why)
{
	if (a->state == s && !why)
		return;
	a->state = s;
	if (why)
		snprintf(a->last_error, sizeof(a->last_error), "%s", why);
	if (why && (s == ST_RECONNECTING || s == ST_REFUSED))
		log_warn("agent: %s: %s", state_name(s), why);
	else
		log_info("agent: %s%s%s", state_name(s), why ? ": " : "", why ? why : "");
	publish(a);
}

void agent_cluster_pcr(const uint8_t cluster_id[32], uint8_t out[32])
{
	uint8_t buf[64] = { 0 };

	memcpy(buf + 32, cluster_id, 32);
	EVP_Digest(buf, sizeof(buf), out, NULL, EVP_sha256(), NULL);
}

/* ---- status ------------------------------------------------------------------------------ */

static int status_open(struct agent *a, struct diag *d)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = a->c->status_path;

	a->status_fd = -1;
	if (!path)
		return 0;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		diag_set(d, "status socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	(void)unlink(path);
	a->status_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	/* Root only: the status names peers and keys' public halves, nothing secret, but it is
	 * the node's business. */
	if (a->status_fd < 0 || bind(a->status_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(path, 0600) < 0 || listen(a->status_fd, 8) < 0) {
		diag_set(d, "status socket %s: %s", path, strerror(errno));
		if (a->status_fd >= 0)
			close(a->status_fd);
		a->status_fd = -1;
		return -errno;
	}
	return 0;
}

/* One JSON object: state, identity, mesh. */
static void status_write(const struct shown *v, int reattest_s, FILE *f)
{
	json_object *o = json_object_new_object();
	char hex[65], key[65];

	hex_encode(v->cluster_id, 32, hex);
	hex_encode(v->pub, 32, key);
	json_object_object_add(o, "state", json_object_new_string(state_name(v->state)));
	json_object_object_add(o, "last_error", json_object_new_string(v->last_error));
	json_object_object_add(o, "cluster_id", json_object_new_string(v->joined ? hex : ""));
	json_object_object_add(o, "wg_public_key", json_object_new_string(key));
	json_object_object_add(o, "node_id", json_object_new_int64(v->self.node_id));
	json_object_object_add(o, "generation", json_object_new_uint64(v->generation));
	json_object_object_add(o, "peers", json_object_new_uint64(v->peers));
	json_object_object_add(o, "overlay_v4", json_object_new_string(v->self.overlay_v4));
	json_object_object_add(o, "overlay_v6", json_object_new_string(v->self.overlay_v6));
	json_object_object_add(o, "pod_cidr", json_object_new_string(v->self.pod_cidr));
	json_object_object_add(o, "session", json_object_new_boolean(v->session));
	json_object_object_add(o, "state_disk", json_object_new_string(v->disk));
	json_object_object_add(o, "reattest_interval_s", json_object_new_int(reattest_s));
	json_object_object_add(
	    o, "seconds_since_attested",
	    json_object_new_int64(v->attested_ms ? (int64_t)((mono_ms() - v->attested_ms) / 1000)
						 : -1));
	fprintf(f, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
}

static void *status_main(void *arg)
{
	struct agent *a = arg;

	while (!a->stopping) {
		struct pollfd p = { .fd = a->status_fd, .events = POLLIN };
		struct shown v;
		FILE *f;
		int fd;

		if (poll(&p, 1, 200) <= 0)
			continue;
		fd = accept4(a->status_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		f = fdopen(fd, "w");
		if (!f) {
			close(fd);
			continue;
		}
		pthread_mutex_lock(&a->shown_lock);
		v = a->shown;
		pthread_mutex_unlock(&a->shown_lock);
		status_write(&v, a->c->reattest_s, f);
		fclose(f);
	}
	return NULL;
}

static int status_start(struct agent *a, struct diag *d)
{
	int ret = status_open(a, d);

	if (ret < 0 || a->status_fd < 0)
		return ret;
	ret = pthread_create(&a->status_thread, NULL, status_main, a);
	if (ret != 0) {
		diag_set(d, "status thread: %s", strerror(ret));
		return -ret;
	}
	a->status_running = true;
	return 0;
}

/* ---- kernel features ---------------------------------------------------------------------- */

/* What this configuration needs from the kernel, loaded through libkmod where modules provide
 * it; each missing feature is named with the reason (`conclavectl doctor` runs the same checks). */
static int ensure_features(struct agent *a, struct diag *d)
{
	const char *need[4];
	size_t n = 0;
	int ret = 0;

	if (a->c->wg_ifname)
		need[n++] = "wireguard";
	if (a->c->underlay_ifname) {
		need[n++] = "bpf";
		need[n++] = "tc-bpf";
	}
	for (size_t i = 0; i < n; i++) {
		const struct feature *f = feature_find(need[i]);
		struct feature_result r;

		if (!f || feature_check(NULL, f, FEATURE_ENSURE, &r) < 0) {
			diag_set(d, "kernel feature %s missing: %s%s%s", need[i],
				 f ? r.detail : "unknown", f && r.remedy[0] ? "; " : "",
				 f ? r.remedy : "");
			ret = -EOPNOTSUPP;
			break;
		}
		log_info("agent: %s: %s", need[i], r.detail);
	}
	return ret;
}

/* ---- keys -------------------------------------------------------------------------------- */

static int new_keys(struct agent *a, struct secret **priv, uint8_t pub[32], struct diag *d)
{
	int ret = wg_generate_key(priv, pub, d);

	if (ret < 0)
		diag_prefix(d, "WireGuard key pair");
	return ret;
}

/* ---- mesh set-up (once per start) -------------------------------------------------------- */

static int cidr_prefix(const char *cidr)
{
	const char *slash = cidr ? strchr(cidr, '/') : NULL;

	return slash ? atoi(slash + 1) : -1;
}

static int datapath_setup(struct agent *a, struct diag *d)
{
	const struct agent_config *c = a->c;
	struct dp_opts o = { .pin_root = c->pin_root };
	struct dp_cidr cidrs[3];
	size_t n = 0;
	int ret;

	if (!c->underlay_ifname)
		return 0;
	o.ifindex = (int)if_nametoindex(c->underlay_ifname);
	if (!o.ifindex) {
		diag_set(d, "underlay interface %s: %s", c->underlay_ifname, strerror(errno));
		return -ENODEV;
	}
	o.config.wg_port = c->wg_port;
	o.config.join_port = c->control_plane ? c->join_port : 0;
	o.config.control_plane = c->control_plane;
	o.config.strict = 1;
	o.config.exempt =
	    DP_EXEMPT_ARP | DP_EXEMPT_ND | DP_EXEMPT_DHCP | DP_EXEMPT_ICMP_ERROR | DP_EXEMPT_REPLY;
	o.config.events_per_sec = 100;
	if (c->overlay_v4 && dp_cidr_parse(c->overlay_v4, DP_CIDR_NODE, &cidrs[n]) == 0)
		n++;
	if (c->overlay_v6 && dp_cidr_parse(c->overlay_v6, DP_CIDR_NODE, &cidrs[n]) == 0)
		n++;
	if (c->pod_pool && dp_cidr_parse(c->pod_pool, DP_CIDR_POD, &cidrs[n]) == 0)
		n++;
	ret = datapath_ensure_bpffs(c->pin_root ? c->pin_root : DP_PIN_ROOT, d);
	if (ret == 0)
		ret = datapath_open(&o, &a->dp, d);
	/* Strict mode and the cluster ranges before any peer (and before the programs are
	 * attached, so no moment exists where cluster traffic leaves unencrypted). */
	if (ret == 0)
		ret = datapath_set_cidrs(a->dp, cidrs, n, d);
	if (ret == 0)
		ret = datapath_attach(a->dp, d);
	if (ret < 0)
		diag_prefix(d, "datapath");
	return ret;
}

static int wireguard_setup(struct agent *a, struct diag *d)
{
	const struct agent_config *c = a->c;
	unsigned int mtu = 1500;
	int under = 0, ret;

	if (!c->wg_ifname)
		return 0;
	if (c->underlay_ifname && rtnl_link_get(c->underlay_ifname, &under, &mtu, d) < 0)
		return -ENODEV;
	ret = wg_open(&a->wg, d);
	if (ret == 0)
		ret = rtnl_link_ensure(c->wg_ifname, "wireguard", &a->wg_ifindex, d);
	if (ret == 0)
		ret = wg_set_device(a->wg, c->wg_ifname, a->priv, c->wg_port, d);
	if (ret == 0)
		ret = rtnl_link_up(a->wg_ifindex, wg_mtu(mtu, AF_INET), d);
	if (ret < 0)
		diag_prefix(d, "WireGuard %s", c->wg_ifname);
	return ret;
}

/* Our overlay addresses (with the cluster range's prefix, so the range routes to WireGuard) and
 * the pod pool's route, once we know them. */
static int wireguard_address(struct agent *a, struct diag *d)
{
	const struct agent_config *c = a->c;
	const struct peer *self = &a->info.view.self;
	char cidr[64];
	int ret = 0;

	if (!a->wg || a->addressed)
		return 0;
	if (self->overlay_v4[0] && cidr_prefix(c->overlay_v4) > 0) {
		snprintf(cidr, sizeof(cidr), "%s/%d", self->overlay_v4, cidr_prefix(c->overlay_v4));
		ret = rtnl_addr_add(a->wg_ifindex, cidr, d);
	}
	if (ret == 0 && self->overlay_v6[0] && cidr_prefix(c->overlay_v6) > 0) {
		snprintf(cidr, sizeof(cidr), "%s/%d", self->overlay_v6, cidr_prefix(c->overlay_v6));
		ret = rtnl_addr_add(a->wg_ifindex, cidr, d);
	}
	if (ret == 0 && c->pod_pool)
		ret = rtnl_route_replace(a->wg_ifindex, c->pod_pool, d);
	if (ret == 0)
		a->addressed = true;
	return ret;
}

/* ---- PCR 15 ------------------------------------------------------------------------------ */

/* Once per boot: extend PCR 15 with the cluster identity; a PCR that already holds another
 * cluster's means this boot joined elsewhere, and we stop. */
static int record_cluster(struct agent *a, struct diag *d)
{
	static const uint8_t zero[32];
	uint8_t pcrs[24][32], want[32];
	struct tpm *t = NULL;
	int ret;

	if (!a->c->extend_pcr)
		return 0;
	agent_cluster_pcr(a->info.cluster_id, want);
	ret = tpm_open(a->c->attest.tcti, &t, d);
	if (ret == 0)
		ret = tpm_pcr_read(t, 1u << AGENT_CLUSTER_PCR, pcrs, NULL, d);
	if (ret == 0 && !memcmp(pcrs[AGENT_CLUSTER_PCR], zero, 32))
		ret = tpm_pcr_extend(t, AGENT_CLUSTER_PCR, a->info.cluster_id, d);
	else if (ret == 0 && memcmp(pcrs[AGENT_CLUSTER_PCR], want, 32) != 0) {
		diag_set(d,
			 "PCR %d holds another cluster's identity: this boot joined another "
			 "cluster",
			 AGENT_CLUSTER_PCR);
		ret = -EPERM;
	}
	tpm_close(t);
	return ret;
}

/* ---- the state disk ------------------------------------------------------------------------ */

static void disk_status(struct agent *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void disk_status(struct agent *a, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(a->disk_status, sizeof(a->disk_status), fmt, ap);
	va_end(ap);
	publish(a);
}

/* Before a join: which disk UUID to bind into the quote. Already open (an agent restart, or
 * on the control plane the join service's doing): its UUID. Otherwise the header, checked:
 * a disk of another node, another cluster or a tampered header stays closed (-EACCES: refused,
 * retried slowly). The control plane's agent waits for the join service to open it. */
static int disk_prepare(struct agent *a, struct diag *d)
{
	int ret;

	if (!a->c->state_disk || a->disk_open)
		return 0;
	ret = disk_active(&a->disk, a->probe.uuid, d);
	if (ret == 1) {
		a->probe.state = DISK_READY;
		return 0;
	}
	if (ret == 0 && a->c->control_plane) {
		diag_set(d, "waiting for the join service to open the state disk");
		disk_status(a, "closed: %s", d->msg);
		return -EAGAIN;
	}
	if (ret == 0)
		ret = disk_probe(&a->disk, &a->probe, d);
	if (ret < 0) {
		diag_prefix(d, "state disk");
		disk_status(a, "closed: %s", d->msg);
		return ret == -EAGAIN || ret == -EIO ? ret : -EACCES;
	}
	return 0;
}

/* After the join service sent the disk key: format or open, mount; the key is wiped here. */
static int disk_open(struct agent *a, struct diag *d)
{
	static const char *const what[] = { "formatted", "formatted", "opened" };
	char uuid[33];
	int ret;

	if (!a->c->state_disk || a->disk_open)
		return 0;
	a->disk.cluster_id = a->info.cluster_id;
	ret = disk_unlock(&a->disk, &a->probe, a->info.disk_key, d);
	secret_free(a->info.disk_key);
	a->info.disk_key = NULL;
	hex_encode(a->probe.uuid, 16, uuid);
	if (ret < 0) {
		diag_prefix(d, "state disk");
		disk_status(a, "closed: %s", d->msg);
		return -EACCES;
	}
	a->disk_open = true;
	disk_status(a, "open: %s at %s (UUID %s)", a->c->state_disk,
		    a->c->state_dir ? a->c->state_dir : DISK_DEFAULT_MOUNT, uuid);
	log_info("agent: state disk %s %s", uuid, what[a->probe.state]);
	return 0;
}

/* ---- the session ------------------------------------------------------------------------- */

static void drop_session(struct agent *a)
{
	joinclient_close(a->sess);
	a->sess = NULL;
	secret_free(a->next_priv);
	a->next_priv = NULL;
}

static int apply_view(struct agent *a, struct diag *d)
{
	struct mesh_stats st;
	int ret = mesh_apply(a->mesh, &a->info.view, &st, d);

	publish(a);
	if (ret == 0 && (st.added || st.updated || st.removed))
		log_info("agent: generation %llu: %zu peers (+%zu ~%zu -%zu)",
			 (unsigned long long)a->info.view.generation, mesh_peer_count(a->mesh),
			 st.added, st.updated, st.removed);
	return ret;
}

static int join(struct agent *a, struct diag *d)
{
	int ret;

	join_info_clear(&a->info);
	a->jc.wg_pubkey = a->pub;
	ret = disk_prepare(a, d);
	if (ret < 0)
		return ret;
	ret = joinclient_subscribe(&a->jc, &a->info, &a->sess, d);
	if (ret < 0) {
		if (a->c->state_disk && !a->disk_open)
			disk_status(a, "closed: no key without a join: %s", d->msg);
		return ret;
	}
	ret = record_cluster(a, d);
	if (ret == 0)
		ret = disk_open(a, d);
	if (ret == 0)
		ret = wireguard_address(a, d);
	if (ret == 0)
		ret = apply_view(a, d);
	if (ret < 0) {
		drop_session(a);
		return ret;
	}
	a->joined_once = true;
	a->last_attested_ms = a->joined_ms = a->attested_ok_ms = mono_ms();
	a->backoff_ms = AGENT_BACKOFF_MIN_MS;
	publish(a);
	return 0;
}

/* Up to a tenth of the interval, at random: nodes started together drift apart instead of
 * rotating their keys at the same moment. */
static uint64_t jitter_ms(const struct agent *a)
{
	unsigned int r = 0;
	uint64_t span = (uint64_t)a->c->reattest_s * 100; /* a tenth, in ms */

	RAND_bytes((unsigned char *)&r, sizeof(r));
	return span ? r % span : 0;
}

/* Re-attest with a fresh key pair; the switch happens when the join service accepted it. */
static int reattest(struct agent *a, struct diag *d)
{
	int ret;

	secret_free(a->next_priv);
	a->next_priv = NULL;
	ret = new_keys(a, &a->next_priv, a->next_pub, d);
	if (ret == 0)
		ret = joinclient_reattest(a->sess, &a->jc, a->next_pub, d);
	if (ret == 0)
		a->last_attested_ms =
		    mono_ms() - jitter_ms(a); /* the next one about an interval on */
	return ret;
}

/* Accepted: the join service has pushed our new key to every peer; now it is ours. */
static int rotate(struct agent *a, struct diag *d)
{
	int ret = 0;

	if (!a->next_priv)
		return 0;
	if (a->wg)
		ret = wg_set_device(a->wg, a->c->wg_ifname, a->next_priv, a->c->wg_port, d);
	/* Peers that already know the new key tried to reach us with it before we switched:
	 * initiate ourselves rather than wait for their 5 s retry. */
	if (ret == 0)
		ret = mesh_kick(a->mesh, d);
	if (ret < 0)
		return ret;
	secret_free(a->priv);
	a->priv = a->next_priv;
	a->next_priv = NULL;
	memcpy(a->pub, a->next_pub, 32);
	a->attested_ok_ms = mono_ms();
	publish(a);
	log_info("agent: re-attested; WireGuard key rotated");
	return 0;
}

/* Everything queued on the session, without waiting. */
static int drain(struct agent *a, struct diag *d)
{
	for (;;) {
		int ret = joinclient_next(a->sess, &a->info.view, 0, d);

		if (ret == 0)
			return 0;
		if (ret == 1)
			ret = apply_view(a, d);
		else if (ret == JOINCLIENT_REATTESTED)
			ret = rotate(a, d);
		if (ret < 0)
			return ret;
	}
}

static void poll_once(struct agent *a, int timeout_ms)
{
	struct pollfd p = { .fd = a->sess ? joinclient_fd(a->sess) : -1, .events = POLLIN };

	(void)poll(&p, 1, timeout_ms);
}

/* Sleep ms, unless stopped. */
static void wait_ms(struct agent *a, int ms)
{
	uint64_t end = mono_ms() + (uint64_t)ms;

	while (!*a->c->stop && mono_ms() < end) {
		uint64_t left = end - mono_ms();

		poll_once(a, left > 200 ? 200 : (int)left);
	}
}

static int next_backoff(struct agent *a)
{
	unsigned int jitter = 0;
	int ms = a->backoff_ms;

	RAND_bytes((unsigned char *)&jitter, sizeof(jitter));
	a->backoff_ms =
	    a->backoff_ms * 2 > AGENT_BACKOFF_MAX_MS ? AGENT_BACKOFF_MAX_MS : a->backoff_ms * 2;
	return ms / 2 + (int)(jitter % (unsigned int)(ms / 2 + 1));
}

static void run_session(struct agent *a)
{
	int silence_s = a->c->silence_s > 0 ? a->c->silence_s : AGENT_DEFAULT_SILENCE_S;
	struct diag d = { { 0 } };
	int ret = 0;

	while (!*a->c->stop && ret == 0) {
		uint64_t due = a->last_attested_ms + (uint64_t)a->c->reattest_s * 1000;
		int timeout = 1000;

		ret = drain(a, &d);
		if (ret < 0)
			break;
		/* A partition shows only as silence: no update, no heartbeat. */
		if (mono_ms() - joinclient_heard_ms(a->sess) > (uint64_t)silence_s * 1000) {
			diag_set(&d,
				 "nothing from the join service for %d s, not even a heartbeat: "
				 "the session is presumed lost",
				 silence_s);
			ret = -ETIMEDOUT;
			break;
		}
		if (a->c->reattest_s > 0 && mono_ms() >= due) {
			ret = reattest(a, &d);
			continue;
		}
		if (a->c->reattest_s > 0 && due - mono_ms() < (uint64_t)timeout)
			timeout = (int)(due - mono_ms());
		poll_once(a, timeout);
	}
	if (*a->c->stop)
		return;
	drop_session(a);
	set_state(a, ret == -EACCES ? ST_REFUSED : ST_RECONNECTING, d.msg);
}

/* ---- the whole ---------------------------------------------------------------------------- */

static int setup(struct agent *a, struct diag *d)
{
	const struct agent_config *c = a->c;
	struct mesh_config mc = { .wg_ifname = c->wg_ifname, .keepalive_s = c->keepalive_s };
	int ret;

	set_state(a, ST_MODULES, NULL);
	ret = ensure_features(a, d);
	if (ret < 0)
		return ret;
	set_state(a, ST_KEYS, NULL);
	ret = new_keys(a, &a->priv, a->pub, d);
	if (ret == 0 && c->state_disk) {
		a->disk = (struct disk_config){ .dev = c->state_disk,
						.mountpoint = c->state_dir,
						.node_id = a->node_id };
		ret = attest_node_id(c->attest.tcti, a->node_id, d);
		disk_status(a, "closed: not joined yet");
	} else if (ret == 0) {
		disk_status(a, "none");
	}
	if (ret < 0)
		return ret;
	set_state(a, ST_MESH_SETUP, NULL);
	ret = datapath_setup(a, d);
	if (ret == 0)
		ret = wireguard_setup(a, d);
	if (ret < 0)
		return ret;
	mc.wg = a->wg;
	mc.dp = a->dp;
	return mesh_new(&mc, &a->mesh, d);
}

static void config_join(struct agent *a)
{
	const struct agent_config *c = a->c;

	a->jc = (struct joinclient_config){
		.host = c->join_host,
		.port = c->join_port,
		.connect_timeout_ms = c->timeout_ms,
		.timeout_ms = c->timeout_ms,
		.cp_policy = c->cp_policy,
		.cp_ca = c->cp_ca,
		.attest = c->attest,
		.disk_uuid = c->state_disk ? a->probe.uuid : c->disk_uuid,
		.endpoints = { c->endpoint },
		.n_endpoints = 1,
		.node_name = c->node_name,
		.expect_cluster = c->expect_cluster,
	};
}

int agent_run(const struct agent_config *c, struct diag *d)
{
	struct agent a = { .c = c,
			   .backoff_ms = AGENT_BACKOFF_MIN_MS,
			   .status_fd = -1,
			   .shown_lock = PTHREAD_MUTEX_INITIALIZER };
	int ret;

	if (!c->join_host || !c->cp_policy || !c->cp_ca || !c->endpoint || !c->stop ||
	    !c->attest.tcti || !c->attest.ak_state) {
		diag_set(d, "agent: missing configuration (join service, control-plane policy, "
			    "EK roots, endpoint, TPM, AK state)");
		return -EINVAL;
	}
	set_state(&a, ST_STARTING, NULL);
	config_join(&a);
	ret = status_start(&a, d);
	if (ret == 0)
		ret = setup(&a, d);
	while (ret == 0 && !*c->stop) {
		struct diag jd = { { 0 } };
		int jr;

		set_state(&a, ST_JOINING, NULL);
		jr = join(&a, &jd);
		if (jr == 0) {
			set_state(&a, ST_RUNNING, NULL);
			run_session(&a);
			/* Revoked or refused on the session: not straight back in. */
			if (a.state == ST_REFUSED)
				wait_ms(&a, AGENT_REFUSED_RETRY_MS);
			continue;
		}
		if (jr == -EPERM) { /* PCR 15 says another cluster: nothing to retry */
			diag_set(d, "%s", jd.msg);
			ret = jr;
			break;
		}
		set_state(&a, jr == -EACCES ? ST_REFUSED : ST_RECONNECTING, jd.msg);
		wait_ms(&a, jr == -EACCES ? AGENT_REFUSED_RETRY_MS : next_backoff(&a));
	}
	set_state(&a, ST_STOPPED, NULL);
	a.stopping = true;
	if (a.status_running)
		pthread_join(a.status_thread, NULL);
	drop_session(&a);
	join_info_clear(&a.info);
	mesh_free(a.mesh);
	/* WireGuard and the pinned datapath stay: a restarted agent resynchronises them. */
	datapath_close(a.dp);
	wg_close(a.wg);
	secret_free(a.priv);
	if (a.status_fd >= 0) {
		close(a.status_fd);
		unlink(c->status_path);
	}
	return ret;
}
