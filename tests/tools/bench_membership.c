// SPDX-License-Identifier: Apache-2.0
/* Membership store benchmark: median per-join latency with one durable transaction per join
 * and with group commit, against the floor of one write + fsync of a 4 KiB file, all on the
 * same file system in the same run. Prints "key value" lines for scripts/bench-membership.
 * Usage: bench_membership DIR [JOINS] [GROUP] */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conclave/membership.h"

static const struct membership_config cfg = {
	.overlay_v4 = "10.0.0.0/12",
	.overlay_v6 = "fd00:100::/64",
	.pod_pool = "172.16.0.0/12",
	.pod_prefix = 28,
};

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static struct join_record record(unsigned int n)
{
	struct join_record r = { .ak_name_len = 34, .reset_count = 1, .clock = 1 };

	memcpy(r.ek_id, &n, sizeof(n));
	memcpy(r.wg_pubkey, &n, sizeof(n));
	memcpy(r.disk_uuid, &n, sizeof(n));
	r.ak_name[1] = 0x0b;
	snprintf(r.endpoints, sizeof(r.endpoints), "192.0.2.%u:51820", n % 250);
	/* A typical measured boot's PCRs 0-7 and 11, so rows are their real size. */
	r.pcr_mask = 0x08ff;
	for (unsigned int i = 0; i < 24; i++)
		if (r.pcr_mask & (1u << i))
			memset(r.pcrs[i], (int)(n + i), sizeof(r.pcrs[i]));
	return r;
}

static double fsync_floor(const char *dir, size_t runs, double *v)
{
	char path[512], buf[4096];
	int fd;

	memset(buf, 0x5a, sizeof(buf));
	snprintf(path, sizeof(path), "%s/fsync-floor", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	for (size_t i = 0; i < runs; i++) {
		double t = now_us();

		if (pwrite(fd, buf, sizeof(buf), (off_t)(i % 256) * 4096) != sizeof(buf) ||
		    fsync(fd) < 0) {
			close(fd);
			return -1;
		}
		v[i] = now_us() - t;
	}
	close(fd);
	unlink(path);
	return median(v, runs);
}

static struct membership *fresh(const char *dir, const char *name)
{
	struct membership *m = NULL;
	struct diag d = { { 0 } };
	char path[512], side[600];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	unlink(path);
	snprintf(side, sizeof(side), "%s-wal", path);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", path);
	unlink(side);
	if (membership_open(path, &cfg, &m, &d) < 0) {
		fprintf(stderr, "bench_membership: %s\n", d.msg);
		exit(1);
	}
	return m;
}

static double durable(const char *dir, size_t joins, double *v)
{
	struct membership *m = fresh(dir, "durable.db");
	struct join_result res;
	struct diag d;

	for (size_t i = 0; i < joins; i++) {
		struct join_record r = record((unsigned int)i + 1);
		double t = now_us();

		if (membership_join(m, &r, &res, &d) < 0) {
			fprintf(stderr, "bench_membership: %s\n", d.msg);
			exit(1);
		}
		v[i] = now_us() - t;
	}
	membership_close(m);
	return median(v, joins);
}

/* Per-join latency inside groups of size g: each group's time divided by g. */
static double grouped(const char *dir, size_t joins, size_t g, double *v)
{
	struct membership *m = fresh(dir, "group.db");
	struct join_result res;
	size_t groups = joins / g;
	struct diag d;

	for (size_t k = 0; k < groups; k++) {
		double t = now_us();

		if (membership_batch_begin(m, &d) < 0)
			goto fail;
		for (size_t i = 0; i < g; i++) {
			struct join_record r = record((unsigned int)(k * g + i) + 1);

			if (membership_join(m, &r, &res, &d) < 0)
				goto fail;
		}
		if (membership_batch_commit(m, &d) < 0)
			goto fail;
		v[k] = (now_us() - t) / (double)g;
	}
	membership_close(m);
	return median(v, groups);
fail:
	fprintf(stderr, "bench_membership: %s\n", d.msg);
	exit(1);
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : ".";
	size_t joins = argc > 2 ? strtoul(argv[2], NULL, 10) : 2000;
	size_t g = argc > 3 ? strtoul(argv[3], NULL, 10) : 32;
	double *v;
	double floor_us, durable_us, group_us;

	if (joins < g || g == 0) {
		fprintf(stderr,
			"usage: bench_membership DIR [JOINS] [GROUP], JOINS >= GROUP >= 1\n");
		return 2;
	}
	v = calloc(joins, sizeof(*v));
	if (!v)
		return 1;
	floor_us = fsync_floor(dir, joins < 500 ? joins : 500, v);
	if (floor_us < 0) {
		fprintf(stderr, "bench_membership: %s: cannot write and fsync: %s\n", dir,
			strerror(errno));
		free(v);
		return 1;
	}
	durable_us = durable(dir, joins, v);
	group_us = grouped(dir, joins, g, v);
	printf("fsync_4k_us %.1f\n", floor_us);
	printf("durable_join_us %.1f\n", durable_us);
	printf("group_join_us %.1f\n", group_us);
	printf("group_size %zu\n", g);
	printf("joins %zu\n", joins);
	free(v);
	return 0;
}
