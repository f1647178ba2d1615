// SPDX-License-Identifier: Apache-2.0
/* Benchmark tool (debug image; scripts/bench-disk): direct I/O on a block device, the way fio's
 * sequential and random jobs do it, without fio (whose Debian build pulls in Ceph's libraries).
 *
 *   disk_bench DEV MODE SPAN_MB [OPS]
 *
 * MODE: seq-write, seq-read (1 MiB blocks over the first SPAN_MB), rand-write, rand-read (OPS
 * 4 KiB blocks at random 4 KiB-aligned offsets within SPAN_MB; default 2000). O_DIRECT, and a
 * final fsync for writes, so the page cache measures nothing. Prints "MODE MB/s IOPS". */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 2 ? argv[2] : "";
	int write_mode = !strcmp(mode, "seq-write") || !strcmp(mode, "rand-write");
	int random_mode = !strncmp(mode, "rand-", 5);
	long span_mb = argc > 3 ? atol(argv[3]) : 0, ops = argc > 4 ? atol(argv[4]) : 2000;
	size_t bs = random_mode ? 4096 : 1024 * 1024;
	long n = random_mode ? ops : span_mb;
	unsigned int seed = 12345;
	double t0, dt;
	void *buf;
	int fd;

	if (argc < 4 || span_mb <= 0 || ops <= 0 ||
	    (strcmp(mode, "seq-write") && strcmp(mode, "seq-read") && strcmp(mode, "rand-write") &&
	     strcmp(mode, "rand-read"))) {
		fprintf(stderr, "usage: disk_bench DEV seq-write|seq-read|rand-write|rand-read "
				"SPAN_MB [OPS]\n");
		return 2;
	}
	fd = open(argv[1], (write_mode ? O_WRONLY : O_RDONLY) | O_DIRECT | O_CLOEXEC);
	if (fd < 0 || posix_memalign(&buf, 4096, bs) != 0) {
		perror(argv[1]);
		return 1;
	}
	for (size_t i = 0; i < bs; i++) /* not zeros: nothing in the stack may shortcut them */
		((unsigned char *)buf)[i] = (unsigned char)(i * 131 + 7);
	t0 = now();
	for (long i = 0; i < n; i++) {
		off_t off = random_mode ? (off_t)(rand_r(&seed) % (span_mb * 256)) * 4096
					: (off_t)i * (off_t)bs;
		ssize_t r = write_mode ? pwrite(fd, buf, bs, off) : pread(fd, buf, bs, off);

		if (r != (ssize_t)bs) {
			fprintf(stderr, "disk_bench: %s at %lld: %s\n", mode, (long long)off,
				r < 0 ? strerror(errno) : "short");
			return 1;
		}
	}
	if (write_mode && fsync(fd) < 0) {
		perror("fsync");
		return 1;
	}
	dt = now() - t0;
	printf("%s %.2f %.0f\n", mode, (double)n * (double)bs / 1048576.0 / dt, (double)n / dt);
	close(fd);
	free(buf);
	return 0;
}
