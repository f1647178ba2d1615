// SPDX-License-Identifier: Apache-2.0
/* The join service's cluster state: the master secret and the CA derived from it, and the node
 * policy, both replaceable while workers use them. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conclave/disk.h"
#include "conclave/log.h"
#include "conclave/util.h"

#include "joind_priv.h"

#define META_MASTER_CHECK "master-check"
#define META_CLUSTER_ID	  "cluster-id"

struct cluster_ca *joind_cluster(struct joind *j, uint8_t id[CLUSTER_ID_LEN], struct kms **kms)
{
	struct cluster_ca *ca;

	pthread_mutex_lock(&j->state_lock);
	ca = j->cluster_ca;
	if (ca && id)
		memcpy(id, j->cluster_id, CLUSTER_ID_LEN);
	if (kms)
		*kms = j->kms;
	pthread_mutex_unlock(&j->state_lock);
	return ca;
}

struct policy_ref *joind_policy_get(struct joind *j)
{
	struct policy_ref *r;

	pthread_mutex_lock(&j->state_lock);
	r = j->node_policy;
	r->refs++;
	pthread_mutex_unlock(&j->state_lock);
	return r;
}

void joind_policy_put(struct joind *j, struct policy_ref *r)
{
	bool last;

	pthread_mutex_lock(&j->state_lock);
	last = --r->refs == 0;
	pthread_mutex_unlock(&j->state_lock);
	if (last) {
		policy_free(&r->p);
		free(r);
	}
}

/* A value that tells whether a master secret is this cluster's without revealing it. */
static int check_value(const struct kms *k, uint8_t out[32], struct diag *d)
{
	struct secret *v = NULL;
	int ret = kms_derive(k, "check", "master", 32, &v, d);

	if (ret == 0)
		memcpy(out, v->data, 32);
	secret_free(v);
	return ret;
}

/* Compare k with the store's record, or record it for a new cluster. */
static int check_against_store(struct joind *j, const struct kms *k, enum install_mode mode,
			       const uint8_t id[CLUSTER_ID_LEN], struct diag *d)
{
	uint8_t want[32], have[32];
	size_t len = 0;
	int ret;

	ret = check_value(k, want, d);
	if (ret < 0)
		return ret;
	pthread_mutex_lock(&j->store_lock);
	ret = membership_meta_get(j->store, META_MASTER_CHECK, have, sizeof(have), &len, d);
	if (ret == -ENOENT && mode != INSTALL_EXISTING) {
		ret = membership_meta_set(j->store, META_CLUSTER_ID, id, CLUSTER_ID_LEN, d);
		if (ret == 0)
			ret = membership_meta_set(j->store, META_MASTER_CHECK, want, 32, d);
	} else if (ret == -ENOENT) {
		diag_set(d, "this control plane's store belongs to no cluster: use init");
	} else if (ret == 0 && mode == INSTALL_NEW) {
		diag_set(d, "this control plane already belongs to a cluster: use recover");
		ret = -EEXIST;
	} else if (ret == 0 && (len != 32 || memcmp(want, have, 32) != 0)) {
		diag_set(d, "this master secret belongs to another cluster than the store's");
		ret = -EPERM;
	}
	pthread_mutex_unlock(&j->store_lock);
	explicit_bzero(want, sizeof(want));
	return ret;
}

/* With a state disk, the store lives on it: open (recover) or format (init) the disk with our
 * own disk key, then open the store. A blank disk is no cluster to recover; a disk of a cluster
 * is not formatted again for a new one. */
static int open_state(struct joind *j, const struct kms *k, enum install_mode mode,
		      const uint8_t id[CLUSTER_ID_LEN], struct diag *d)
{
	struct disk_config c = { .dev = j->cfg->state_disk,
				 .mountpoint = j->cfg->state_dir,
				 .cluster_id = id,
				 .node_id = j->node_id };
	struct secret *key = NULL;
	struct membership *store = NULL;
	struct disk_probe p;
	int ret;

	if (j->store || !c.dev)
		return 0;
	ret = disk_active(&c, p.uuid, d);
	if (ret == 1) { /* an earlier attempt opened it and then failed on the store */
		p.state = DISK_READY;
		ret = 0;
	} else if (ret == 0) {
		ret = disk_probe(&c, &p, d);
	}
	if (ret == 0 && p.state == DISK_READY && mode == INSTALL_NEW) {
		diag_set(d, "the control plane's state disk holds a cluster already: use recover");
		ret = -EEXIST;
	} else if (ret == 0 && p.state != DISK_READY && mode == INSTALL_EXISTING) {
		diag_set(d, "the control plane's state disk is blank: there is nothing to recover "
			    "(use init)");
		ret = -ENOENT;
	}
	if (ret == 0)
		ret = kms_disk_key(k, j->node_id, p.uuid, &key, d);
	if (ret == 0)
		ret = disk_unlock(&c, &p, key, d);
	secret_free(key);
	if (ret == 0) {
		char dir[PATH_MAX];
		char *slash;

		snprintf(dir, sizeof(dir), "%s", j->cfg->db_path);
		slash = strrchr(dir, '/');
		if (slash && slash != dir) {
			*slash = '\0';
			ret = mkdir_p(dir, 0700);
		}
		if (ret < 0)
			diag_set(d, "cannot create %s: %s", dir, strerror(-ret));
	}
	if (ret == 0)
		ret = membership_open(j->cfg->db_path, &j->cfg->ranges, &store, d);
	if (ret < 0) {
		diag_prefix(d, "state disk %s", c.dev);
		return ret == -EBADMSG || ret == -EPERM ? -EPERM : ret;
	}
	pthread_mutex_lock(&j->store_lock);
	j->store = store;
	pthread_mutex_unlock(&j->store_lock);
	log_info("joind: state disk %s open; membership store %s", c.dev, j->cfg->db_path);
	return 0;
}

