// SPDX-License-Identifier: Apache-2.0
/* Unit tests for the TPM2_ActivateCredential response parser (tpm_activate_response): bytes
 * from the TPM's transport, which a host controls for a virtual TPM. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "conclave/tpm.h"

/* A success response with sessions: header, parameter size, the credential (TPM2B of 32 'A'),
 * one response session (empty nonce, attributes, empty HMAC). */
static const uint8_t ok_rsp[] = {
	0x80, 0x02, 0x00, 0x00, 0x00, 0x35, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x22,
	0x00, 0x20, 'A',  'A',	'A',  'A',  'A',  'A',	'A',  'A',  'A',  'A',	'A',  'A',
	'A',  'A',  'A',  'A',	'A',  'A',  'A',  'A',	'A',  'A',  'A',  'A',	'A',  'A',
	'A',  'A',  'A',  'A',	'A',  'A',  0x00, 0x00, 0x01, 0x00, 0x00,
};

static void a_credential_is_read(void **state)
{
	TPM2B_DIGEST info;
	TSS2_RC rc;

	assert_int_equal(tpm_activate_response(ok_rsp, sizeof(ok_rsp), &rc, &info), 0);
	assert_int_equal(rc, TSS2_RC_SUCCESS);
	assert_int_equal(info.size, 32);
	assert_memory_equal(info.buffer, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 32);
}

static void a_tpm_error_is_reported_as_such(void **state)
{
	static const uint8_t err[] = { 0x80, 0x01, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x8b };
	TPM2B_DIGEST info;
	TSS2_RC rc;

	assert_int_equal(tpm_activate_response(err, sizeof(err), &rc, &info), -EIO);
	assert_int_equal(rc, 0x18b);
}

static void every_truncation_and_a_lying_size_are_refused(void **state)
{
	uint8_t buf[sizeof(ok_rsp)];
	TPM2B_DIGEST info;
	TSS2_RC rc;

	for (size_t n = 0; n < sizeof(ok_rsp); n++)
		assert_int_equal(tpm_activate_response(ok_rsp, n, &rc, &info), -EBADMSG);
	/* A credential longer than the parameter area says. */
	memcpy(buf, ok_rsp, sizeof(buf));
	buf[15] = 0x40;
	assert_int_equal(tpm_activate_response(buf, sizeof(buf), &rc, &info), -EBADMSG);
	/* A parameter size beyond the response. */
	memcpy(buf, ok_rsp, sizeof(buf));
	buf[13] = 0xff;
	assert_int_equal(tpm_activate_response(buf, sizeof(buf), &rc, &info), -EBADMSG);
	/* Success without the sessions tag. */
	memcpy(buf, ok_rsp, sizeof(buf));
	buf[1] = 0x01;
	assert_int_equal(tpm_activate_response(buf, sizeof(buf), &rc, &info), -EBADMSG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_credential_is_read),
		cmocka_unit_test(a_tpm_error_is_reported_as_such),
		cmocka_unit_test(every_truncation_and_a_lying_size_are_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
