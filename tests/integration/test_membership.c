// SPDX-License-Identifier: Apache-2.0
/* The membership store on a real file: joins, rejoins, revocation, the disk-key gate and the
 * operator's disk replacement, the peer set and its deltas, allocation, schema migrations, and
 * a writer killed with SIGKILL at random points that never loses or duplicates a committed
 * member. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "swtpm_harness.h"
#include "conclave/membership.h"

static char dir[64], path[128];
static int seq; /* one fresh store per test */

static const struct membership_config cfg = {
	.overlay_v4 = "10.100.0.0/16",
	.overlay_v6 = "fd00:100::/64",
	.pod_pool = "10.244.0.0/16",
	.pod_prefix = 24,
};

static int make_dir(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/conclave-membership-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd);
}

static int fresh_path(void **state)
{
	snprintf(path, sizeof(path), "%s/members-%d.db", dir, seq++);
	return 0;
}

#define NODE_PCRS 0x91u /* PCRs 0, 4 and 7 */

/* Node n: EK, disk, WireGuard key and PCR values derived from n, counters at a first boot. */
static struct join_record node(unsigned int n)
{
	struct join_record r = { .ak_name_len = 34, .reset_count = 3, .restart_count = 0 };

	memset(r.ek_id, 0xe0, sizeof(r.ek_id));
	memcpy(r.ek_id, &n, sizeof(n));
	r.ak_name[1] = 0x0b;
	memset(r.ak_name + 2, (int)n, 32);
	memset(r.wg_pubkey, 0x70, sizeof(r.wg_pubkey));
	memcpy(r.wg_pubkey, &n, sizeof(n));
	memset(r.disk_uuid, 0xd0, sizeof(r.disk_uuid));
	memcpy(r.disk_uuid, &n, sizeof(n));
	snprintf(r.endpoints, sizeof(r.endpoints), "192.0.2.%u:51820", n % 250);
	r.clock = 1000;
	r.pcr_mask = NODE_PCRS;
	for (unsigned int i = 0; i < 24; i++)
		if (r.pcr_mask & (1u << i))
			memset(r.pcrs[i], (int)(n * 7 + i), sizeof(r.pcrs[i]));
	return r;
}

static struct membership *open_store(void)
{
	struct membership *m = NULL;
	struct diag d = { { 0 } };
	int ret = membership_open(path, &cfg, &m, &d);

	if (ret)
		fail_msg("membership_open: %d %s", ret, d.msg);
	return m;
}

static void join_ok(struct membership *m, const struct join_record *r, struct join_result *res)
{
	struct diag d = { { 0 } };
	int ret = membership_join(m, r, res, &d);

	if (ret)
		fail_msg("membership_join: %d %s", ret, d.msg);
}

static struct member_info *members_ok(struct membership *m, size_t *n)
{
	struct member_info *x = NULL;
	struct diag d = { { 0 } };
	int ret = membership_members(m, &x, n, &d);

	if (ret)
		fail_msg("membership_members: %d %s", ret, d.msg);
	return x;
}

static void first_joins_get_ids_addresses_and_pod_cidrs(void **state)
{
	struct membership *m = open_store();
	struct join_record a = node(1), b = node(2);
	struct join_result ra, rb;
	struct stat st;

	join_ok(m, &a, &ra);
	join_ok(m, &b, &rb);
	assert_false(ra.rejoin);
	assert_int_equal(ra.peer.node_id, 1);
	assert_string_equal(ra.peer.overlay_v4, "10.100.0.1");
	assert_string_equal(ra.peer.overlay_v6, "fd00:100::1");
	assert_string_equal(ra.peer.pod_cidr, "10.244.0.0/24");
	assert_int_equal(rb.peer.node_id, 2);
	assert_string_equal(rb.peer.overlay_v4, "10.100.0.2");
	assert_string_equal(rb.peer.overlay_v6, "fd00:100::2");
	assert_string_equal(rb.peer.pod_cidr, "10.244.1.0/24");
	assert_int_equal(rb.generation, 2);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	membership_close(m);
}

static void rejoin_after_reboot_keeps_identity_and_addresses(void **state)
{
	struct membership *m = open_store();
	struct join_record a = node(1);
	struct join_result first, again;
	uint8_t uuid[MEMBERSHIP_UUID_LEN];

	join_ok(m, &a, &first);
	a.reset_count++; /* rebooted: the TPM clock restarted lower */
	a.clock = 5;
	join_ok(m, &a, &again);
	assert_true(again.rejoin);
	assert_int_equal(again.peer.node_id, first.peer.node_id);
	assert_string_equal(again.peer.overlay_v4, first.peer.overlay_v4);
	assert_string_equal(again.peer.pod_cidr, first.peer.pod_cidr);
	assert_int_equal(again.generation, first.generation); /* nothing peers see changed */
	assert_int_equal(membership_disk_uuid_of(m, first.peer.node_id, uuid, NULL), 0);
	assert_memory_equal(uuid, a.disk_uuid, sizeof(uuid));
	membership_close(m);
}

static void rejoin_with_counters_not_moved_forward_is_refused(void **state)
{
	struct membership *m = open_store();
	struct join_record a = node(1), r;
	struct join_result res;
	struct diag d = { { 0 } };

	a.reset_count = 5;
	a.restart_count = 2;
	a.clock = 1000;
	join_ok(m, &a, &res);

	r = a; /* replayed: identical counters */
	assert_int_equal(membership_join(m, &r, &res, &d), -EPERM);
	assert_non_null(strstr(d.msg, "clock did not advance"));
	r = a;
	r.reset_count = 4; /* TPM state rolled back */
	r.clock = 99999;
	assert_int_equal(membership_join(m, &r, &res, &d), -EPERM);
	assert_non_null(strstr(d.msg, "resetCount went backwards"));
	r = a;
	r.restart_count = 1;
	r.clock = 99999;
	assert_int_equal(membership_join(m, &r, &res, &d), -EPERM);
	assert_non_null(strstr(d.msg, "restartCount went backwards"));
	/* A refused rejoin recorded nothing: the original counters still rule. */
	r = a;
	r.clock = 1001;
	join_ok(m, &r, &res);
	assert_true(res.rejoin);
	membership_close(m);
}

static void rejoin_with_another_disk_is_refused(void **state)
{
	struct membership *m = open_store();
	struct join_record a = node(1);
	struct join_result res;
	struct diag d = { { 0 } };

	join_ok(m, &a, &res);
	a.clock++;
	a.disk_uuid[15] ^= 1;
	assert_int_equal(membership_join(m, &a, &res, &d), -EPERM);
	assert_non_null(strstr(d.msg, "different disk"));
	membership_close(m);
}

static void first_join_with_a_registered_disk_is_refused(void **state)
{
	struct membership *m = open_store();
	struct join_record a = node(1), b = node(2);
	struct join_result res;
	struct diag d = { { 0 } };

	join_ok(m, &a, &res);
	memcpy(b.disk_uuid, a.disk_uuid, sizeof(b.disk_uuid));
	assert_int_equal(membership_join(m, &b, &res, &d), -EPERM);
	assert_non_null(strstr(d.msg, "disk UUID already registered"));
	assert_int_equal(membership_node_of(m, b.ek_id, &res.peer.node_id, NULL), -ENOENT);
	membership_close(m);
}

