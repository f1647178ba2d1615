// SPDX-License-Identifier: Apache-2.0
/* Membership store on SQLite: schema migrations, one transaction per join, address
 * allocation, the disk-key gate and the generation-numbered peer set (docs/kms.md). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "conclave/membership.h"

#define BUSY_TIMEOUT_MS	 5000
#define DEFAULT_LOG_KEEP 4096
#define MAX_SLOTS	 (1u << 24) /* far beyond any cluster; keeps slot arithmetic in 32 bits */
#define PCR_COUNT	 24
#define PCR_LEN		 32
#define META_KEY_MAX	 64
#define META_VALUE_MAX	 4096

/* Migration i brings user_version from i to i + 1; append, never edit a published one. */
static const char *const migrations[MEMBERSHIP_SCHEMA_VERSION] = {
	/* 1: the store */
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
	"  op TEXT NOT NULL CHECK (op IN ('add', 'update', 'remove')));",
	/* 2: deltas group the log by node */
	"CREATE INDEX peer_log_node ON peer_log(node_id);",
	/* 3: what each member last attested, and small cluster values. pcrs holds the SHA-256
	 * values of the PCRs pcr_mask selects, 32 bytes each in PCR order (a row that predates
	 * this has none). attested_at of an older active row is its updated_at, which only joins
	 * moved; a revoked one's updated_at is its revocation, so it gets joined_at, the only
	 * attestation time known for it. */
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
	"  value BLOB NOT NULL CHECK (length(value) <= 4096));",
	/* 4: disk replacement. The operator releases a node's disk (disk_released_at > 0): its
	 * UUID moves to retired_disks, no key is derived for it again, and the node's next
	 * successful join binds the disk it presents. A retired UUID is never registered again,
	 * to any node, so the old disk's key cannot come back. */
	"ALTER TABLE nodes ADD COLUMN disk_released_at INTEGER NOT NULL DEFAULT 0"
	"  CHECK (disk_released_at >= 0);"
	"CREATE TABLE retired_disks ("
	"  disk_uuid BLOB PRIMARY KEY CHECK (length(disk_uuid) = 16),"
	"  node_id INTEGER NOT NULL REFERENCES nodes(node_id),"
	"  retired_at INTEGER NOT NULL CHECK (retired_at >= 0));",
};

enum stmt_id {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_SAVEPOINT,
	ST_RELEASE,
	ST_ROLLBACK_TO,
	ST_FIND_EK,
	ST_NEXT_SLOT,
	ST_FREE_SLOT,
	ST_INSERT,
	ST_UPDATE,
	ST_REVOKE,
	ST_BUMP,
	ST_GENERATION,
	ST_LOG,
	ST_COMPACT,
	ST_RAISE_FLOOR,
	ST_PEER,
	ST_ACTIVE_PEERS,
	ST_DELTAS,
	ST_DISK_OF,
	ST_NODE_OF,
	ST_TPM_OF,
	ST_MEMBERS,
	ST_META_GET,
	ST_META_SET,
	ST_RELEASE_DISK,
	ST_RETIRE_DISK,
	ST_RETIRED,
	ST_BIND_DISK,
	ST_COUNT,
};

#define PEER_COLS "node_id, wg_pubkey, endpoints, overlay_v4, overlay_v6, pod_cidr"

static const char *const stmt_sql[ST_COUNT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_SAVEPOINT] = "SAVEPOINT op",
	[ST_RELEASE] = "RELEASE op",
	[ST_ROLLBACK_TO] = "ROLLBACK TO op",
	[ST_FIND_EK] = "SELECT node_id, state, disk_uuid, reset_count, restart_count, clock,"
		       " wg_pubkey, endpoints, disk_released_at > 0 FROM nodes WHERE ek_id = ?1",
	/* Past the highest slot: one index lookup. Rows are never deleted, so this is also the
	 * lowest free slot; the gap search below is the fallback once the range is full. */
	[ST_NEXT_SLOT] = "SELECT coalesce(max(slot), 0) + 1 FROM nodes",
	/* The lowest slot not taken: 1, or one past a taken slot whose successor is free. */
	[ST_FREE_SLOT] = "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM nodes WHERE slot = 1) THEN 1"
			 " ELSE (SELECT min(a.slot) + 1 FROM nodes a WHERE NOT EXISTS"
			 " (SELECT 1 FROM nodes b WHERE b.slot = a.slot + 1)) END",
	[ST_INSERT] = "INSERT INTO nodes (ek_id, ak_name, wg_pubkey, endpoints, slot, overlay_v4,"
		      " overlay_v6, pod_cidr, disk_uuid, state, reset_count, restart_count, clock,"
		      " evidence_digest, joined_at, updated_at, attested_at, pcr_mask, pcrs)"
		      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'active', ?10, ?11, ?12, ?13,"
		      " ?14, ?14, ?14, ?15, ?16)",
	[ST_UPDATE] = "UPDATE nodes SET ak_name = ?2, wg_pubkey = ?3, endpoints = ?4,"
		      " reset_count = ?5, restart_count = ?6, clock = ?7, evidence_digest = ?8,"
		      " updated_at = ?9, attested_at = ?9, pcr_mask = ?10, pcrs = ?11"
		      " WHERE node_id = ?1",
	[ST_REVOKE] = "UPDATE nodes SET state = 'revoked', updated_at = ?2, revoked_at = ?2"
		      " WHERE node_id = ?1 AND state = 'active'",
	[ST_BUMP] = "UPDATE peer_generation SET generation = generation + 1 WHERE id = 1",
	[ST_GENERATION] = "SELECT generation, log_floor FROM peer_generation WHERE id = 1",
	[ST_LOG] = "INSERT INTO peer_log (generation, node_id, op) VALUES (?1, ?2, ?3)",
	[ST_COMPACT] = "DELETE FROM peer_log WHERE generation <= ?1",
	[ST_RAISE_FLOOR] =
	    "UPDATE peer_generation SET log_floor = ?1 WHERE id = 1 AND log_floor < ?1",
	[ST_PEER] = "SELECT " PEER_COLS " FROM nodes WHERE node_id = ?1",
	[ST_ACTIVE_PEERS] = "SELECT " PEER_COLS " FROM nodes WHERE state = 'active'"
			    " ORDER BY node_id",
	/* One row per node changed after ?1: removed if revoked now, added if its 'add' is
	 * among the changes, updated otherwise. */
	[ST_DELTAS] = "SELECT n.node_id, n.wg_pubkey, n.endpoints, n.overlay_v4, n.overlay_v6,"
		      " n.pod_cidr, n.state = 'revoked', max(l.op = 'add') FROM peer_log l"
		      " JOIN nodes n ON n.node_id = l.node_id WHERE l.generation > ?1"
		      " GROUP BY n.node_id ORDER BY n.node_id",
	[ST_DISK_OF] = "SELECT disk_uuid, state, ek_id, disk_released_at > 0 FROM nodes"
		       " WHERE node_id = ?1",
	[ST_NODE_OF] = "SELECT node_id FROM nodes WHERE ek_id = ?1",
	[ST_TPM_OF] =
	    "SELECT node_id, state, ak_name, reset_count, restart_count, clock, endpoints,"
	    " disk_released_at > 0 FROM nodes WHERE ek_id = ?1",
	[ST_MEMBERS] = "SELECT " PEER_COLS ", ek_id, state, joined_at, attested_at, revoked_at,"
		       " pcr_mask, pcrs FROM nodes ORDER BY node_id",
	[ST_META_GET] = "SELECT value FROM meta WHERE key = ?1",
	[ST_META_SET] = "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
	[ST_RELEASE_DISK] = "UPDATE nodes SET disk_released_at = ?2 WHERE node_id = ?1"
			    " AND state = 'active' AND disk_released_at = 0",
	[ST_RETIRE_DISK] = "INSERT INTO retired_disks (disk_uuid, node_id, retired_at)"
			   " SELECT disk_uuid, node_id, ?2 FROM nodes WHERE node_id = ?1",
	[ST_RETIRED] = "SELECT node_id FROM retired_disks WHERE disk_uuid = ?1",
	[ST_BIND_DISK] = "UPDATE nodes SET disk_uuid = ?2, disk_released_at = 0"
			 " WHERE node_id = ?1 AND disk_released_at > 0",
};

