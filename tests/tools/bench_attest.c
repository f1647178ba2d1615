// SPDX-License-Identifier: Apache-2.0
/* Attestation benchmark: evidence production on swtpm, verification on first contact and on
 * re-attestation, and the raw ECDSA P-256 verify they are measured against, all in one run.
 * Prints medians; scripts/bench-attest turns them into the table in docs/benchmarks.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "attest_fixture.h"
#include "conclave/verify.h"

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

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Time batches of `inner` calls so the clock's own cost does not count; median per call. */
#define MEASURE(label, outer, inner, body)                       \
	do {                                                     \
		static double t_[outer];                         \
		for (int o_ = 0; o_ < (outer); o_++) {           \
			double s_ = now_us();                    \
			for (int i_ = 0; i_ < (inner); i_++) {   \
				body;                            \
			}                                        \
			t_[o_] = (now_us() - s_) / (inner);      \
		}                                                \
		printf("%s %.2f\n", label, median(t_, (outer))); \
	} while (0)

int main(int argc, char **argv)
{
	int produce_runs = argc > 1 ? atoi(argv[1]) : 30;
	struct fixture f;
	struct credential cred = { 0 };
	struct evidence ev;
	struct verdict v;
	struct node_record known = { 0 }, node;
	uint8_t *buf, qdata[32], digest[32], sig[80];
	size_t len, sig_len = sizeof(sig);
	int failures = 0;
	EVP_PKEY_CTX *sctx;

	if (fixture_start(&f) < 0) {
		fprintf(stderr, "bench: cannot start swtpm fixture\n");
		return 1;
	}
	/* Production: open the TPM, load the AK, quote with PCR reads, read the log, encode. */
	{
		double t[256];
		int n = produce_runs < 1 ? 1 : produce_runs > 256 ? 256 : produce_runs;

		for (int i = 0; i < n; i++) {
			struct evidence e;
			double s = now_us();

			if (fixture_attest(&f, "bench", NULL, 0, &buf, &len, &e) < 0)
				failures++;
			t[i] = now_us() - s;
			free(buf);
		}
		printf("produce_us %.2f\n", median(t, n));
	}
	if (fixture_attest_activated(&f, "bench", &buf, &len, &ev, &cred) < 0)
		return 1;
	fixture_qdata("bench", qdata);
	struct verify_params first = {
		.policy = &f.policy, .ca = f.ca, .qdata = qdata, .qlen = 32, .credential = &cred
	};
	MEASURE("first_contact_us", 31, 20, {
		node = (struct node_record){ 0 };
		first.node = &node;
		if (verify_evidence(&ev, &first, &v) < 0 || !v.ok)
			failures++;
		node_record_clear(&node);
	});
	/* The part of first contact that re-attestation skips: the X.509 chain. */
	MEASURE("ek_chain_us", 31, 20, {
		X509 *x = NULL;

		if (ekcert_verify(f.ca, &ev.ek_cert, ev.ek_chain, ev.n_chain, &x, NULL) < 0)
			failures++;
		X509_free(x);
	});
	first.node = &known;
	verify_evidence(&ev, &first, &v);
	struct verify_params again = {
		.policy = &f.policy, .ca = f.ca, .qdata = qdata, .qlen = 32, .node = &known
	};
	MEASURE("reattest_us", 31, 200, {
		known.clock = v.clock - 1; /* same evidence again: let the counters pass */
		if (verify_evidence(&ev, &again, &v) < 0 || !v.ok)
			failures++;
	});
	/* The floor: one ECDSA P-256 verify of a SHA-256 digest with the same key. */
	RAND_bytes(digest, sizeof(digest));
	{
		EVP_PKEY *k = EVP_EC_gen("P-256");

		sctx = EVP_PKEY_CTX_new(k, NULL);
		EVP_PKEY_sign_init(sctx);
		EVP_PKEY_sign(sctx, sig, &sig_len, digest, 32);
		EVP_PKEY_CTX_free(sctx);
		MEASURE("ecdsa_verify_us", 31, 200, {
			EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(k, NULL);

			if (EVP_PKEY_verify_init(c) != 1 ||
			    EVP_PKEY_verify(c, sig, sig_len, digest, 32) != 1)
				failures++;
			EVP_PKEY_CTX_free(c);
		});
		EVP_PKEY_free(k);
	}
	printf("failures %d\n", failures);
	node_record_clear(&known);
	credential_clear(&cred);
	free(buf);
	fixture_stop(&f);
	return failures ? 1 : 0;
}