static void disk_key_for_another_nodes_disk_is_refused(void **state)
{
	struct membership *m = open_store();
	struct join_record a = node(1), b = node(2);
	struct join_result ra, rb;
	uint8_t ek[MEMBERSHIP_EK_ID_LEN];
	struct diag d = { { 0 } };

	join_ok(m, &a, &ra);
	join_ok(m, &b, &rb);
	assert_int_equal(membership_check_disk_key(m, ra.peer.node_id, a.disk_uuid, ek, &d), 0);
	assert_memory_equal(ek, a.ek_id, sizeof(ek));
	assert_int_equal(membership_check_disk_key(m, ra.peer.node_id, b.disk_uuid, ek, &d),
			 -EPERM);
	assert_non_null(strstr(d.msg, "did not register that disk"));
	assert_int_equal(membership_check_disk_key(m, 999, a.disk_uuid, ek, &d), -EPERM);
	assert_int_equal(membership_revoke(m, rb.peer.node_id, NULL), 0);
	assert_int_equal(membership_check_disk_key(m, rb.peer.node_id, b.disk_uuid, ek, &d),
			 -EPERM);
	assert_non_null(strstr(d.msg, "revoked"));
	membership_close(m);
}

/* ---- replace-disk: the operator releases a node's disk, its next join binds a new one ---- */

static uint64_t generation_of(struct membership *m)
{
	struct peer *peers = NULL;
	uint64_t gen = 0;
	size_t n;

	assert_int_equal(membership_snapshot(m, &gen, &peers, &n, NULL), 0);
	free(peers);
	return gen;
}

static void released_disk_is_replaced_at_the_next_rejoin(void **state)
{
	struct membership *m = open_store();
	struct join_record a = node(1), b = node(2);
	struct join_result first, res;
	uint8_t old[MEMBERSHIP_UUID_LEN], uuid[MEMBERSHIP_UUID_LEN], ek[MEMBERSHIP_EK_ID_LEN];
	struct diag d = { { 0 } };
	uint64_t gen;

	join_ok(m, &a, &first);
	join_ok(m, &b, &res);
	gen = generation_of(m);
	memcpy(old, a.disk_uuid, sizeof(old));
	assert_int_equal(membership_release_disk(m, first.peer.node_id, &d), 0);
	assert_int_equal(generation_of(m), gen); /* peers see nothing of a disk */
	/* From the release on, the old disk gets no key, even before the node is back. */
	assert_int_equal(membership_check_disk_key(m, first.peer.node_id, old, ek, &d), -EPERM);
	assert_non_null(strstr(d.msg, "released"));
	/* The release is in the store, not in this connection. */
	membership_close(m);
	m = open_store();
	/* The node rebooted on a blank disk: a new UUID, counters moved forward. */
	a.reset_count++;
	a.clock = 10;
	memset(a.disk_uuid, 0x5e, sizeof(a.disk_uuid));
	join_ok(m, &a, &res);
	assert_true(res.rejoin);
	assert_true(res.disk_bound);
	assert_int_equal(res.peer.node_id, first.peer.node_id);
	assert_string_equal(res.peer.overlay_v4, first.peer.overlay_v4);
	assert_int_equal(res.generation, gen);
	assert_int_equal(membership_disk_uuid_of(m, first.peer.node_id, uuid, NULL), 0);
	assert_memory_equal(uuid, a.disk_uuid, sizeof(uuid));
	assert_int_equal(membership_check_disk_key(m, first.peer.node_id, a.disk_uuid, ek, &d), 0);
	assert_memory_equal(ek, a.ek_id, sizeof(ek));
	/* The old disk's key is gone for good. */
	assert_int_equal(membership_check_disk_key(m, first.peer.node_id, old, ek, &d), -EPERM);
	assert_non_null(strstr(d.msg, "did not register that disk"));
	/* An ordinary rejoin with the new disk binds nothing. */
	a.clock++;
	join_ok(m, &a, &res);
	assert_false(res.disk_bound);
	membership_close(m);
}

static void another_disk_after_the_new_one_is_bound_is_refused_again(void **state)
{
	struct membership *m = open_store();
	struct join_record a = node(1);
	struct join_result res;
	struct diag d = { { 0 } };

	join_ok(m, &a, &res);
	assert_int_equal(membership_release_disk(m, res.peer.node_id, &d), 0);
	a.clock++;
	memset(a.disk_uuid, 0x5e, sizeof(a.disk_uuid));
	join_ok(m, &a, &res);
	assert_true(res.disk_bound);
	/* One release admits one new disk. */
	a.clock++;
	a.disk_uuid[15] ^= 1;
	assert_int_equal(membership_join(m, &a, &res, &d), -EPERM);
	assert_non_null(strstr(d.msg, "different disk"));
	assert_non_null(strstr(d.msg, "replace-disk"));
	membership_close(m);
}

static void released_disk_itself_is_never_bound_again(void **state)
{
	struct membership *m = open_store();
	struct join_record a = node(1), c = node(3), r;
	struct join_result res;
	uint8_t first[MEMBERSHIP_UUID_LEN], ek[MEMBERSHIP_EK_ID_LEN];
	struct diag d = { { 0 } };
	int64_t id;

	join_ok(m, &a, &res);
	id = res.peer.node_id;
	memcpy(first, a.disk_uuid, sizeof(first));
	assert_int_equal(membership_release_disk(m, id, &d), 0);
	/* The host puts the old disk back: refused, and not as a compromised node would be. */
	a.clock++;
	assert_int_equal(membership_join(m, &a, &res, &d), -EKEYREVOKED);
	assert_non_null(strstr(d.msg, "released"));
	/* The refusal recorded nothing: the same counters still admit the new disk. */
	r = a;
	memset(r.disk_uuid, 0x5e, sizeof(r.disk_uuid));
	join_ok(m, &r, &res);
	assert_true(res.disk_bound);
	/* A second release, then the first disk again: still retired. */
	assert_int_equal(membership_release_disk(m, id, &d), 0);
	r.clock++;
	memcpy(r.disk_uuid, first, sizeof(r.disk_uuid));
	assert_int_equal(membership_join(m, &r, &res, &d), -EKEYREVOKED);
	assert_int_equal(membership_check_disk_key(m, id, first, ek, &d), -EPERM);
	/* Nor does any other node register a retired disk. */
	memcpy(c.disk_uuid, first, sizeof(c.disk_uuid));
	assert_int_equal(membership_join(m, &c, &res, &d), -EPERM);
	assert_non_null(strstr(d.msg, "retired"));
	assert_int_equal(membership_node_of(m, c.ek_id, &id, NULL), -ENOENT);
	membership_close(m);
}

static void rejoin_after_a_release_must_still_move_its_counters_forward(void **state)
{
	struct membership *m = open_store();
	struct join_record a = node(1), r;
	struct join_result res;
	struct diag d = { { 0 } };

	join_ok(m, &a, &res);
	assert_int_equal(membership_release_disk(m, res.peer.node_id, &d), 0);
	r = a; /* replayed evidence with a new disk */
	memset(r.disk_uuid, 0x5e, sizeof(r.disk_uuid));
	assert_int_equal(membership_join(m, &r, &res, &d), -EPERM);
	assert_non_null(strstr(d.msg, "clock did not advance"));
	/* Still released: the next good rejoin binds its disk. */
	r.clock++;
	join_ok(m, &r, &res);
	assert_true(res.disk_bound);
	membership_close(m);
}