/* Parsed address ranges; slot i (1-based) of a node gives all three of its allocations. */
struct ranges {
	uint32_t v4_base;
	unsigned int v4_prefix;
	uint8_t v6_base[16];
	unsigned int v6_prefix;
	uint32_t pod_base;
	unsigned int pod_pool_prefix, pod_prefix;
	uint32_t slots;	   /* capacity: the smallest of the three */
	const char *limit; /* which range runs out first */
};

struct membership {
	sqlite3 *db;
	sqlite3_stmt *st[ST_COUNT];
	struct ranges r;
	unsigned int log_keep;
	bool batch; /* inside membership_batch_begin/commit */
};

/* SQLite's result code as a negative errno; the message goes to d. */
static int db_fail(struct membership *m, int rc, const char *what, struct diag *d)
{
	diag_set(d, "membership store: %s: %s", what, m->db ? sqlite3_errmsg(m->db) : "?");
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED: return -EBUSY;
	case SQLITE_NOMEM: return -ENOMEM;
	case SQLITE_FULL: return -ENOSPC;
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_AUTH: return -EACCES;
	case SQLITE_CANTOPEN: return -ENOENT;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
	case SQLITE_FORMAT: return -EBADMSG;
	case SQLITE_CONSTRAINT: return -EEXIST;
	default: return -EIO;
	}
}

/* The cached statement id, reset and unbound, prepared on first use. */
static sqlite3_stmt *stmt(struct membership *m, enum stmt_id id, struct diag *d)
{
	sqlite3_stmt *s = m->st[id];
	int rc;

	if (s) {
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
		return s;
	}
	rc = sqlite3_prepare_v3(m->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &s, NULL);
	if (rc != SQLITE_OK) {
		db_fail(m, rc, "preparing a statement", d);
		return NULL;
	}
	m->st[id] = s;
	return s;
}

/* Step s expecting no row (a write) and reset it. */
static int step_done(struct membership *m, sqlite3_stmt *s, const char *what, struct diag *d)
{
	int rc = sqlite3_step(s);

	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return db_fail(m, rc, what, d);
	return 0;
}

/* Step s expecting one row (1), or none (0). */
static int step_row(struct membership *m, sqlite3_stmt *s, const char *what, struct diag *d)
{
	int rc = sqlite3_step(s);

	if (rc == SQLITE_ROW)
		return 1;
	sqlite3_reset(s);
	if (rc == SQLITE_DONE)
		return 0;
	return db_fail(m, rc, what, d);
}

static int run(struct membership *m, enum stmt_id id, const char *what, struct diag *d)
{
	sqlite3_stmt *s = stmt(m, id, d);

	return s ? step_done(m, s, what, d) : -EIO;
}

