// SPDX-License-Identifier: Apache-2.0
/* Unit tests for what the mesh derives from a peer: WireGuard endpoints and allowed IPs. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "conclave/mesh.h"

static void endpoints_are_parsed_by_index(void **state)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
	const char *list = "192.0.2.1:51820,[2001:db8::1]:4500";
	char text[INET6_ADDRSTRLEN];

	assert_int_equal(mesh_parse_endpoint(list, 0, &ss), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(ntohs(v4->sin_port), 51820);
	assert_string_equal(inet_ntop(AF_INET, &v4->sin_addr, text, sizeof(text)), "192.0.2.1");
	assert_int_equal(mesh_parse_endpoint(list, 1, &ss), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(ntohs(v6->sin6_port), 4500);
	assert_string_equal(inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof(text)), "2001:db8::1");
	assert_int_equal(mesh_parse_endpoint(list, 2, &ss), -ENOENT);
}

static void bad_endpoints_are_refused(void **state)
{
	static const char *const bad[] = { "",
					   "192.0.2.1",
					   "192.0.2.1:0",
					   "192.0.2.1:65536",
					   "host.example:51820",
					   "2001:db8::1:51820",
					   ",",
					   "192.0.2.300:1" };
	struct sockaddr_storage ss;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_true(mesh_parse_endpoint(bad[i], 0, &ss) < 0);
}

static void allowed_ips_are_the_addresses_and_pod_network(void **state)
{
	struct peer p = { .node_id = 7 };
	struct wg_allowed_ip a[WG_MAX_ALLOWED];
	size_t n = 0;

	strcpy(p.overlay_v4, "10.100.0.7");
	strcpy(p.overlay_v6, "fd00:100::7");
	strcpy(p.pod_cidr, "10.244.6.9/24"); /* host bits: WireGuard wants the network */
	assert_int_equal(mesh_allowed_ips(&p, a, WG_MAX_ALLOWED, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(a[0].family, AF_INET);
	assert_int_equal(a[0].cidr, 32);
	assert_memory_equal(a[0].addr, "\x0a\x64\x00\x07", 4);
	assert_int_equal(a[1].family, AF_INET6);
	assert_int_equal(a[1].cidr, 128);
	assert_int_equal(a[1].addr[15], 7);
	assert_int_equal(a[2].cidr, 24);
	assert_memory_equal(a[2].addr, "\x0a\xf4\x06\x00", 4);
	/* Too small an array, and a bad address. */
	assert_int_equal(mesh_allowed_ips(&p, a, 2, &n), -E2BIG);
	strcpy(p.overlay_v6, "not-an-address");
	assert_int_equal(mesh_allowed_ips(&p, a, WG_MAX_ALLOWED, &n), -EINVAL);
	/* Empty fields are simply absent. */
	memset(&p, 0, sizeof(p));
	strcpy(p.overlay_v4, "10.100.0.8");
	assert_int_equal(mesh_allowed_ips(&p, a, WG_MAX_ALLOWED, &n), 0);
	assert_int_equal(n, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(endpoints_are_parsed_by_index),
		cmocka_unit_test(bad_endpoints_are_refused),
		cmocka_unit_test(allowed_ips_are_the_addresses_and_pod_network),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