static void new_disk_registered_to_another_node_is_refused(void **state)
{
	struct membership *m = open_store();
	struct join_record a = node(1), b = node(2);
	struct join_result ra, rb;
	uint8_t uuid[MEMBERSHIP_UUID_LEN];
	struct diag d = { { 0 } };

	join_ok(m, &a, &ra);
	join_ok(m, &b, &rb);
	assert_int_equal(membership_release_disk(m, ra.peer.node_id, &d), 0);
	a.clock++;
	memcpy(a.disk_uuid, b.disk_uuid, sizeof(a.disk_uuid));
	assert_int_equal(membership_join(m, &a, &ra, &d), -EPERM);
	assert_non_null(strstr(d.msg, "already registered to another node"));
	assert_int_equal(membership_disk_uuid_of(m, rb.peer.node_id, uuid, NULL), 0);
	assert_memory_equal(uuid, b.disk_uuid, sizeof(uuid));
	membership_close(m);
}

static void replace_disk_of_a_revoked_node_is_refused(void **state)
{
	struct membership *m = open_store();
	struct join_record a = node(1);
	struct join_result res;
	struct diag d = { { 0 } };

	join_ok(m, &a, &res);
	assert_int_equal(membership_revoke(m, res.peer.node_id, NULL), 0);
	assert_int_equal(membership_release_disk(m, res.peer.node_id, &d), -EPERM);
	assert_non_null(strstr(d.msg, "revoked"));
	assert_non_null(strstr(d.msg, "never re-admitted"));
	a.clock++;
	memset(a.disk_uuid, 0x5e, sizeof(a.disk_uuid));
	assert_int_equal(membership_join(m, &a, &res, &d), -EPERM);
	assert_non_null(strstr(d.msg, "revoked"));
	membership_close(m);
}

static void replace_disk_of_an_unknown_node_is_refused(void **state)
{
	struct membership *m = open_store();
	struct join_record a = node(1);
	struct join_result res;
	struct diag d = { { 0 } };

	join_ok(m, &a, &res);
	assert_int_equal(membership_release_disk(m, 42, &d), -ENOENT);
	assert_non_null(strstr(d.msg, "no node 42"));
	membership_close(m);
}

static void replace_disk_twice_says_it_is_already_released(void **state)
{
	struct membership *m = open_store();
	struct join_record a = node(1);
	struct join_result res;
	struct diag d = { { 0 } };

	join_ok(m, &a, &res);
	assert_int_equal(membership_release_disk(m, res.peer.node_id, &d), 0);
	assert_int_equal(membership_release_disk(m, res.peer.node_id, &d), -EALREADY);
	assert_non_null(strstr(d.msg, "already released"));
	membership_close(m);
}

static void revoked_node_leaves_the_peer_set_and_cannot_rejoin(void **state)
{
	struct membership *m = open_store();
	struct join_record a = node(1), b = node(2);
	struct join_result ra, rb;
	struct diag d = { { 0 } };
	struct peer *peers = NULL;
	uint64_t gen;
	size_t n;

	join_ok(m, &a, &ra);
	join_ok(m, &b, &rb);
	assert_int_equal(membership_revoke(m, ra.peer.node_id, NULL), 0);
	assert_int_equal(membership_revoke(m, ra.peer.node_id, &d), -ENOENT);
	assert_int_equal(membership_snapshot(m, &gen, &peers, &n, NULL), 0);
	assert_int_equal(gen, 3);
	assert_int_equal(n, 1);
	assert_int_equal(peers[0].node_id, rb.peer.node_id);
	assert_memory_equal(peers[0].wg_pubkey, b.wg_pubkey, 32);
	assert_string_equal(peers[0].endpoints, b.endpoints);
	free(peers);
	a.clock++;
	assert_int_equal(membership_join(m, &a, &ra, &d), -EPERM);
	assert_non_null(strstr(d.msg, "revoked"));
	membership_close(m);
}

static const struct peer_delta *find_delta(const struct peer_delta *x, size_t n, int64_t id)
{
	for (size_t i = 0; i < n; i++)
		if (x[i].peer.node_id == id)
			return &x[i];
	return NULL;
}

static void deltas_name_each_change_since_a_generation(void **state)
{
	struct membership *m = open_store();
	struct join_record a = node(1), b = node(2), c = node(3);
	struct join_result ra, rb, rc;
	struct peer_delta *x = NULL;
	uint64_t gen, after_ab;
	size_t n;

	join_ok(m, &a, &ra);
	join_ok(m, &b, &rb);
	after_ab = rb.generation;
	a.clock++;
	strcpy(a.endpoints, "198.51.100.7:51820"); /* roamed: peers must learn it */
	join_ok(m, &a, &ra);
	assert_int_equal(ra.generation, after_ab + 1);
	join_ok(m, &c, &rc);
	assert_int_equal(membership_revoke(m, rb.peer.node_id, NULL), 0);

	assert_int_equal(membership_deltas_since(m, after_ab, &gen, &x, &n, NULL), 0);
	assert_int_equal(gen, after_ab + 3);
	assert_int_equal(n, 3);
	assert_int_equal(find_delta(x, n, ra.peer.node_id)->op, PEER_UPDATE);
	assert_string_equal(find_delta(x, n, ra.peer.node_id)->peer.endpoints, a.endpoints);
	assert_int_equal(find_delta(x, n, rb.peer.node_id)->op, PEER_REMOVE);
	assert_int_equal(find_delta(x, n, rc.peer.node_id)->op, PEER_ADD);
	free(x);
	assert_int_equal(membership_deltas_since(m, gen, &gen, &x, &n, NULL), 0);
	assert_int_equal(n, 0);
	free(x);
	assert_int_equal(membership_deltas_since(m, gen + 1, &gen, &x, &n, NULL), -ESTALE);
	membership_close(m);
}

static void compacted_log_asks_for_a_snapshot(void **state)
{
	struct membership_config small = cfg;
	struct membership *m = NULL;
	struct join_result res;
	struct peer_delta *x = NULL;
	struct diag d = { { 0 } };
	uint64_t gen;
	size_t n;

	small.log_keep = 3;
	assert_int_equal(membership_open(path, &small, &m, NULL), 0);
	for (unsigned int i = 1; i <= 6; i++) {
		struct join_record r = node(i);

		join_ok(m, &r, &res);
	}
	assert_int_equal(membership_deltas_since(m, 2, &gen, &x, &n, &d), -ESTALE);
	assert_non_null(strstr(d.msg, "snapshot needed"));
	assert_int_equal(membership_deltas_since(m, 3, &gen, &x, &n, NULL), 0);
	assert_int_equal(n, 3);
	free(x);
	membership_close(m);
}

static void exhausted_range_gives_a_clear_error(void **state)
{
	struct membership_config tiny = cfg;
	struct membership *m = NULL;
	struct join_record r1 = node(1), r2 = node(2), r3 = node(3);
	struct join_result res;
	struct diag d = { { 0 } };

	tiny.overlay_v4 = "10.100.0.0/30"; /* two hosts */
	assert_int_equal(membership_open(path, &tiny, &m, NULL), 0);
	join_ok(m, &r1, &res);
	join_ok(m, &r2, &res);
	assert_string_equal(res.peer.overlay_v4, "10.100.0.2");
	assert_int_equal(membership_join(m, &r3, &res, &d), -ENOSPC);
	assert_non_null(strstr(d.msg, "overlay IPv4 range exhausted"));
	membership_close(m);
}