static int exec_sql(struct membership *m, const char *sql, const char *what, struct diag *d)
{
	int rc = sqlite3_exec(m->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : db_fail(m, rc, what, d);
}

/* A write transaction, or a savepoint inside the caller's batch. */
static int tx_begin(struct membership *m, struct diag *d)
{
	if (m->batch)
		return run(m, ST_SAVEPOINT, "savepoint", d);
	/* IMMEDIATE: take the write lock now, so a busy store fails here, not at COMMIT. */
	return run(m, ST_BEGIN, "begin transaction", d);
}

static int tx_end(struct membership *m, int ret, struct diag *d)
{
	struct diag ignore;

	if (m->batch) {
		if (ret < 0)
			run(m, ST_ROLLBACK_TO, "rollback to savepoint", &ignore);
		run(m, ST_RELEASE, "release savepoint", ret < 0 ? &ignore : d);
		return ret;
	}
	if (ret == 0)
		ret = run(m, ST_COMMIT, "commit", d);
	/* A failed COMMIT may leave the transaction open; never leave it half-done. */
	if (ret < 0 && !sqlite3_get_autocommit(m->db))
		run(m, ST_ROLLBACK, "rollback", &ignore);
	return ret;
}

static int bind_blob(sqlite3_stmt *s, int i, const void *p, size_t n)
{
	return sqlite3_bind_blob(s, i, p, (int)n, SQLITE_TRANSIENT);
}

static int bind_text(sqlite3_stmt *s, int i, const char *p)
{
	return sqlite3_bind_text(s, i, p, -1, SQLITE_TRANSIENT);
}

/* Copy a blob column of exactly n bytes; anything else is a corrupt row. */
static int col_blob(sqlite3_stmt *s, int col, void *out, size_t n)
{
	const void *p = sqlite3_column_blob(s, col);

	if (!p || (size_t)sqlite3_column_bytes(s, col) != n)
		return -EBADMSG;
	memcpy(out, p, n);
	return 0;
}

static int col_text(sqlite3_stmt *s, int col, char *out, size_t size)
{
	const unsigned char *p = sqlite3_column_text(s, col);
	size_t n = (size_t)sqlite3_column_bytes(s, col);

	if (!p || n >= size)
		return -EBADMSG;
	memcpy(out, p, n + 1);
	return 0;
}

/* Columns col..col+5 in PEER_COLS order. */
static int col_peer(sqlite3_stmt *s, int col, struct peer *p)
{
	memset(p, 0, sizeof(*p));
	p->node_id = sqlite3_column_int64(s, col);
	if (col_blob(s, col + 1, p->wg_pubkey, sizeof(p->wg_pubkey)) < 0 ||
	    col_text(s, col + 2, p->endpoints, sizeof(p->endpoints)) < 0 ||
	    col_text(s, col + 3, p->overlay_v4, sizeof(p->overlay_v4)) < 0 ||
	    col_text(s, col + 4, p->overlay_v6, sizeof(p->overlay_v6)) < 0 ||
	    col_text(s, col + 5, p->pod_cidr, sizeof(p->pod_cidr)) < 0)
		return -EBADMSG;
	return 0;
}

/* The PCRs mask selects, PCR_LEN bytes each in PCR order (the pcrs column); returns its size. */
static size_t pack_pcrs(uint32_t mask, const uint8_t pcrs[PCR_COUNT][PCR_LEN],
			uint8_t out[PCR_COUNT * PCR_LEN])
{
	size_t n = 0;

	for (unsigned int i = 0; i < PCR_COUNT; i++) {
		if (mask & (1u << i)) {
			memcpy(out + n, pcrs[i], PCR_LEN);
			n += PCR_LEN;
		}
	}
	return n;
}

/* The pcr_mask and pcrs columns back into a mask and 24 slots (unselected ones zeroed). */
static int col_pcrs(sqlite3_stmt *s, int col, uint32_t *mask, uint8_t pcrs[PCR_COUNT][PCR_LEN])
{
	int64_t m = sqlite3_column_int64(s, col);
	/* A zero-length blob reads as NULL; its size is what counts. */
	const uint8_t *p = sqlite3_column_blob(s, col + 1);
	size_t n = (size_t)sqlite3_column_bytes(s, col + 1), off = 0;

	memset(pcrs, 0, PCR_COUNT * PCR_LEN);
	if (m < 0 || m >> PCR_COUNT)
		return -EBADMSG;
	*mask = (uint32_t)m;
	for (unsigned int i = 0; i < PCR_COUNT; i++) {
		if (!(*mask & (1u << i)))
			continue;
		if (!p || off + PCR_LEN > n)
			return -EBADMSG;
		memcpy(pcrs[i], p + off, PCR_LEN);
		off += PCR_LEN;
	}
	return off == n ? 0 : -EBADMSG;
}

/* ---- address ranges ---- */

static int parse_cidr(const char *s, int af, uint8_t *addr, unsigned int *prefix)
{
	char buf[64], *slash, *end;
	unsigned long p;
	size_t n = s ? strlen(s) : sizeof(buf);

	if (n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, n + 1);
	slash = strchr(buf, '/');
	if (!slash)
		return -EINVAL;
	*slash = '\0';
	errno = 0;
	p = strtoul(slash + 1, &end, 10);
	if (errno || *end || end == slash + 1 || p > (af == AF_INET ? 32u : 128u))
		return -EINVAL;
	if (inet_pton(af, buf, addr) != 1)
		return -EINVAL;
	*prefix = (unsigned int)p;
	return 0;
}

static uint32_t mask4(unsigned int prefix)
{
	return prefix ? ~0u << (32 - prefix) : 0;
}

static int parse_v4(const char *s, uint32_t *base, unsigned int *prefix)
{
	uint8_t a[4];

	if (parse_cidr(s, AF_INET, a, prefix) < 0)
		return -EINVAL;
	*base = (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 | (uint32_t)a[2] << 8 | a[3];
	return (*base & ~mask4(*prefix)) ? -EINVAL : 0; /* host bits must be zero */
}

static bool v6_host_bits_zero(const uint8_t a[16], unsigned int prefix)
{
	for (unsigned int bit = prefix; bit < 128; bit++)
		if (a[bit / 8] & (0x80 >> (bit % 8)))
			return false;
	return true;
}

static void limit_slots(struct ranges *r, uint64_t n, const char *what)
{
	if (n < r->slots) {
		r->slots = (uint32_t)n;
		r->limit = what;
	}
}

static int parse_ranges(const struct membership_config *c, struct ranges *r, struct diag *d)
{
	memset(r, 0, sizeof(*r));
	if (!c || parse_v4(c->overlay_v4, &r->v4_base, &r->v4_prefix) < 0 || r->v4_prefix > 30) {
		diag_set(d,
			 "membership: overlay IPv4 range '%s' is not a network CIDR of /30 or "
			 "larger",
			 c && c->overlay_v4 ? c->overlay_v4 : "");
		return -EINVAL;
	}
	if (parse_cidr(c->overlay_v6, AF_INET6, r->v6_base, &r->v6_prefix) < 0 ||
	    r->v6_prefix > 126 || !v6_host_bits_zero(r->v6_base, r->v6_prefix)) {
		diag_set(d,
			 "membership: overlay IPv6 range '%s' is not a network CIDR of /126 "
			 "or larger",
			 c->overlay_v6 ? c->overlay_v6 : "");
		return -EINVAL;
	}
	if (parse_v4(c->pod_pool, &r->pod_base, &r->pod_pool_prefix) < 0 ||
	    c->pod_prefix < r->pod_pool_prefix || c->pod_prefix > 30) {
		diag_set(d, "membership: pod pool '%s' cannot be split into /%u CIDRs",
			 c->pod_pool ? c->pod_pool : "", c->pod_prefix);
		return -EINVAL;
	}
	r->pod_prefix = c->pod_prefix;
	if (((r->v4_base ^ r->pod_base) &
	     mask4(r->v4_prefix < r->pod_pool_prefix ? r->v4_prefix : r->pod_pool_prefix)) == 0) {
		diag_set(d, "membership: overlay range %s and pod pool %s overlap", c->overlay_v4,
			 c->pod_pool);
		return -EINVAL;
	}
	r->slots = MAX_SLOTS;
	r->limit = "node";
	/* Network and broadcast addresses stay out of the overlay; slot 0 is never used. */
	limit_slots(r, (1ull << (32 - r->v4_prefix)) - 2, "overlay IPv4");
	if (128 - r->v6_prefix < 32)
		limit_slots(r, (1ull << (128 - r->v6_prefix)) - 1, "overlay IPv6");
	limit_slots(r, 1ull << (r->pod_prefix - r->pod_pool_prefix), "pod CIDR");
	return 0;
}

static void fmt_v4(uint32_t a, char *out, size_t size)
{
	snprintf(out, size, "%u.%u.%u.%u", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff);
}

/* Addresses of slot (1..r->slots). */
static void slot_addresses(const struct ranges *r, uint32_t slot, struct peer *p)
{
	uint8_t a6[16];
	uint32_t carry = slot;

	fmt_v4(r->v4_base + slot, p->overlay_v4, sizeof(p->overlay_v4));
	memcpy(a6, r->v6_base, 16);
	for (int i = 15; i >= 0 && carry; i--) {
		uint32_t v = a6[i] + (carry & 0xff);

		a6[i] = (uint8_t)v;
		carry = (carry >> 8) + (v >> 8);
	}
	inet_ntop(AF_INET6, a6, p->overlay_v6, sizeof(p->overlay_v6));
	fmt_v4(r->pod_base + ((slot - 1) << (32 - r->pod_prefix)), p->pod_cidr,
	       sizeof(p->pod_cidr));
	snprintf(p->pod_cidr + strlen(p->pod_cidr), sizeof(p->pod_cidr) - strlen(p->pod_cidr),
		 "/%u", r->pod_prefix);
}

/* ---- open, migrate, configuration ---- */

static int user_version(struct membership *m, int *v, struct diag *d)
{
	sqlite3_stmt *s;
	int rc = sqlite3_prepare_v2(m->db, "PRAGMA user_version", -1, &s, NULL);

	if (rc != SQLITE_OK)
		return db_fail(m, rc, "reading the schema version", d);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*v = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	return rc == SQLITE_ROW ? 0 : db_fail(m, rc, "reading the schema version", d);
}

/* Apply migration v (to version v + 1) in its own transaction, unless another process did. */
static int migrate_one(struct membership *m, int v, struct diag *d)
{
	char sql[64];
	int cur = -1, ret;

	ret = exec_sql(m, "BEGIN IMMEDIATE", "begin migration", d);
	if (ret < 0)
		return ret;
	ret = user_version(m, &cur, d);
	if (ret == 0 && cur == v) {
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v + 1);
		ret = exec_sql(m, migrations[v], "schema migration", d);
		if (ret == 0)
			ret = exec_sql(m, sql, "setting the schema version", d);
	}
	if (ret == 0)
		return exec_sql(m, "COMMIT", "commit migration", d);
	sqlite3_exec(m->db, "ROLLBACK", NULL, NULL, NULL);
	diag_prefix(d, "migration to schema version %d", v + 1);
	return ret;
}

static int migrate(struct membership *m, struct diag *d)
{
	int v = 0, ret;

	ret = user_version(m, &v, d);
	if (ret < 0)
		return ret;
	if (v > MEMBERSHIP_SCHEMA_VERSION || v < 0) {
		diag_set(d,
			 "membership store has schema version %d, newer than this joind knows "
			 "(%d): run a newer joind",
			 v, MEMBERSHIP_SCHEMA_VERSION);
		return -EPROTONOSUPPORT;
	}
	for (; v < MEMBERSHIP_SCHEMA_VERSION; v++) {
		ret = migrate_one(m, v, d);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* Record the ranges on first open; afterwards they must not change under existing members. */
static int check_config(struct membership *m, const struct membership_config *c, struct diag *d)
{
	static const char *const sql_get =
	    "SELECT overlay_v4, overlay_v6, pod_pool, pod_prefix FROM config WHERE id = 1";
	static const char *const sql_put = "INSERT INTO config VALUES (1, ?1, ?2, ?3, ?4)";
	sqlite3_stmt *s = NULL;
	int rc, ret;

	ret = exec_sql(m, "BEGIN IMMEDIATE", "begin", d);
	if (ret < 0)
		return ret;
	rc = sqlite3_prepare_v2(m->db, sql_get, -1, &s, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		if (strcmp((const char *)sqlite3_column_text(s, 0), c->overlay_v4) ||
		    strcmp((const char *)sqlite3_column_text(s, 1), c->overlay_v6) ||
		    strcmp((const char *)sqlite3_column_text(s, 2), c->pod_pool) ||
		    sqlite3_column_int(s, 3) != (int)c->pod_prefix) {
			diag_set(d,
				 "membership store was created with ranges %s, %s, %s split "
				 "in /%d; refusing to open it with different ones",
				 sqlite3_column_text(s, 0), sqlite3_column_text(s, 1),
				 sqlite3_column_text(s, 2), sqlite3_column_int(s, 3));
			ret = -EINVAL;
		}
	} else if (rc == SQLITE_DONE) {
		sqlite3_finalize(s);
		s = NULL;
		rc = sqlite3_prepare_v2(m->db, sql_put, -1, &s, NULL);
		if (rc == SQLITE_OK) {
			bind_text(s, 1, c->overlay_v4);
			bind_text(s, 2, c->overlay_v6);
			bind_text(s, 3, c->pod_pool);
			sqlite3_bind_int(s, 4, (int)c->pod_prefix);
			rc = sqlite3_step(s);
		}
		if (rc != SQLITE_DONE)
			ret = db_fail(m, rc, "recording the address ranges", d);
	} else {
		ret = db_fail(m, rc, "reading the address ranges", d);
	}
	sqlite3_finalize(s);
	if (ret == 0)
		return exec_sql(m, "COMMIT", "commit", d);
	sqlite3_exec(m->db, "ROLLBACK", NULL, NULL, NULL);
	return ret;
}

static int set_pragmas(struct membership *m, struct diag *d)
{
	sqlite3_stmt *s;
	bool wal = false;
	int rc;

	/* Defensive: no PRAGMA writable_schema or similar can corrupt the file from SQL. */
	sqlite3_db_config(m->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
	sqlite3_extended_result_codes(m->db, 1);
	sqlite3_busy_timeout(m->db, BUSY_TIMEOUT_MS);
	rc = sqlite3_prepare_v2(m->db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
	if (rc != SQLITE_OK)
		return db_fail(m, rc, "setting WAL mode", d);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		wal = !strcmp((const char *)sqlite3_column_text(s, 0), "wal");
	sqlite3_finalize(s);
	if (rc != SQLITE_ROW)
		return db_fail(m, rc, "setting WAL mode", d);
	/* Crash safety rests on WAL; a file system that cannot do it is not good enough. */
	if (!wal) {
		diag_set(d, "membership store: the file system does not support WAL mode");
		return -ENOTSUP;
	}
	/* FULL: every commit fsyncs the WAL, so a committed join survives power loss too. */
	return exec_sql(m, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;", "pragmas", d);
}

/* SQLite creates files 0644; members' data is nobody else's business. */
static int create_private(const char *path, struct diag *d)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd < 0) {
		int e = errno;

		diag_set(d, "%s: cannot open the membership store: %s", path, strerror(e));
		return -e;
	}
	close(fd);
	return 0;
}

int membership_open(const char *path, const struct membership_config *cfg, struct membership **out,
		    struct diag *d)
{
	struct membership *m;
	int rc, ret;

	m = calloc(1, sizeof(*m));
	if (!m) {
		diag_set(d, "membership: out of memory");
		return -ENOMEM;
	}
	ret = parse_ranges(cfg, &m->r, d);
	if (ret == 0)
		ret = create_private(path, d);
	if (ret < 0) {
		free(m);
		return ret;
	}
	m->log_keep = cfg->log_keep ? cfg->log_keep : DEFAULT_LOG_KEEP;
	rc = sqlite3_open_v2(path, &m->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, NULL);
	if (rc != SQLITE_OK) {
		ret = db_fail(m, rc, "open", d);
		goto fail;
	}
	ret = set_pragmas(m, d);
	if (ret == 0)
		ret = migrate(m, d);
	if (ret == 0)
		ret = check_config(m, cfg, d);
	if (ret < 0)
		goto fail;
	*out = m;
	return 0;
fail:
	diag_prefix(d, "%s", path);
	membership_close(m);
	return ret;
}

void membership_close(struct membership *m)
{
	if (!m)
		return;
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(m->st[i]);
	sqlite3_close_v2(m->db);
	free(m);
}

/* ---- generation and change log ---- */

static int read_generation(struct membership *m, uint64_t *gen, uint64_t *floor, struct diag *d)
{
	sqlite3_stmt *s = stmt(m, ST_GENERATION, d);
	int ret;

	if (!s)
		return -EIO;
	ret = step_row(m, s, "reading the generation", d);
	if (ret == 0) {
		diag_set(d, "membership store: generation row missing (corrupt store)");
		return -EBADMSG;
	}
	if (ret < 0)
		return ret;
	*gen = (uint64_t)sqlite3_column_int64(s, 0);
	if (floor)
		*floor = (uint64_t)sqlite3_column_int64(s, 1);
	sqlite3_reset(s);
	return 0;
}

/* Next generation, logged as op on node; old entries beyond log_keep are dropped. */
static int bump(struct membership *m, int64_t node_id, const char *op, uint64_t *gen,
		struct diag *d)
{
	sqlite3_stmt *s;
	int ret;

	*gen = 0;
	ret = run(m, ST_BUMP, "bumping the generation", d);
	if (ret == 0)
		ret = read_generation(m, gen, NULL, d);
	if (ret < 0)
		return ret;
	s = stmt(m, ST_LOG, d);
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)*gen);
	sqlite3_bind_int64(s, 2, node_id);
	bind_text(s, 3, op);
	ret = step_done(m, s, "logging the change", d);
	if (ret < 0 || *gen <= m->log_keep)
		return ret;
	s = stmt(m, ST_COMPACT, d);
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)(*gen - m->log_keep));
	ret = step_done(m, s, "compacting the change log", d);
	if (ret < 0)
		return ret;
	s = stmt(m, ST_RAISE_FLOOR, d);
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)(*gen - m->log_keep));
	return step_done(m, s, "compacting the change log", d);
}