int joind_install_kms(struct joind *j, struct kms *k, enum install_mode mode, struct diag *d)
{
	struct cluster_ca *ca = NULL;
	uint8_t id[CLUSTER_ID_LEN];
	char hex[2 * CLUSTER_ID_LEN + 1];
	int ret;

	if (joind_cluster(j, NULL, NULL)) {
		diag_set(d, "the join service already holds its master secret");
		kms_free(k);
		return -EEXIST;
	}
	pthread_mutex_lock(&j->install_lock);
	ret = cluster_ca_derive(k, &ca, d);
	if (ret == 0) {
		cluster_ca_id(ca, id);
		ret = open_state(j, k, mode, id, d);
	}
	if (ret == 0)
		ret = check_against_store(j, k, mode, id, d);
	pthread_mutex_unlock(&j->install_lock);
	if (ret < 0) {
		cluster_ca_free(ca);
		kms_free(k);
		return ret;
	}
	pthread_mutex_lock(&j->state_lock);
	if (j->cluster_ca) {
		ret = -EEXIST; /* another operator request won the race */
	} else {
		j->kms = k;
		j->cluster_ca = ca;
		memcpy(j->cluster_id, id, CLUSTER_ID_LEN);
	}
	pthread_mutex_unlock(&j->state_lock);
	if (ret < 0) {
		diag_set(d, "the join service already holds its master secret");
		cluster_ca_free(ca);
		kms_free(k);
		return ret;
	}
	hex_encode(id, CLUSTER_ID_LEN, hex);
	log_info("joind: master secret installed; cluster %s", hex);
	return 0;
}

/* Every active member against the policy; with enforce, revoke the ones it no longer admits. */
static int recheck_members(struct joind *j, const struct policy *p, unsigned int *mismatched,
			   unsigned int *revoked, struct diag *d)
{
	struct member_info *m = NULL;
	size_t n = 0;
	int ret;

	*mismatched = *revoked = 0;
	pthread_mutex_lock(&j->store_lock);
	if (!j->store) { /* the state disk is not open yet: no members to check */
		pthread_mutex_unlock(&j->store_lock);
		return 0;
	}
	ret = membership_members(j->store, &m, &n, d);
	for (size_t i = 0; ret == 0 && i < n; i++) {
		char why[128];

		if (!m[i].active ||
		    policy_match_pcrs(p, m[i].pcr_mask, m[i].pcrs, why, sizeof(why)))
			continue;
		(*mismatched)++;
		log_warn("joind: node %lld no longer matches the node policy: %s%s",
			 (long long)m[i].peer.node_id, why,
			 j->cfg->enforce ? " (revoked)" : " (not revoked: no --enforce)");
		if (j->cfg->enforce) {
			ret = membership_revoke(j->store, m[i].peer.node_id, d);
			if (ret == 0)
				(*revoked)++;
		}
	}
	pthread_mutex_unlock(&j->store_lock);
	free(m);
	if (*revoked)
		hub_notify(j->hub);
	return ret;
}

int joind_set_policy(struct joind *j, const uint8_t *doc, size_t len, bool persist,
		     unsigned int *mismatched, unsigned int *revoked, struct diag *d)
{
	struct policy_ref *r = calloc(1, sizeof(*r)), *old;
	int ret;

	if (!r) {
		diag_set(d, "out of memory");
		return -ENOMEM;
	}
	r->refs = 2; /* the service's, and ours while the members are checked */
	ret = policy_verify((const char *)doc, len, j->policy_pub, &r->p, d);
	if (ret == 0 && persist) {
		ret = write_file_atomic(j->cfg->node_policy, doc, len, 0644);
		if (ret < 0)
			diag_set(d, "cannot write the policy to %s: %s", j->cfg->node_policy,
				 strerror(-ret));
	}
	if (ret < 0) {
		policy_free(&r->p);
		free(r);
		return ret;
	}
	pthread_mutex_lock(&j->state_lock);
	old = j->node_policy;
	j->node_policy = r;
	pthread_mutex_unlock(&j->state_lock);
	if (old)
		joind_policy_put(j, old);
	log_info("joind: node policy installed");
	ret = recheck_members(j, &r->p, mismatched, revoked, d);
	joind_policy_put(j, r);
	return ret;
}
