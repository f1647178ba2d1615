// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attest_fixture.h"
#include "conclave/attest.h"
#include "conclave/util.h"
#include "conclave/verify.h"

static int replay_log(struct fixture *f)
{
	char tool[PATH_MAX], cmd[3 * PATH_MAX];

	build_path("tests/tools/replay-log", tool, sizeof(tool));
	snprintf(cmd, sizeof(cmd), "'%s' '%s' '%s' >/dev/null", tool, f->tpm.tcti, f->log_path);
	return system(cmd) == 0 ? 0 : -EIO;
}

static int policy_from_golden(struct fixture *f)
{
	char path[PATH_MAX];
	uint8_t *buf;
	size_t len;
	int ret;

	/* Golden PCR values captured from the same boot that wrote the log. */
	test_path("tests/data/eventlogs/pcrs-uki.txt", path, sizeof(path));
	ret = read_file(path, 65536, &buf, &len);
	if (ret < 0)
		return ret;
	memset(&f->policy, 0, sizeof(f->policy));
	f->policy.version = 1;
	for (char *line = strtok((char *)buf, "\n"); line; line = strtok(NULL, "\n")) {
		unsigned int pcr;
		char hex[65];
		size_t n;

		if (sscanf(line, "PCR%u %64s", &pcr, hex) != 2 || pcr >= 24 ||
		    !(LOG_COVERED_PCRS & (1u << pcr)))
			continue;
		if (hex_decode(hex, f->policy.pcrs[pcr].expected, 32, &n) < 0 || n != 32) {
			free(buf);
			return -EINVAL;
		}
		f->policy.pcrs[pcr].set = true;
	}
	free(buf);
	return 0;
}

int fixture_start(struct fixture *f)
{
	struct diag d;
	int ret;

	memset(f, 0, sizeof(*f));
	ret = swtpm_start(&f->tpm);
	if (ret < 0)
		return ret;
	snprintf(f->ak_state, sizeof(f->ak_state), "%s/ak", f->tpm.dir);
	test_path("tests/data/eventlogs/eventlog-uki.bin", f->log_path, sizeof(f->log_path));
	if ((ret = replay_log(f)) < 0 || (ret = policy_from_golden(f)) < 0)
		return ret;
	if ((ret = ca_store_load(f->tpm.ca, &f->ca, &d)) < 0) {
		fprintf(stderr, "%s\n", d.msg);
		return ret;
	}
	return 0;
}

void fixture_stop(struct fixture *f)
{
	policy_free(&f->policy);
	X509_STORE_free(f->ca);
	EVP_PKEY_free(f->policy_key);
	swtpm_destroy(&f->tpm);
}

int fixture_reboot(struct fixture *f)
{
	int ret = swtpm_restart(&f->tpm);

	return ret < 0 ? ret : replay_log(f);
}

int fixture_power_loss(struct fixture *f)
{
	int ret = swtpm_power_loss(&f->tpm);

	return ret < 0 ? ret : replay_log(f);
}

void fixture_qdata(const char *nonce, uint8_t qdata[32])
{
	nonce_qualifying_data((const uint8_t *)nonce, strlen(nonce), qdata);
}

int fixture_attest(struct fixture *f, const char *nonce, const uint8_t *challenge, size_t ch_len,
		   uint8_t **buf, size_t *len, struct evidence *ev)
{
	uint8_t qdata[32];
	struct attest_opts o = {
		.tcti = f->tpm.tcti,
		.ak_state = f->ak_state,
		.qdata = qdata,
		.qlen = sizeof(qdata),
		.pcr_mask = LOG_COVERED_PCRS,
		.event_log = f->log_path,
		.ek_chain = f->tpm.issuer,
		.challenge = challenge,
		.challenge_len = ch_len,
	};
	struct diag d = { { 0 } };
	int ret;

	fixture_qdata(nonce, qdata);
	ret = attest_produce(&o, buf, len, &d);
	if (ret < 0) {
		fprintf(stderr, "attest: %s\n", d.msg);
		return ret;
	}
	return evidence_decode(*buf, *len, ev, &d);
}

int fixture_attest_activated(struct fixture *f, const char *nonce, uint8_t **buf, size_t *len,
			     struct evidence *ev, struct credential *cred)
{
	uint8_t *first, *chal;
	size_t first_len, chal_len;
	struct evidence ev1;
	struct diag d = { { 0 } };
	int ret;

	ret = fixture_attest(f, nonce, NULL, 0, &first, &first_len, &ev1);
	if (ret < 0)
		return ret;
	ret = attest_make_challenge(&ev1, f->ca, &chal, &chal_len, cred, &d);
	free(first);
	if (ret < 0) {
		fprintf(stderr, "make challenge: %s\n", d.msg);
		return ret;
	}
	ret = fixture_attest(f, nonce, chal, chal_len, buf, len, ev);
	free(chal);
	return ret;
}