/* ---- join ---- */

static bool printable(const char *s, size_t max)
{
	size_t n = strnlen(s, max);

	if (n == max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return false;
	return true;
}

static int check_record(const struct join_record *in, struct diag *d)
{
	if (in->ak_name_len == 0 || in->ak_name_len > MEMBERSHIP_AK_NAME_MAX) {
		diag_set(d, "join: AK name must be 1 to %d bytes", MEMBERSHIP_AK_NAME_MAX);
		return -EINVAL;
	}
	if (!printable(in->endpoints, sizeof(in->endpoints))) {
		diag_set(d,
			 "join: endpoints must be printable ASCII without spaces, under %d bytes",
			 MEMBERSHIP_ENDPOINTS_MAX);
		return -EINVAL;
	}
	/* SQLite integers are signed 64-bit; a TPM clock in ms never gets there honestly. */
	if (in->clock > INT64_MAX) {
		diag_set(d, "join: TPM clock out of range");
		return -EINVAL;
	}
	if (in->pcr_mask >> PCR_COUNT) {
		diag_set(d, "join: PCR mask 0x%x selects PCRs beyond 23", in->pcr_mask);
		return -EINVAL;
	}
	return 0;
}

/* The verifier's rule (verify.c): resetCount never decreases; with the same resetCount,
 * restartCount never decreases; with both the same, the clock must advance. */
static int check_counters(const struct join_record *in, int64_t node_id, uint32_t reset,
			  uint32_t restart, uint64_t clock, struct diag *d)
{
	if (in->reset_count < reset) {
		diag_set(d, "rejoin of node %lld refused: resetCount went backwards (%u < %u)",
			 (long long)node_id, in->reset_count, reset);
		return -EPERM;
	}
	if (in->reset_count == reset && in->restart_count < restart) {
		diag_set(d, "rejoin of node %lld refused: restartCount went backwards (%u < %u)",
			 (long long)node_id, in->restart_count, restart);
		return -EPERM;
	}
	if (in->reset_count == reset && in->restart_count == restart && in->clock <= clock) {
		diag_set(d,
			 "rejoin of node %lld refused: TPM clock did not advance (%llu <= %llu): "
			 "replayed or rolled-back evidence",
			 (long long)node_id, (unsigned long long)in->clock,
			 (unsigned long long)clock);
		return -EPERM;
	}
	return 0;
}

static int load_peer(struct membership *m, int64_t node_id, struct peer *p, struct diag *d)
{
	sqlite3_stmt *s = stmt(m, ST_PEER, d);
	int ret;

	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, node_id);
	ret = step_row(m, s, "reading a member", d);
	if (ret == 0) {
		diag_set(d, "membership: node %lld not found", (long long)node_id);
		return -ENOENT;
	}
	if (ret < 0)
		return ret;
	ret = col_peer(s, 0, p);
	sqlite3_reset(s);
	if (ret < 0)
		diag_set(d, "membership store: node %lld has a malformed row", (long long)node_id);
	return ret;
}