static void group_commit_rolls_back_only_the_failed_join(void **state)
{
	struct membership *m = open_store();
	struct join_record a = node(1), b = node(2), dup = node(3);
	struct join_result res;
	struct peer *peers = NULL;
	uint64_t gen;
	size_t n;

	memcpy(dup.disk_uuid, a.disk_uuid, sizeof(dup.disk_uuid));
	assert_int_equal(membership_batch_begin(m, NULL), 0);
	join_ok(m, &a, &res);
	assert_int_equal(membership_join(m, &dup, &res, NULL), -EPERM);
	join_ok(m, &b, &res);
	assert_int_equal(membership_batch_commit(m, NULL), 0);
	assert_int_equal(membership_snapshot(m, &gen, &peers, &n, NULL), 0);
	assert_int_equal(n, 2);
	assert_int_equal(gen, 2);
	free(peers);
	membership_close(m);
}

static void bad_configuration_and_changed_ranges_are_refused(void **state)
{
	struct membership_config c = cfg;
	struct membership *m = NULL;
	struct diag d = { { 0 } };

	c.overlay_v4 = "10.100.0.1/16"; /* host bits set */
	assert_int_equal(membership_open(path, &c, &m, &d), -EINVAL);
	c = cfg;
	c.pod_pool = "10.100.0.0/16"; /* overlaps the overlay */
	assert_int_equal(membership_open(path, &c, &m, &d), -EINVAL);
	assert_non_null(strstr(d.msg, "overlap"));
	m = open_store();
	membership_close(m);
	c = cfg;
	c.pod_prefix = 25;
	assert_int_equal(membership_open(path, &c, &m, &d), -EINVAL);
	assert_non_null(strstr(d.msg, "refusing to open it with different ones"));
}

