/* SPDX-License-Identifier: Apache-2.0 */
/* Shared set-up for attestation tests and benchmarks: a real swtpm whose PCRs were extended
 * from a real OVMF boot log, a policy key, and helpers to produce and re-shape evidence. */
#ifndef CONCLAVE_TEST_ATTEST_FIXTURE_H
#define CONCLAVE_TEST_ATTEST_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "conclave/evidence.h"
#include "conclave/policy.h"
#include "conclave/secret.h"
#include "conclave/verify.h"
#include "swtpm_harness.h"

struct fixture {
	struct swtpm tpm;
	char ak_state[PATH_MAX];
	char log_path[PATH_MAX];
	X509_STORE *ca;
	EVP_PKEY *policy_key;
	struct policy policy; /* PCRs 0-9, 11-14 of the golden boot */
};

/* Start swtpm, replay the golden UKI boot log into it, create the AK, load the CA. */
int fixture_start(struct fixture *f);
void fixture_stop(struct fixture *f);

/* Restart swtpm (a TPM reset) and replay the boot log again. */
int fixture_reboot(struct fixture *f);
/* Kill swtpm without TPM2_Shutdown (a power loss), start it and replay the boot log. */
int fixture_power_loss(struct fixture *f);

/* Produce evidence for nonce (qualifying data derived as the CLI does); answer challenge if
 * given. *buf is the encoded document, decoded into *ev. */
int fixture_attest(struct fixture *f, const char *nonce, const uint8_t *challenge, size_t ch_len,
		   uint8_t **buf, size_t *len, struct evidence *ev);

/* First contact: evidence, challenge, activated evidence; *cred is the verifier's credential. */
int fixture_attest_activated(struct fixture *f, const char *nonce, uint8_t **buf, size_t *len,
			     struct evidence *ev, struct credential *cred);

/* Qualifying data of nonce as conclavectl derives it. */
void fixture_qdata(const char *nonce, uint8_t qdata[32]);

#endif