static int slot_query(struct membership *m, enum stmt_id id, int64_t *v, struct diag *d)
{
	sqlite3_stmt *s = stmt(m, id, d);
	int ret;

	if (!s)
		return -EIO;
	ret = step_row(m, s, "finding a free address slot", d);
	if (ret <= 0)
		return ret < 0 ? ret : -EIO;
	*v = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	return 0;
}

static int free_slot(struct membership *m, uint32_t *slot, struct diag *d)
{
	int64_t v;
	int ret;

	ret = slot_query(m, ST_NEXT_SLOT, &v, d);
	if (ret == 0 && v > (int64_t)m->r.slots)
		ret = slot_query(m, ST_FREE_SLOT, &v, d);
	if (ret < 0)
		return ret;
	if (v < 1 || v > (int64_t)m->r.slots) {
		diag_set(d,
			 "join refused: %s range exhausted (%u nodes, revoked ones included); "
			 "configure a larger range",
			 m->r.limit, m->r.slots);
		return -ENOSPC;
	}
	*slot = (uint32_t)v;
	return 0;
}

/* 1 if uuid was a disk the operator released (retired for good), 0 if not. */
static int retired(struct membership *m, const uint8_t uuid[MEMBERSHIP_UUID_LEN], struct diag *d)
{
	sqlite3_stmt *s = stmt(m, ST_RETIRED, d);
	int ret;

	if (!s)
		return -EIO;
	bind_blob(s, 1, uuid, MEMBERSHIP_UUID_LEN);
	ret = step_row(m, s, "looking up retired disks", d);
	if (ret == 1)
		sqlite3_reset(s);
	return ret;
}

static int join_new(struct membership *m, const struct join_record *in, struct join_result *out,
		    struct diag *d)
{
	uint8_t pcrs[PCR_COUNT * PCR_LEN];
	struct peer p = { 0 };
	sqlite3_stmt *s;
	uint32_t slot;
	int ret;

	ret = retired(m, in->disk_uuid, d);
	if (ret > 0) {
		diag_set(d,
			 "join refused: its disk UUID was retired by an operator's replace-disk; "
			 "present a blank disk");
		return -EPERM;
	}
	if (ret == 0)
		ret = free_slot(m, &slot, d);
	if (ret < 0)
		return ret;
	slot_addresses(&m->r, slot, &p);
	s = stmt(m, ST_INSERT, d);
	if (!s)
		return -EIO;
	bind_blob(s, 1, in->ek_id, sizeof(in->ek_id));
	bind_blob(s, 2, in->ak_name, in->ak_name_len);
	bind_blob(s, 3, in->wg_pubkey, sizeof(in->wg_pubkey));
	bind_text(s, 4, in->endpoints);
	sqlite3_bind_int64(s, 5, slot);
	bind_text(s, 6, p.overlay_v4);
	bind_text(s, 7, p.overlay_v6);
	bind_text(s, 8, p.pod_cidr);
	bind_blob(s, 9, in->disk_uuid, sizeof(in->disk_uuid));
	sqlite3_bind_int64(s, 10, in->reset_count);
	sqlite3_bind_int64(s, 11, in->restart_count);
	sqlite3_bind_int64(s, 12, (int64_t)in->clock);
	bind_blob(s, 13, in->evidence_digest, sizeof(in->evidence_digest));
	sqlite3_bind_int64(s, 14, (int64_t)time(NULL));
	sqlite3_bind_int64(s, 15, in->pcr_mask);
	bind_blob(s, 16, pcrs, pack_pcrs(in->pcr_mask, in->pcrs, pcrs));
	ret = step_done(m, s, "recording the new member", d);
	if (ret == -EEXIST) {
		/* The EK was looked up already: the only unique left to collide is the disk. */
		diag_set(d, "join refused: disk UUID already registered to another node");
		return -EPERM;
	}
	if (ret < 0)
		return ret;
	p.node_id = sqlite3_last_insert_rowid(m->db);
	memcpy(p.wg_pubkey, in->wg_pubkey, sizeof(p.wg_pubkey));
	memcpy(p.endpoints, in->endpoints, sizeof(p.endpoints));
	out->rejoin = false;
	out->peer = p;
	return bump(m, p.node_id, "add", &out->generation, d);
}

static int update_member(struct membership *m, int64_t node_id, const struct join_record *in,
			 struct diag *d)
{
	sqlite3_stmt *s = stmt(m, ST_UPDATE, d);
	uint8_t pcrs[PCR_COUNT * PCR_LEN];

	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, node_id);
	bind_blob(s, 2, in->ak_name, in->ak_name_len);
	bind_blob(s, 3, in->wg_pubkey, sizeof(in->wg_pubkey));
	bind_text(s, 4, in->endpoints);
	sqlite3_bind_int64(s, 5, in->reset_count);
	sqlite3_bind_int64(s, 6, in->restart_count);
	sqlite3_bind_int64(s, 7, (int64_t)in->clock);
	bind_blob(s, 8, in->evidence_digest, sizeof(in->evidence_digest));
	sqlite3_bind_int64(s, 9, (int64_t)time(NULL));
	sqlite3_bind_int64(s, 10, in->pcr_mask);
	bind_blob(s, 11, pcrs, pack_pcrs(in->pcr_mask, in->pcrs, pcrs));
	return step_done(m, s, "updating the member", d);
}