static int raw_int(const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *s;
	int v = -1;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

static void raw_exec(const char *sql)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static void empty_file_is_migrated_to_the_current_schema(void **state)
{
	struct membership *m;
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fclose(f);
	m = open_store();
	membership_close(m);
	assert_int_equal(raw_int("PRAGMA user_version"), MEMBERSHIP_SCHEMA_VERSION);
	assert_int_equal(raw_int("SELECT count(*) FROM sqlite_master WHERE name = 'peer_log_node'"),
			 1);
	assert_int_equal(
	    raw_int("SELECT count(*) FROM pragma_journal_mode WHERE journal_mode = 'wal'"), 1);
}

/* Schema versions 1 to 3 as published (migrations are never edited), to build old stores. */
static const char v1_ddl[] =
    "CREATE TABLE config ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  overlay_v4 TEXT NOT NULL, overlay_v6 TEXT NOT NULL,"
    "  pod_pool TEXT NOT NULL, pod_prefix INTEGER NOT NULL);"
    "CREATE TABLE peer_generation ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  generation INTEGER NOT NULL CHECK (generation >= 0),"
    "  log_floor INTEGER NOT NULL CHECK (log_floor >= 0 AND log_floor <= generation));"
    "INSERT INTO peer_generation VALUES (1, 0, 0);"
    "CREATE TABLE nodes ("
    "  node_id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  ek_id BLOB NOT NULL UNIQUE CHECK (length(ek_id) = 32),"
    "  ak_name BLOB NOT NULL CHECK (length(ak_name) BETWEEN 1 AND 68),"
    "  wg_pubkey BLOB NOT NULL CHECK (length(wg_pubkey) = 32),"
    "  endpoints TEXT NOT NULL CHECK (length(endpoints) < 256),"
    "  slot INTEGER NOT NULL UNIQUE CHECK (slot >= 1),"
    "  overlay_v4 TEXT NOT NULL UNIQUE,"
    "  overlay_v6 TEXT NOT NULL UNIQUE,"
    "  pod_cidr TEXT NOT NULL UNIQUE,"
    "  disk_uuid BLOB NOT NULL UNIQUE CHECK (length(disk_uuid) = 16),"
    "  state TEXT NOT NULL CHECK (state IN ('active', 'revoked')),"
    "  reset_count INTEGER NOT NULL CHECK (reset_count >= 0),"
    "  restart_count INTEGER NOT NULL CHECK (restart_count >= 0),"
    "  clock INTEGER NOT NULL CHECK (clock >= 0),"
    "  evidence_digest BLOB NOT NULL CHECK (length(evidence_digest) = 32),"
    "  joined_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
    "CREATE TABLE peer_log ("
    "  generation INTEGER PRIMARY KEY,"
    "  node_id INTEGER NOT NULL REFERENCES nodes(node_id),"
    "  op TEXT NOT NULL CHECK (op IN ('add', 'update', 'remove')));";
static const char v2_ddl[] = "CREATE INDEX peer_log_node ON peer_log(node_id);";
static const char v3_ddl[] =
    "ALTER TABLE nodes ADD COLUMN pcr_mask INTEGER NOT NULL DEFAULT 0"
    "  CHECK (pcr_mask >= 0 AND pcr_mask < 16777216);"
    "ALTER TABLE nodes ADD COLUMN pcrs BLOB NOT NULL DEFAULT x''"
    "  CHECK (length(pcrs) % 32 = 0 AND length(pcrs) <= 768);"
    "ALTER TABLE nodes ADD COLUMN attested_at INTEGER NOT NULL DEFAULT 0"
    "  CHECK (attested_at >= 0);"
    "ALTER TABLE nodes ADD COLUMN revoked_at INTEGER NOT NULL DEFAULT 0"
    "  CHECK (revoked_at >= 0);"
    "UPDATE nodes SET"
    "  attested_at = CASE state WHEN 'active' THEN updated_at ELSE joined_at END,"
    "  revoked_at = CASE state WHEN 'revoked' THEN updated_at ELSE 0 END;"
    "CREATE TABLE meta ("
    "  key TEXT PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 64),"
    "  value BLOB NOT NULL CHECK (length(value) <= 4096));";

/* Node n as an old joind recorded it, in slot n of cfg's ranges. */
static void insert_old_node(sqlite3 *db, unsigned int n, const char *state, int64_t joined_at,
			    int64_t updated_at)
{
	struct join_record r = node(n);
	char v4[16], v6[46], pod[19];
	sqlite3_stmt *s;

	snprintf(v4, sizeof(v4), "10.100.0.%u", n);
	snprintf(v6, sizeof(v6), "fd00:100::%u", n);
	snprintf(pod, sizeof(pod), "10.244.%u.0/24", n - 1);
	assert_int_equal(
	    sqlite3_prepare_v2(
		db,
		"INSERT INTO nodes (ek_id, ak_name, wg_pubkey, endpoints, slot, "
		"overlay_v4, overlay_v6, pod_cidr, disk_uuid, state, reset_count, "
		"restart_count, clock, evidence_digest, joined_at, updated_at) VALUES "
		"(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
		-1, &s, NULL),
	    SQLITE_OK);
	sqlite3_bind_blob(s, 1, r.ek_id, sizeof(r.ek_id), SQLITE_TRANSIENT);
	sqlite3_bind_blob(s, 2, r.ak_name, (int)r.ak_name_len, SQLITE_TRANSIENT);
	sqlite3_bind_blob(s, 3, r.wg_pubkey, sizeof(r.wg_pubkey), SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 4, r.endpoints, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(s, 5, (int)n);
	sqlite3_bind_text(s, 6, v4, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 7, v6, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 8, pod, -1, SQLITE_TRANSIENT);
	sqlite3_bind_blob(s, 9, r.disk_uuid, sizeof(r.disk_uuid), SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 10, state, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 11, r.reset_count);
	sqlite3_bind_int64(s, 12, r.restart_count);
	sqlite3_bind_int64(s, 13, (int64_t)r.clock);
	sqlite3_bind_blob(s, 14, r.evidence_digest, sizeof(r.evidence_digest), SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 15, joined_at);
	sqlite3_bind_int64(s, 16, updated_at);
	assert_int_equal(sqlite3_step(s), SQLITE_DONE);
	sqlite3_finalize(s);
}

/* A store at schema version 1, 2 or 3, as that joind left it: node 1 joined at 1000 and rejoined
 * at 2000, node 2 joined at 1100 and was revoked at 3000 (generation 3). */
static void make_old_store(int version)
{
	char sql[64];
	sqlite3 *db;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, v1_ddl, NULL, NULL, NULL), SQLITE_OK);
	if (version >= 2)
		assert_int_equal(sqlite3_exec(db, v2_ddl, NULL, NULL, NULL), SQLITE_OK);
	if (version >= 3)
		assert_int_equal(sqlite3_exec(db, v3_ddl, NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
				      "INSERT INTO config VALUES (1, '10.100.0.0/16', "
				      "'fd00:100::/64', '10.244.0.0/16', 24);",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	insert_old_node(db, 1, "active", 1000, 2000);
	insert_old_node(db, 2, "revoked", 1100, 3000);
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d;", version);
	assert_int_equal(sqlite3_exec(db,
				      "INSERT INTO peer_log VALUES (1, 1, 'add'), (2, 2, 'add'), "
				      "(3, 2, 'remove');"
				      "UPDATE peer_generation SET generation = 3;",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static void version_1_store_is_migrated_keeping_its_members(void **state)
{
	struct membership *m;
	struct join_record a = node(1);
	int64_t id;

	make_old_store(1);
	m = open_store();
	assert_int_equal(membership_node_of(m, a.ek_id, &id, NULL), 0);
	assert_int_equal(id, 1);
	membership_close(m);
	assert_int_equal(raw_int("PRAGMA user_version"), MEMBERSHIP_SCHEMA_VERSION);
	assert_int_equal(raw_int("SELECT count(*) FROM sqlite_master WHERE name = 'peer_log_node'"),
			 1);
}

static void version_2_store_is_migrated_with_pcrs_and_times_defaulted(void **state)
{
	struct join_record a = node(1), c = node(3);
	struct membership *m;
	struct member_info *x;
	struct join_result res;
	struct peer *peers = NULL;
	uint8_t v[8];
	uint64_t gen;
	size_t n, len;

	make_old_store(2);
	m = open_store();
	x = members_ok(m, &n);
	assert_int_equal(n, 2);
	assert_int_equal(x[0].peer.node_id, 1);
	assert_true(x[0].active);
	assert_memory_equal(x[0].ek_id, a.ek_id, sizeof(a.ek_id));
	assert_string_equal(x[0].peer.endpoints, a.endpoints);
	assert_string_equal(x[0].peer.overlay_v4, "10.100.0.1");
	assert_int_equal(x[0].joined_at, 1000);
	assert_int_equal(x[0].attested_at, 2000); /* its last rejoin */
	assert_int_equal(x[0].revoked_at, 0);
	assert_int_equal(x[0].pcr_mask, 0);
	assert_int_equal(x[1].peer.node_id, 2);
	assert_false(x[1].active);
	assert_int_equal(x[1].joined_at, 1100);
	assert_int_equal(x[1].attested_at, 1100); /* updated_at was the revocation */
	assert_int_equal(x[1].revoked_at, 3000);
	assert_int_equal(x[1].pcr_mask, 0);
	free(x);
	assert_int_equal(membership_snapshot(m, &gen, &peers, &n, NULL), 0);
	assert_int_equal(gen, 3);
	assert_int_equal(n, 1);
	free(peers);
	assert_int_equal(membership_meta_get(m, "k", v, sizeof(v), &len, NULL), -ENOENT);

	/* The migrated members carry on: a rejoin records PCRs, a new node gets the next slot. */
	a.clock++;
	join_ok(m, &a, &res);
	assert_true(res.rejoin);
	join_ok(m, &c, &res);
	assert_int_equal(res.peer.node_id, 3);
	assert_string_equal(res.peer.overlay_v4, "10.100.0.3");
	x = members_ok(m, &n);
	assert_int_equal(n, 3);
	assert_int_equal(x[0].pcr_mask, NODE_PCRS);
	assert_memory_equal(x[0].pcrs[7], a.pcrs[7], 32);
	assert_int_equal(x[0].joined_at, 1000);
	assert_true(x[0].attested_at > 2000);
	free(x);
	membership_close(m);
	assert_int_equal(raw_int("PRAGMA user_version"), MEMBERSHIP_SCHEMA_VERSION);
}

static void version_3_store_is_migrated_with_every_disk_bound(void **state)
{
	struct join_record a = node(1), b = node(2);
	uint8_t ek[MEMBERSHIP_EK_ID_LEN], disk[MEMBERSHIP_UUID_LEN];
	struct membership *m;
	struct join_result res;
	struct diag d = { { 0 } };

	make_old_store(3);
	m = open_store();
	assert_int_equal(raw_int("PRAGMA user_version"), MEMBERSHIP_SCHEMA_VERSION);
	assert_int_equal(raw_int("SELECT count(*) FROM nodes WHERE disk_released_at = 0"), 2);
	assert_int_equal(raw_int("SELECT count(*) FROM retired_disks"), 0);
	/* Every member keeps the disk it registered: its key, and only its, as before. */
	assert_int_equal(membership_check_disk_key(m, 1, a.disk_uuid, ek, &d), 0);
	a.clock++;
	memcpy(disk, a.disk_uuid, sizeof(disk));
	a.disk_uuid[15] ^= 1;
	assert_int_equal(membership_join(m, &a, &res, &d), -EPERM);
	assert_non_null(strstr(d.msg, "different disk"));
	/* The old store's revoked member stays out of reach of a release. */
	assert_int_equal(membership_release_disk(m, 2, &d), -EPERM);
	/* And the migrated active member can have its disk replaced. */
	assert_int_equal(membership_release_disk(m, 1, &d), 0);
	join_ok(m, &a, &res);
	assert_true(res.disk_bound);
	assert_int_equal(membership_check_disk_key(m, 1, disk, ek, &d), -EPERM);
	assert_int_equal(membership_check_disk_key(m, 2, b.disk_uuid, ek, &d), -EPERM);
	membership_close(m);
	assert_int_equal(raw_int("SELECT count(*) FROM retired_disks"), 1);
}

static void store_from_a_newer_joind_is_refused(void **state)
{
	struct membership *m = open_store();
	struct diag d = { { 0 } };

	membership_close(m);
	raw_exec("PRAGMA user_version = 99;");
	m = NULL;
	assert_int_equal(membership_open(path, &cfg, &m, &d), -EPROTONOSUPPORT);
	assert_non_null(strstr(d.msg, "newer than this joind knows"));
	assert_null(m);
}

static void file_that_is_not_a_database_is_refused(void **state)
{
	struct membership *m = NULL;
	struct diag d = { { 0 } };
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs("this is not an SQLite database, but it is long enough to have a header.......\n"
	      "................................................................................\n",
	      f);
	fclose(f);
	assert_int_equal(membership_open(path, &cfg, &m, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, path));
}

static void pcrs_and_times_round_trip_through_join_and_rejoin(void **state)
{
	struct membership *m = open_store();
	struct join_record a = node(1);
	struct join_result res;
	struct member_info *x;
	const uint8_t zero[32] = { 0 };
	uint64_t before = (uint64_t)time(NULL);
	size_t n;

	memset(a.pcrs[1], 0xee, 32); /* outside the mask: not recorded */
	join_ok(m, &a, &res);
	x = members_ok(m, &n);
	assert_int_equal(n, 1);
	assert_int_equal(x[0].pcr_mask, NODE_PCRS);
	assert_memory_equal(x[0].pcrs[0], a.pcrs[0], 32);
	assert_memory_equal(x[0].pcrs[4], a.pcrs[4], 32);
	assert_memory_equal(x[0].pcrs[7], a.pcrs[7], 32);
	assert_memory_equal(x[0].pcrs[1], zero, 32);
	assert_true(x[0].joined_at >= before && x[0].joined_at <= (uint64_t)time(NULL));
	assert_int_equal(x[0].attested_at, x[0].joined_at);
	assert_int_equal(x[0].revoked_at, 0);
	free(x);
	assert_int_equal(raw_int("SELECT length(pcrs) FROM nodes"), 3 * 32);

	/* The first join was long ago; now the node rejoins after a firmware update. */
	raw_exec("UPDATE nodes SET joined_at = 1000, attested_at = 1000;");
	a.clock++;
	a.pcr_mask = 1u << 0 | 1u << 23;
	memset(a.pcrs[0], 0x5a, 32);
	memset(a.pcrs[23], 0xa5, 32);
	before = (uint64_t)time(NULL);
	join_ok(m, &a, &res);
	assert_true(res.rejoin);
	x = members_ok(m, &n);
	assert_int_equal(n, 1);
	assert_int_equal(x[0].joined_at, 1000);
	assert_true(x[0].attested_at >= before);
	assert_int_equal(x[0].pcr_mask, a.pcr_mask);
	assert_memory_equal(x[0].pcrs[0], a.pcrs[0], 32);
	assert_memory_equal(x[0].pcrs[23], a.pcrs[23], 32);
	assert_memory_equal(x[0].pcrs[4], zero, 32); /* no longer attested */
	free(x);
	membership_close(m);
}

static void member_without_pcrs_round_trips_with_an_empty_mask(void **state)
{
	static const uint8_t zero[24][32];
	struct membership *m = open_store();
	struct join_record a = node(1);
	struct join_result res;
	struct member_info *x;
	size_t n;

	a.pcr_mask = 0;
	join_ok(m, &a, &res);
	assert_int_equal(raw_int("SELECT length(pcrs) FROM nodes WHERE pcrs IS NOT NULL"), 0);
	a.clock++;
	join_ok(m, &a, &res);
	x = members_ok(m, &n);
	assert_int_equal(n, 1);
	assert_int_equal(x[0].pcr_mask, 0);
	assert_memory_equal(x[0].pcrs, zero, sizeof(zero)); /* a.pcrs had values, unselected */
	free(x);
	membership_close(m);
}

static void pcr_mask_beyond_pcr_23_is_refused(void **state)
{
	struct membership *m = open_store();
	struct join_record a = node(1);
	struct join_result res;
	struct diag d = { { 0 } };
	struct member_info *x;
	size_t n;

	a.pcr_mask |= 1u << 24;
	assert_int_equal(membership_join(m, &a, &res, &d), -EINVAL);
	assert_non_null(strstr(d.msg, "PCR mask"));
	x = members_ok(m, &n);
	assert_int_equal(n, 0);
	free(x);
	membership_close(m);
}

static void member_whose_pcrs_disagree_with_its_mask_is_reported_malformed(void **state)
{
	struct membership *m = open_store();
	struct join_record a = node(1);
	struct join_result res;
	struct member_info *x = NULL;
	struct diag d = { { 0 } };
	size_t n;

	join_ok(m, &a, &res);
	/* The mask selects three PCRs: two are too few, four too many. */
	raw_exec("UPDATE nodes SET pcrs = zeroblob(64);");
	assert_int_equal(membership_members(m, &x, &n, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "malformed row"));
	assert_null(x);
	raw_exec("UPDATE nodes SET pcrs = zeroblob(128);");
	assert_int_equal(membership_members(m, &x, &n, &d), -EBADMSG);
	assert_null(x);
	membership_close(m);
}

static void members_include_revoked_ones_with_their_revocation_time(void **state)
{
	struct membership *m = open_store();
	struct join_record r[3] = { node(1), node(2), node(3) };
	struct join_result res[3];
	struct member_info *x;
	uint64_t before;
	size_t n;

	x = members_ok(m, &n);
	assert_int_equal(n, 0);
	free(x);
	for (int i = 0; i < 3; i++)
		join_ok(m, &r[i], &res[i]);
	before = (uint64_t)time(NULL);
	assert_int_equal(membership_revoke(m, res[1].peer.node_id, NULL), 0);
	x = members_ok(m, &n);
	assert_int_equal(n, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(x[i].peer.node_id, res[i].peer.node_id);
		assert_memory_equal(x[i].ek_id, r[i].ek_id, MEMBERSHIP_EK_ID_LEN);
		assert_memory_equal(x[i].peer.wg_pubkey, r[i].wg_pubkey, MEMBERSHIP_WG_KEY_LEN);
		assert_string_equal(x[i].peer.endpoints, r[i].endpoints);
		assert_string_equal(x[i].peer.overlay_v4, res[i].peer.overlay_v4);
		assert_string_equal(x[i].peer.overlay_v6, res[i].peer.overlay_v6);
		assert_string_equal(x[i].peer.pod_cidr, res[i].peer.pod_cidr);
		assert_int_equal(x[i].pcr_mask, NODE_PCRS);
		assert_memory_equal(x[i].pcrs[4], r[i].pcrs[4], 32);
		assert_true(x[i].joined_at > 0);
	}
	assert_true(x[0].active);
	assert_int_equal(x[0].revoked_at, 0);
	assert_false(x[1].active);
	assert_true(x[1].revoked_at >= before && x[1].revoked_at <= (uint64_t)time(NULL));
	assert_true(x[2].active);
	assert_int_equal(x[2].revoked_at, 0);
	free(x);
	membership_close(m);
}

static void meta_values_are_set_read_and_replaced(void **state)
{
	static uint8_t big[4097];
	struct membership *m = open_store();
	struct diag d = { { 0 } };
	uint8_t v[64];
	size_t len = 0;

	assert_int_equal(membership_meta_get(m, "master-secret-check", v, sizeof(v), &len, &d),
			 -ENOENT);
	assert_non_null(strstr(d.msg, "master-secret-check"));
	memset(v, 0x11, 32);
	assert_int_equal(membership_meta_set(m, "master-secret-check", v, 32, NULL), 0);
	memset(v, 0, sizeof(v));
	assert_int_equal(membership_meta_get(m, "master-secret-check", v, sizeof(v), &len, NULL),
			 0);
	assert_int_equal(len, 32);
	assert_int_equal(v[0], 0x11);
	assert_int_equal(v[31], 0x11);
	assert_int_equal(v[32], 0);

	assert_int_equal(
	    membership_meta_set(m, "master-secret-check", (const uint8_t *)"abc", 3, NULL), 0);
	assert_int_equal(membership_meta_get(m, "master-secret-check", v, sizeof(v), &len, NULL),
			 0);
	assert_int_equal(len, 3);
	assert_memory_equal(v, "abc", 3);
	assert_int_equal(membership_meta_get(m, "master-secret-check", v, 2, &len, &d), -E2BIG);
	assert_int_equal(len, 3); /* the size needed */

	assert_int_equal(membership_meta_set(m, "empty", NULL, 0, NULL), 0);
	assert_int_equal(membership_meta_get(m, "empty", NULL, 0, &len, NULL), 0);
	assert_int_equal(len, 0);

	memset(big, 0x42, sizeof(big));
	assert_int_equal(membership_meta_set(m, "big", big, 4096, NULL), 0);
	memset(big, 0, sizeof(big));
	assert_int_equal(membership_meta_get(m, "big", big, sizeof(big), &len, NULL), 0);
	assert_int_equal(len, 4096);
	assert_int_equal(big[4095], 0x42);
	assert_int_equal(membership_meta_set(m, "big", big, 4097, &d), -EINVAL);
	assert_int_equal(membership_meta_set(m, "none", NULL, 1, &d), -EINVAL);
	membership_close(m);
}

static void meta_keys_must_be_1_to_64_printable_characters(void **state)
{
	struct membership *m = open_store();
	struct diag d = { { 0 } };
	char key[66];
	uint8_t v[4];
	size_t len;

	memset(key, 'k', 65);
	key[65] = '\0';
	assert_int_equal(membership_meta_set(m, key, v, 1, &d), -EINVAL);
	assert_non_null(strstr(d.msg, "1 to 64 printable"));
	assert_int_equal(membership_meta_get(m, key, v, sizeof(v), &len, NULL), -EINVAL);
	key[64] = '\0';
	assert_int_equal(membership_meta_set(m, key, v, 1, NULL), 0);
	assert_int_equal(membership_meta_get(m, key, v, sizeof(v), &len, NULL), 0);
	assert_int_equal(membership_meta_set(m, "", v, 1, NULL), -EINVAL);
	assert_int_equal(membership_meta_set(m, NULL, v, 1, NULL), -EINVAL);
	assert_int_equal(membership_meta_set(m, "line\nbreak", v, 1, NULL), -EINVAL);
	assert_int_equal(membership_meta_set(m, "del\x7f", v, 1, NULL), -EINVAL);
	assert_int_equal(membership_meta_set(m, "caf\xc3\xa9", v, 1, NULL), -EINVAL);
	assert_int_equal(membership_meta_set(m, "cluster name", v, 1, NULL), 0);
	membership_close(m);
}

static void meta_value_survives_close_and_reopen(void **state)
{
	struct membership *m = open_store();
	uint8_t v[16];
	size_t len;

	assert_int_equal(membership_meta_set(m, "k", (const uint8_t *)"persisted", 9, NULL), 0);
	membership_close(m);
	m = open_store();
	assert_int_equal(membership_meta_get(m, "k", v, sizeof(v), &len, NULL), 0);
	assert_int_equal(len, 9);
	assert_memory_equal(v, "persisted", 9);
	membership_close(m);
}

static void meta_set_inside_a_batch_commits_with_it(void **state)
{
	struct membership *m = open_store();
	struct join_record a = node(1), dup = node(2);
	struct join_result res;
	uint8_t v[8];
	size_t len;

	memcpy(dup.disk_uuid, a.disk_uuid, sizeof(dup.disk_uuid));
	assert_int_equal(membership_batch_begin(m, NULL), 0);
	join_ok(m, &a, &res);
	assert_int_equal(membership_meta_set(m, "k", (const uint8_t *)"v1", 2, NULL), 0);
	assert_int_equal(membership_join(m, &dup, &res, NULL), -EPERM); /* rolls back alone */
	/* Visible to the batch, not yet to another reader. */
	assert_int_equal(membership_meta_get(m, "k", v, sizeof(v), &len, NULL), 0);
	assert_int_equal(raw_int("SELECT count(*) FROM meta"), 0);
	assert_int_equal(membership_batch_commit(m, NULL), 0);
	assert_int_equal(raw_int("SELECT count(*) FROM meta"), 1);
	assert_int_equal(raw_int("SELECT count(*) FROM nodes"), 1);
	membership_close(m);
}

/* ---- crash safety ---- */

#define CRASH_ROUNDS 40

/* Room for every node the writers manage to join in all rounds, and a change log that is never
 * compacted: the check below finds every member's 'add' entry (a slow run, e.g. under
 * memcheck, joins thousands of nodes and would pass the default 4096 entries). */
static const struct membership_config crash_cfg = {
	.overlay_v4 = "10.100.0.0/16",
	.overlay_v6 = "fd00:100::/64",
	.pod_pool = "172.16.0.0/12",
	.pod_prefix = 28,
	.log_keep = 1u << 30,
};

/* Joins new nodes (and now and then rejoins or revokes one) until killed; after each commit
 * it reports the node's number on fd. */
static void __attribute__((noreturn)) crash_writer(unsigned int first, int fd)
{
	struct membership *m = NULL;
	struct join_result res;
	struct diag d = { { 0 } };

	if (membership_open(path, &crash_cfg, &m, &d) < 0) {
		fprintf(stderr, "writer: %s\n", d.msg);
		_exit(2);
	}
	for (unsigned int n = first;; n++) {
		struct join_record r = node(n);

		if (membership_join(m, &r, &res, &d) < 0) {
			fprintf(stderr, "writer: %s\n", d.msg);
			_exit(3);
		}
		if (write(fd, &n, sizeof(n)) != sizeof(n))
			_exit(4);
		if (n % 7 == 0) { /* a rejoin that changes what peers see */
			r.clock++;
			strcpy(r.endpoints, "203.0.113.9:51820");
			if (membership_join(m, &r, &res, NULL) < 0)
				_exit(5);
		}
		if (n % 11 == 0 && membership_revoke(m, res.peer.node_id, NULL) < 0)
			_exit(6);
	}
}

/* Run one writer, kill it after delay_us, return how many joins it reported (into seen). */
static unsigned int crash_round(unsigned int first, unsigned int delay_us, unsigned char *seen,
				unsigned int max)
{
	unsigned int n, count = 0;
	int fds[2], status;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		crash_writer(first, fds[1]);
	}
	close(fds[1]);
	usleep(delay_us * (unsigned int)test_ms(1)); /* longer under memcheck (make valgrind) */
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFSIGNALED(status))
		fail_msg("writer exited by itself with status %d", WEXITSTATUS(status));
	while (read(fds[0], &n, sizeof(n)) == sizeof(n)) {
		assert_true(n < max);
		seen[n] = 1;
		count++;
	}
	close(fds[0]);
	return count;
}

static int query_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *s;
	int v = -1;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	return v;
}

/* Returns the number of members. */
static int check_invariants(const unsigned char *seen, unsigned int max, unsigned int rounds)
{
	sqlite3 *db;
	sqlite3_stmt *s;
	int nodes;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL), 0);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(s, 0), "ok");
	sqlite3_finalize(s);
	nodes = query_int(db, "SELECT count(*) FROM nodes");
	assert_int_equal(query_int(db, "SELECT count(DISTINCT ek_id) FROM nodes"), nodes);
	assert_int_equal(query_int(db, "SELECT count(DISTINCT slot) FROM nodes"), nodes);
	assert_int_equal(query_int(db, "SELECT count(DISTINCT overlay_v4) FROM nodes"), nodes);
	assert_int_equal(query_int(db, "SELECT count(DISTINCT pod_cidr) FROM nodes"), nodes);
	assert_int_equal(query_int(db, "SELECT count(DISTINCT disk_uuid) FROM nodes"), nodes);
	/* Slots are dense: nothing was allocated by a join that did not commit. */
	assert_int_equal(query_int(db, "SELECT coalesce(max(slot), 0) FROM nodes"), nodes);
	/* Every member was logged once as added, in the same transaction. */
	assert_int_equal(query_int(db, "SELECT count(*) FROM peer_log WHERE op = 'add'"), nodes);
	assert_int_equal(query_int(db, "SELECT count(*) FROM nodes n WHERE NOT EXISTS (SELECT 1 "
				       "FROM peer_log l WHERE l.node_id = n.node_id AND l.op = "
				       "'add')"),
			 0);
	assert_int_equal(query_int(db, "SELECT (SELECT generation FROM peer_generation) = "
				       "(SELECT coalesce(max(generation), 0) FROM peer_log)"),
			 1);
	assert_int_equal(query_int(db, "SELECT count(*) FROM nodes WHERE length(wg_pubkey) != 32 "
				       "OR length(ek_id) != 32 OR length(disk_uuid) != 16 OR "
				       "length(evidence_digest) != 32 OR overlay_v6 = ''"),
			 0);
	/* PCRs and times were written with the row they belong to. */
	assert_int_equal(query_int(db, "SELECT count(*) FROM nodes WHERE pcr_mask != 145 OR "
				       "length(pcrs) != 96 OR attested_at < joined_at OR "
				       "(state = 'revoked') != (revoked_at > 0)"),
			 0);
	/* Nothing committed was lost; at most one commit per kill went unreported. */
	for (unsigned int n = 1; n < max; n++) {
		if (!seen[n])
			continue;
		assert_int_equal(
		    sqlite3_prepare_v2(db, "SELECT 1 FROM nodes WHERE ek_id = ?1", -1, &s, NULL),
		    0);
		{
			struct join_record r = node(n);

			sqlite3_bind_blob(s, 1, r.ek_id, sizeof(r.ek_id), SQLITE_TRANSIENT);
		}
		if (sqlite3_step(s) != SQLITE_ROW)
			fail_msg("committed join of node %u lost", n);
		sqlite3_finalize(s);
	}
	{
		unsigned int reported = 0;

		for (unsigned int n = 0; n < max; n++)
			reported += seen[n];
		assert_true((unsigned int)nodes >= reported);
		assert_true((unsigned int)nodes <= reported + rounds);
	}
	sqlite3_close(db);
	return nodes;
}