/* The disk a rejoining node presents: the one it registered, or, after the operator released
 * that one, any disk never registered before (bound here, in the join's transaction). */
static int check_disk(struct membership *m, int64_t node_id,
		      const uint8_t have[MEMBERSHIP_UUID_LEN], bool released,
		      const struct join_record *in, bool *bind, struct diag *d)
{
	int ret;

	*bind = false;
	if (!released) {
		if (memcmp(have, in->disk_uuid, MEMBERSHIP_UUID_LEN) == 0)
			return 0;
		diag_set(d,
			 "rejoin of node %lld refused: it presents a different disk than the one "
			 "registered at its first join (if that disk was replaced, the operator "
			 "runs conclavectl replace-disk)",
			 (long long)node_id);
		return -EPERM;
	}
	ret = retired(m, in->disk_uuid, d);
	if (ret < 0)
		return ret;
	if (ret > 0) {
		diag_set(d,
			 "rejoin of node %lld refused: it presents a disk the operator released; "
			 "that disk's key is never given out again: give the node a blank disk",
			 (long long)node_id);
		return -EKEYREVOKED;
	}
	*bind = true;
	return 0;
}

/* After the counters check: the released node's new disk becomes its registered one. */
static int bind_disk(struct membership *m, int64_t node_id, const uint8_t uuid[MEMBERSHIP_UUID_LEN],
		     struct diag *d)
{
	sqlite3_stmt *s = stmt(m, ST_BIND_DISK, d);
	int ret;

	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, node_id);
	bind_blob(s, 2, uuid, MEMBERSHIP_UUID_LEN);
	ret = step_done(m, s, "binding the new disk", d);
	if (ret == -EEXIST) {
		diag_set(d,
			 "rejoin of node %lld refused: disk UUID already registered to another "
			 "node",
			 (long long)node_id);
		return -EPERM;
	}
	if (ret == 0 && sqlite3_changes(m->db) != 1) {
		diag_set(d, "membership store: node %lld's disk is not released",
			 (long long)node_id);
		return -EIO;
	}
	return ret;
}

/* s is positioned on the ST_FIND_EK row of the rejoining node. */
static int join_again(struct membership *m, sqlite3_stmt *s, const struct join_record *in,
		      struct join_result *out, struct diag *d)
{
	int64_t node_id = sqlite3_column_int64(s, 0);
	bool active = !strcmp((const char *)sqlite3_column_text(s, 1), "active");
	bool released = sqlite3_column_int(s, 8) != 0, bind;
	uint8_t uuid[MEMBERSHIP_UUID_LEN], wg[MEMBERSHIP_WG_KEY_LEN];
	char endpoints[MEMBERSHIP_ENDPOINTS_MAX];
	uint32_t reset = (uint32_t)sqlite3_column_int64(s, 3);
	uint32_t restart = (uint32_t)sqlite3_column_int64(s, 4);
	uint64_t clock = (uint64_t)sqlite3_column_int64(s, 5);
	bool changed;
	int ret;

	if (col_blob(s, 2, uuid, sizeof(uuid)) < 0 || col_blob(s, 6, wg, sizeof(wg)) < 0 ||
	    col_text(s, 7, endpoints, sizeof(endpoints)) < 0) {
		sqlite3_reset(s);
		diag_set(d, "membership store: node %lld has a malformed row", (long long)node_id);
		return -EBADMSG;
	}
	sqlite3_reset(s);
	if (!active) {
		diag_set(d, "rejoin of node %lld refused: the node was revoked",
			 (long long)node_id);
		return -EPERM;
	}
	/* The disk key is bound to the registered disk; only an operator's release lets the
	 * node register another one. */
	ret = check_disk(m, node_id, uuid, released, in, &bind, d);
	if (ret == 0)
		ret = check_counters(in, node_id, reset, restart, clock, d);
	if (ret == 0)
		ret = update_member(m, node_id, in, d);
	if (ret == 0 && bind)
		ret = bind_disk(m, node_id, in->disk_uuid, d);
	if (ret == 0)
		ret = load_peer(m, node_id, &out->peer, d);
	if (ret < 0)
		return ret;
	out->rejoin = true;
	out->disk_bound = bind;
	changed = memcmp(wg, in->wg_pubkey, sizeof(wg)) != 0 || strcmp(endpoints, in->endpoints);
	if (changed)
		return bump(m, node_id, "update", &out->generation, d);
	return read_generation(m, &out->generation, NULL, d);
}

static int join_tx(struct membership *m, const struct join_record *in, struct join_result *out,
		   struct diag *d)
{
	sqlite3_stmt *s = stmt(m, ST_FIND_EK, d);
	int ret;

	if (!s)
		return -EIO;
	bind_blob(s, 1, in->ek_id, sizeof(in->ek_id));
	ret = step_row(m, s, "looking up the node", d);
	if (ret < 0)
		return ret;
	return ret ? join_again(m, s, in, out, d) : join_new(m, in, out, d);
}

int membership_join(struct membership *m, const struct join_record *in, struct join_result *out,
		    struct diag *d)
{
	int ret = check_record(in, d);

	if (ret == 0)
		ret = tx_begin(m, d);
	if (ret < 0)
		return ret;
	memset(out, 0, sizeof(*out));
	return tx_end(m, join_tx(m, in, out, d), d);
}

int membership_revoke(struct membership *m, int64_t node_id, struct diag *d)
{
	sqlite3_stmt *s;
	uint64_t gen;
	int ret;

	ret = tx_begin(m, d);
	if (ret < 0)
		return ret;
	s = stmt(m, ST_REVOKE, d);
	if (!s)
		return tx_end(m, -EIO, d);
	sqlite3_bind_int64(s, 1, node_id);
	sqlite3_bind_int64(s, 2, (int64_t)time(NULL));
	ret = step_done(m, s, "revoking", d);
	if (ret == 0 && sqlite3_changes(m->db) != 1) {
		diag_set(d, "revoke: node %lld is not an active member", (long long)node_id);
		ret = -ENOENT;
	}
	if (ret == 0)
		ret = bump(m, node_id, "remove", &gen, d);
	return tx_end(m, ret, d);
}

/* Why node_id's disk cannot be released: -ENOENT unknown, -EPERM revoked, -EALREADY released. */
static int release_refused(struct membership *m, int64_t node_id, struct diag *d)
{
	sqlite3_stmt *s = stmt(m, ST_DISK_OF, d);
	bool active, released;
	int ret;

	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, node_id);
	ret = step_row(m, s, "looking up the node", d);
	if (ret < 0)
		return ret;
	if (ret == 0) {
		diag_set(d, "replace-disk: there is no node %lld", (long long)node_id);
		return -ENOENT;
	}
	active = !strcmp((const char *)sqlite3_column_text(s, 1), "active");
	released = sqlite3_column_int(s, 3) != 0;
	sqlite3_reset(s);
	if (!active) {
		diag_set(d,
			 "replace-disk: node %lld was revoked, and a revoked node is never "
			 "re-admitted",
			 (long long)node_id);
		return -EPERM;
	}
	if (released) {
		diag_set(d,
			 "replace-disk: node %lld's disk is already released; its next join binds "
			 "the disk it presents",
			 (long long)node_id);
		return -EALREADY;
	}
	diag_set(d, "replace-disk: node %lld's disk cannot be released", (long long)node_id);
	return -EIO;
}

int membership_release_disk(struct membership *m, int64_t node_id, struct diag *d)
{
	int64_t now = time(NULL) > 0 ? (int64_t)time(NULL) : 1; /* 0 means bound */
	sqlite3_stmt *s;
	int ret;

	ret = tx_begin(m, d);
	if (ret < 0)
		return ret;
	s = stmt(m, ST_RELEASE_DISK, d);
	if (!s)
		return tx_end(m, -EIO, d);
	sqlite3_bind_int64(s, 1, node_id);
	sqlite3_bind_int64(s, 2, now);
	ret = step_done(m, s, "releasing the disk", d);
	if (ret == 0 && sqlite3_changes(m->db) != 1)
		ret = release_refused(m, node_id, d);
	if (ret == 0) {
		s = stmt(m, ST_RETIRE_DISK, d);
		if (!s)
			return tx_end(m, -EIO, d);
		sqlite3_bind_int64(s, 1, node_id);
		sqlite3_bind_int64(s, 2, now);
		ret = step_done(m, s, "retiring the disk", d);
		if (ret == 0 && sqlite3_changes(m->db) != 1) {
			diag_set(d, "membership store: node %lld vanished", (long long)node_id);
			ret = -EIO;
		}
	}
	return tx_end(m, ret, d);
}

int membership_batch_begin(struct membership *m, struct diag *d)
{
	int ret;

	if (m->batch) {
		diag_set(d, "membership: a batch is already open");
		return -EBUSY;
	}
	ret = run(m, ST_BEGIN, "begin batch", d);
	if (ret == 0)
		m->batch = true;
	return ret;
}

int membership_batch_commit(struct membership *m, struct diag *d)
{
	struct diag ignore;
	int ret;

	if (!m->batch) {
		diag_set(d, "membership: no batch open");
		return -EINVAL;
	}
	m->batch = false;
	ret = run(m, ST_COMMIT, "commit batch", d);
	if (ret < 0 && !sqlite3_get_autocommit(m->db))
		run(m, ST_ROLLBACK, "rollback", &ignore);
	return ret;
}

/* ---- reads ---- */

/* Reads see one snapshot (WAL): the generation and the rows agree. */
static int read_begin(struct membership *m, struct diag *d)
{
	return sqlite3_get_autocommit(m->db) ? exec_sql(m, "BEGIN", "begin read", d) : 1;
}

static void read_end(struct membership *m, int begun)
{
	if (begun == 0)
		sqlite3_exec(m->db, "COMMIT", NULL, NULL, NULL);
}

static int grow(void **arr, size_t elem, size_t n, size_t *cap)
{
	void *p;

	if (n < *cap)
		return 0;
	*cap = *cap ? *cap * 2 : 16;
	p = realloc(*arr, *cap * elem);
	if (!p)
		return -ENOMEM;
	*arr = p;
	return 0;
}

static int collect_peers(struct membership *m, struct peer **peers, size_t *n, struct diag *d)
{
	sqlite3_stmt *s = stmt(m, ST_ACTIVE_PEERS, d);
	struct peer *arr = NULL;
	size_t cnt = 0, cap = 0;
	int ret;

	if (!s)
		return -EIO;
	while ((ret = step_row(m, s, "listing members", d)) == 1) {
		if (grow((void **)&arr, sizeof(*arr), cnt, &cap) < 0) {
			ret = -ENOMEM;
			diag_set(d, "membership: out of memory");
			break;
		}
		if (col_peer(s, 0, &arr[cnt++]) < 0) {
			ret = -EBADMSG;
			diag_set(d, "membership store: malformed member row");
			break;
		}
	}
	sqlite3_reset(s);
	if (ret < 0) {
		free(arr);
		return ret;
	}
	*peers = arr;
	*n = cnt;
	return 0;
}

int membership_snapshot(struct membership *m, uint64_t *generation, struct peer **peers, size_t *n,
			struct diag *d)
{
	int begun = read_begin(m, d), ret;

	if (begun < 0)
		return begun;
	ret = read_generation(m, generation, NULL, d);
	if (ret == 0)
		ret = collect_peers(m, peers, n, d);
	read_end(m, begun);
	return ret;
}

static int collect_deltas(struct membership *m, uint64_t since, struct peer_delta **deltas,
			  size_t *n, struct diag *d)
{
	sqlite3_stmt *s = stmt(m, ST_DELTAS, d);
	struct peer_delta *arr = NULL;
	size_t cnt = 0, cap = 0;
	int ret;

	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)since);
	while ((ret = step_row(m, s, "listing changes", d)) == 1) {
		struct peer_delta *x;

		if (grow((void **)&arr, sizeof(*arr), cnt, &cap) < 0) {
			ret = -ENOMEM;
			diag_set(d, "membership: out of memory");
			break;
		}
		x = &arr[cnt++];
		if (col_peer(s, 0, &x->peer) < 0) {
			ret = -EBADMSG;
			diag_set(d, "membership store: malformed member row");
			break;
		}
		x->op = sqlite3_column_int(s, 6)   ? PEER_REMOVE
			: sqlite3_column_int(s, 7) ? PEER_ADD
						   : PEER_UPDATE;
	}
	sqlite3_reset(s);
	if (ret < 0) {
		free(arr);
		return ret;
	}
	*deltas = arr;
	*n = cnt;
	return 0;
}

int membership_deltas_since(struct membership *m, uint64_t since, uint64_t *generation,
			    struct peer_delta **deltas, size_t *n, struct diag *d)
{
	int begun = read_begin(m, d), ret;
	uint64_t floor;

	if (begun < 0)
		return begun;
	ret = read_generation(m, generation, &floor, d);
	if (ret == 0 && (since < floor || since > *generation)) {
		/* Too old: the log was compacted. Newer than us: the store was restored from
		 * an older copy. Either way only a full snapshot is right. */
		diag_set(d,
			 "no deltas from generation %llu (log holds %llu..%llu): snapshot needed",
			 (unsigned long long)since, (unsigned long long)floor,
			 (unsigned long long)*generation);
		ret = -ESTALE;
	}
	if (ret == 0)
		ret = collect_deltas(m, since, deltas, n, d);
	read_end(m, begun);
	return ret;
}

int membership_disk_uuid_of(struct membership *m, int64_t node_id,
			    uint8_t uuid[MEMBERSHIP_UUID_LEN], struct diag *d)
{
	sqlite3_stmt *s = stmt(m, ST_DISK_OF, d);
	int ret;

	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, node_id);
	ret = step_row(m, s, "looking up a disk", d);
	if (ret == 0) {
		diag_set(d, "membership: node %lld not found", (long long)node_id);
		return -ENOENT;
	}
	if (ret < 0)
		return ret;
	ret = col_blob(s, 0, uuid, MEMBERSHIP_UUID_LEN);
	sqlite3_reset(s);
	if (ret < 0)
		diag_set(d, "membership store: node %lld has a malformed row", (long long)node_id);
	return ret;
}

int membership_check_disk_key(struct membership *m, int64_t node_id,
			      const uint8_t uuid[MEMBERSHIP_UUID_LEN],
			      uint8_t ek_id[MEMBERSHIP_EK_ID_LEN], struct diag *d)
{
	sqlite3_stmt *s = stmt(m, ST_DISK_OF, d);
	uint8_t have[MEMBERSHIP_UUID_LEN];
	bool active, released;
	int ret;

	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, node_id);
	ret = step_row(m, s, "looking up a disk", d);
	if (ret == 0) {
		diag_set(d, "disk key refused: node %lld is not a member", (long long)node_id);
		return -EPERM;
	}
	if (ret < 0)
		return ret;
	active = !strcmp((const char *)sqlite3_column_text(s, 1), "active");
	released = sqlite3_column_int(s, 3) != 0;
	ret = col_blob(s, 0, have, sizeof(have));
	if (ret == 0)
		ret = col_blob(s, 2, ek_id, MEMBERSHIP_EK_ID_LEN);
	sqlite3_reset(s);
	if (ret < 0) {
		diag_set(d, "membership store: node %lld has a malformed row", (long long)node_id);
		return ret;
	}
	if (!active) {
		diag_set(d, "disk key refused: node %lld was revoked", (long long)node_id);
		return -EPERM;
	}
	if (released) {
		diag_set(d, "disk key refused: the operator released node %lld's disk",
			 (long long)node_id);
		return -EPERM;
	}
	if (memcmp(have, uuid, sizeof(have)) != 0) {
		diag_set(d, "disk key refused: node %lld did not register that disk",
			 (long long)node_id);
		return -EPERM;
	}
	return 0;
}