static void killed_writer_loses_and_duplicates_no_member(void **state)
{
	enum { MAX_NODES = 1u << 20 };
	unsigned char *seen = calloc(MAX_NODES, 1);
	unsigned int first = 1;
	int nodes = 0;

	assert_non_null(seen);
	srand((unsigned int)time(NULL) ^ (unsigned int)getpid());
	for (unsigned int round = 0; round < CRASH_ROUNDS; round++) {
		struct membership *m;
		unsigned int delay = 1000 + (unsigned int)rand() % 40000;

		crash_round(first, delay, seen, MAX_NODES);
		/* Restart: the store opens and recovers; the next writer continues from it. */
		assert_int_equal(membership_open(path, &crash_cfg, &m, NULL), 0);
		membership_close(m);
		nodes = check_invariants(seen, MAX_NODES, round + 1);
		/* The next writer's nodes never collide with an unreported one of this round. */
		first += 4096;
		assert_true(first < MAX_NODES);
	}
	/* The kills must have landed among commits, not only before the first one. */
	print_message("# %d members after %d killed writers\n", nodes, CRASH_ROUNDS);
	assert_true(nodes > CRASH_ROUNDS);
	free(seen);
}

#define T(f) cmocka_unit_test_setup(f, fresh_path)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(first_joins_get_ids_addresses_and_pod_cidrs),
		T(rejoin_after_reboot_keeps_identity_and_addresses),
		T(rejoin_with_counters_not_moved_forward_is_refused),
		T(rejoin_with_another_disk_is_refused),
		T(first_join_with_a_registered_disk_is_refused),
		T(disk_key_for_another_nodes_disk_is_refused),
		T(released_disk_is_replaced_at_the_next_rejoin),
		T(another_disk_after_the_new_one_is_bound_is_refused_again),
		T(released_disk_itself_is_never_bound_again),
		T(rejoin_after_a_release_must_still_move_its_counters_forward),
		T(new_disk_registered_to_another_node_is_refused),
		T(replace_disk_of_a_revoked_node_is_refused),
		T(replace_disk_of_an_unknown_node_is_refused),
		T(replace_disk_twice_says_it_is_already_released),
		T(revoked_node_leaves_the_peer_set_and_cannot_rejoin),
		T(deltas_name_each_change_since_a_generation),
		T(compacted_log_asks_for_a_snapshot),
		T(exhausted_range_gives_a_clear_error),
		T(group_commit_rolls_back_only_the_failed_join),
		T(bad_configuration_and_changed_ranges_are_refused),
		T(empty_file_is_migrated_to_the_current_schema),
		T(version_1_store_is_migrated_keeping_its_members),
		T(version_2_store_is_migrated_with_pcrs_and_times_defaulted),
		T(version_3_store_is_migrated_with_every_disk_bound),
		T(pcrs_and_times_round_trip_through_join_and_rejoin),
		T(member_without_pcrs_round_trips_with_an_empty_mask),
		T(pcr_mask_beyond_pcr_23_is_refused),
		T(member_whose_pcrs_disagree_with_its_mask_is_reported_malformed),
		T(members_include_revoked_ones_with_their_revocation_time),
		T(meta_values_are_set_read_and_replaced),
		T(meta_keys_must_be_1_to_64_printable_characters),
		T(meta_value_survives_close_and_reopen),
		T(meta_set_inside_a_batch_commits_with_it),
		T(store_from_a_newer_joind_is_refused),
		T(file_that_is_not_a_database_is_refused),
		T(killed_writer_loses_and_duplicates_no_member),
	};

	return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