int membership_node_of(struct membership *m, const uint8_t ek_id[MEMBERSHIP_EK_ID_LEN],
		       int64_t *node_id, struct diag *d)
{
	sqlite3_stmt *s = stmt(m, ST_NODE_OF, d);
	int ret;

	if (!s)
		return -EIO;
	bind_blob(s, 1, ek_id, MEMBERSHIP_EK_ID_LEN);
	ret = step_row(m, s, "looking up the node", d);
	if (ret == 0) {
		diag_set(d, "membership: no node with that EK");
		return -ENOENT;
	}
	if (ret < 0)
		return ret;
	*node_id = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	return 0;
}

int membership_tpm_of(struct membership *m, const uint8_t ek_id[MEMBERSHIP_EK_ID_LEN],
		      struct member_tpm *out, struct diag *d)
{
	sqlite3_stmt *s = stmt(m, ST_TPM_OF, d);
	const void *name;
	int ret;

	if (!s)
		return -EIO;
	bind_blob(s, 1, ek_id, MEMBERSHIP_EK_ID_LEN);
	ret = step_row(m, s, "looking up the node's TPM", d);
	if (ret == 0) {
		diag_set(d, "membership: no node with that EK");
		return -ENOENT;
	}
	if (ret < 0)
		return ret;
	memset(out, 0, sizeof(*out));
	out->node_id = sqlite3_column_int64(s, 0);
	out->active = !strcmp((const char *)sqlite3_column_text(s, 1), "active");
	name = sqlite3_column_blob(s, 2);
	out->ak_name_len = (size_t)sqlite3_column_bytes(s, 2);
	if (!name || out->ak_name_len == 0 || out->ak_name_len > sizeof(out->ak_name)) {
		sqlite3_reset(s);
		diag_set(d, "membership store: node %lld has a malformed row",
			 (long long)out->node_id);
		return -EBADMSG;
	}
	memcpy(out->ak_name, name, out->ak_name_len);
	out->reset_count = (uint32_t)sqlite3_column_int64(s, 3);
	out->restart_count = (uint32_t)sqlite3_column_int64(s, 4);
	out->clock = (uint64_t)sqlite3_column_int64(s, 5);
	snprintf(out->endpoints, sizeof(out->endpoints), "%s",
		 sqlite3_column_text(s, 6) ? (const char *)sqlite3_column_text(s, 6) : "");
	out->disk_released = sqlite3_column_int(s, 7) != 0;
	sqlite3_reset(s);
	return 0;
}

/* Columns of ST_MEMBERS from PEER_COLS on. */
static int col_member(sqlite3_stmt *s, struct member_info *x)
{
	const char *state;

	memset(x, 0, sizeof(*x));
	if (col_peer(s, 0, &x->peer) < 0 || col_blob(s, 6, x->ek_id, sizeof(x->ek_id)) < 0)
		return -EBADMSG;
	state = (const char *)sqlite3_column_text(s, 7);
	x->active = state && !strcmp(state, "active");
	x->joined_at = (uint64_t)sqlite3_column_int64(s, 8);
	x->attested_at = (uint64_t)sqlite3_column_int64(s, 9);
	x->revoked_at = (uint64_t)sqlite3_column_int64(s, 10);
	return col_pcrs(s, 11, &x->pcr_mask, x->pcrs);
}

int membership_members(struct membership *m, struct member_info **out, size_t *n, struct diag *d)
{
	sqlite3_stmt *s = stmt(m, ST_MEMBERS, d);
	struct member_info *arr = NULL;
	size_t cnt = 0, cap = 0;
	int ret;

	if (!s)
		return -EIO;
	while ((ret = step_row(m, s, "listing members", d)) == 1) {
		if (grow((void **)&arr, sizeof(*arr), cnt, &cap) < 0) {
			ret = -ENOMEM;
			diag_set(d, "membership: out of memory");
			break;
		}
		if (col_member(s, &arr[cnt]) < 0) {
			ret = -EBADMSG;
			diag_set(d, "membership store: node %lld has a malformed row",
				 (long long)arr[cnt].peer.node_id);
			break;
		}
		cnt++;
	}
	sqlite3_reset(s);
	if (ret < 0) {
		free(arr);
		return ret;
	}
	*out = arr;
	*n = cnt;
	return 0;
}

/* ---- cluster values ---- */

static int check_meta_key(const char *key, struct diag *d)
{
	size_t n = key ? strnlen(key, META_KEY_MAX + 1) : 0;

	for (size_t i = 0; i < n; i++)
		if (key[i] < 0x20 || key[i] > 0x7e)
			n = 0;
	if (n == 0 || n > META_KEY_MAX) {
		diag_set(d, "membership: a value's key must be 1 to %d printable ASCII characters",
			 META_KEY_MAX);
		return -EINVAL;
	}
	return 0;
}

int membership_meta_get(struct membership *m, const char *key, uint8_t *buf, size_t cap,
			size_t *len, struct diag *d)
{
	sqlite3_stmt *s;
	size_t n;
	int ret;

	ret = check_meta_key(key, d);
	if (ret < 0)
		return ret;
	s = stmt(m, ST_META_GET, d);
	if (!s)
		return -EIO;
	bind_text(s, 1, key);
	ret = step_row(m, s, "reading a cluster value", d);
	if (ret == 0) {
		diag_set(d, "membership: no value '%s' in the store", key);
		return -ENOENT;
	}
	if (ret < 0)
		return ret;
	n = (size_t)sqlite3_column_bytes(s, 0);
	*len = n;
	if (n > cap) {
		sqlite3_reset(s);
		diag_set(d, "membership: value '%s' is %zu bytes, more than the %zu room given",
			 key, n, cap);
		return -E2BIG;
	}
	if (n)
		memcpy(buf, sqlite3_column_blob(s, 0), n);
	sqlite3_reset(s);
	return 0;
}

int membership_meta_set(struct membership *m, const char *key, const uint8_t *val, size_t len,
			struct diag *d)
{
	sqlite3_stmt *s;
	int ret;

	ret = check_meta_key(key, d);
	if (ret < 0)
		return ret;
	if (len > META_VALUE_MAX || (len && !val)) {
		diag_set(d, "membership: value '%s' must be at most %d bytes", key, META_VALUE_MAX);
		return -EINVAL;
	}
	ret = tx_begin(m, d);
	if (ret < 0)
		return ret;
	s = stmt(m, ST_META_SET, d);
	if (!s)
		return tx_end(m, -EIO, d);
	bind_text(s, 1, key);
	/* A NULL pointer would bind SQL NULL; an empty value is a zero-length blob. */
	if (len)
		bind_blob(s, 2, val, len);
	else
		sqlite3_bind_zeroblob(s, 2, 0);
	ret = step_done(m, s, "recording a cluster value", d);
	return tx_end(m, ret, d);
}
