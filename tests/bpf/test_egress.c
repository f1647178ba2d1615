// SPDX-License-Identifier: Apache-2.0
/* The egress (strict mode) program under BPF_PROG_TEST_RUN, and the maps both programs share:
 * pinned once under a private bpffs root, reused by the second skeleton and by a reload. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <bpf/libbpf.h>

#include "dp_expect.h"

static int setup(void **state)
{
	return cluster_setup(state, DP_FX_EGRESS);
}

static int setup_both(void **state)
{
	return cluster_setup(state, DP_FX_INGRESS | DP_FX_EGRESS);
}

static int prog(struct dp_fx *fx)
{
	return bpf_program__fd(fx->eg->progs.dp_egress);
}

static void expect(void **state, struct pkt *p, int action, unsigned reason)
{
	struct dp_fx *fx = *state;

	expect_verdict(fx, prog(fx), p, action, reason);
}

/* WireGuard from our port to dst:dport, with a real message header unless plain. */
static void wg_out(struct pkt *p, int family, const char *dst, uint16_t sport, uint16_t dport,
		   int plain)
{
	pkt_eth(p);
	if (family == 4)
		pkt_ipv4(p, SELF4, dst);
	else
		pkt_ipv6(p, SELF6, dst);
	pkt_udp(p, sport, dport);
	if (plain)
		pkt_payload(p, "GET / HTTP/1.1\r\n\r\n", 18);
	else
		pkt_wireguard(p, 32);
	pkt_finish(p);
}

static void tcp_out(struct pkt *p, int family, const char *dst, uint16_t sport, uint16_t dport)
{
	pkt_eth(p);
	if (family == 4)
		pkt_ipv4(p, SELF4, dst);
	else
		pkt_ipv6(p, SELF6, dst);
	pkt_tcp(p, sport, dport, 0x18);
	pkt_payload(p, "plaintext", 9);
	pkt_finish(p);
}

/* ---- strict mode ---- */

static void plaintext_to_a_pod_v4_is_dropped(void **state)
{
	struct pkt p;

	tcp_out(&p, 4, POD4, 40000, 80);
	expect(state, &p, TC_ACT_SHOT, DP_DROP_STRICT);
}

static void plaintext_to_a_pod_v6_is_dropped(void **state)
{
	struct pkt p;

	tcp_out(&p, 6, POD6, 40000, 80);
	expect(state, &p, TC_ACT_SHOT, DP_DROP_STRICT);
}

static void plaintext_to_a_node_is_dropped(void **state)
{
	struct pkt p;

	tcp_out(&p, 4, PEER4, 40000, 10250);
	expect(state, &p, TC_ACT_SHOT, DP_DROP_STRICT);
	tcp_out(&p, 6, PEER6, 40000, 10250);
	expect(state, &p, TC_ACT_SHOT, DP_DROP_STRICT);
}

static void wireguard_to_a_peer_passes_v4(void **state)
{
	struct pkt p;

	wg_out(&p, 4, PEER4, WG_PORT, WG_PORT, 0);
	expect(state, &p, TC_ACT_OK, DP_PASS_TO_PEER);
	wg_out(&p, 4, NAT4, WG_PORT, NAT4_PORT, 0);
	expect(state, &p, TC_ACT_OK, DP_PASS_TO_PEER);
}

static void wireguard_to_a_peer_passes_v6(void **state)
{
	struct pkt p;

	wg_out(&p, 6, PEER6, WG_PORT, WG_PORT, 0);
	expect(state, &p, TC_ACT_OK, DP_PASS_TO_PEER);
}

static void wireguard_to_a_missing_peer_is_dropped(void **state)
{
	struct pkt p;

	wg_out(&p, 4, "10.0.0.9", WG_PORT, WG_PORT, 0);
	expect(state, &p, TC_ACT_SHOT, DP_DROP_STRICT);
	wg_out(&p, 6, "fd00::9", WG_PORT, WG_PORT, 0);
	expect(state, &p, TC_ACT_SHOT, DP_DROP_STRICT);
}

static void peer_address_at_another_port_is_dropped(void **state)
{
	struct pkt p;

	wg_out(&p, 4, PEER4, WG_PORT, WG_PORT + 1, 0);
	expect(state, &p, TC_ACT_SHOT, DP_DROP_STRICT);
}

static void udp_to_a_peer_endpoint_from_another_port_is_dropped(void **state)
{
	struct pkt p;

	wg_out(&p, 4, PEER4, 12345, WG_PORT, 0);
	expect(state, &p, TC_ACT_SHOT, DP_DROP_STRICT);
}

static void plaintext_from_the_wireguard_port_to_a_peer_is_dropped(void **state)
{
	struct pkt p;

	wg_out(&p, 4, PEER4, WG_PORT, WG_PORT, 1);
	expect(state, &p, TC_ACT_SHOT, DP_DROP_STRICT);
}

static void outside_the_cluster_passes(void **state)
{
	struct pkt p;

	tcp_out(&p, 4, OUT4, 40000, 443);
	expect(state, &p, TC_ACT_OK, DP_PASS_OUTSIDE_CLUSTER);
	tcp_out(&p, 6, OUT6, 40000, 443);
	expect(state, &p, TC_ACT_OK, DP_PASS_OUTSIDE_CLUSTER);
}

static void longest_prefix_decides_the_kind(void **state)
{
	struct dp_fx *fx = *state;
	struct pkt p;

	/* A node address carved out of the pod range: join traffic to it is node traffic. */
	assert_int_equal(dp_fx_add_cidr(fx, "10.244.9.9/32", DP_CIDR_NODE), 0);
	tcp_out(&p, 4, "10.244.9.9", 40000, JOIN_PORT);
	expect(state, &p, TC_ACT_OK, DP_PASS_JOIN);
	tcp_out(&p, 4, "10.244.9.8", 40000, JOIN_PORT);
	expect(state, &p, TC_ACT_SHOT, DP_DROP_STRICT);
}

/* ---- join traffic ---- */

static void join_client_to_a_node_passes(void **state)
{
	struct pkt p;

	tcp_out(&p, 4, "10.0.0.7", 40000, JOIN_PORT);
	expect(state, &p, TC_ACT_OK, DP_PASS_JOIN);
	tcp_out(&p, 6, "fd00::7", 40000, JOIN_PORT);
	expect(state, &p, TC_ACT_OK, DP_PASS_JOIN);
}

static void join_port_of_a_pod_is_not_join_traffic(void **state)
{
	struct pkt p;

	tcp_out(&p, 4, POD4, 40000, JOIN_PORT);
	expect(state, &p, TC_ACT_SHOT, DP_DROP_STRICT);
}

static void control_plane_answers_from_the_join_port(void **state)
{
	struct dp_config_v1 cfg = default_config();
	struct pkt p;

	tcp_out(&p, 4, "10.0.0.7", JOIN_PORT, 40000);
	expect(state, &p, TC_ACT_SHOT, DP_DROP_STRICT); /* a worker serves no join port */
	cfg.control_plane = 1;
	set_config(*state, &cfg);
	expect(state, &p, TC_ACT_OK, DP_PASS_JOIN);
}

/* ---- exemptions ---- */

static void arp_and_other_non_ip_frames_pass(void **state)
{
	struct pkt p;

	pkt_eth(&p);
	pkt_arp(&p);
	pkt_finish(&p);
	expect(state, &p, TC_ACT_OK, DP_PASS_ARP);
	pkt_eth(&p);
	pkt_ethertype(&p, 0x88cc);
	pkt_payload(&p, NULL, 46);
	expect(state, &p, TC_ACT_OK, DP_PASS_OUTSIDE_CLUSTER);
}

static void neighbour_solicitation_to_a_node_is_exempt(void **state)
{
	struct pkt p;

	pkt_eth(&p);
	pkt_ipv6(&p, SELF6, PEER6);
	pkt_icmp(&p, 135, 0);
	pkt_payload(&p, NULL, 16);
	pkt_finish(&p);
	pkt_ttl(&p, 255);
	expect(state, &p, TC_ACT_OK, DP_PASS_ND);
}

static void icmp_error_to_a_node_is_exempt_echo_is_not(void **state)
{
	struct pkt p;

	pkt_eth(&p);
	pkt_ipv4(&p, SELF4, PEER4);
	pkt_icmp(&p, 3, 4); /* fragmentation needed */
	pkt_payload(&p, NULL, 28);
	pkt_finish(&p);
	expect(state, &p, TC_ACT_OK, DP_PASS_ICMP_ERROR);
	pkt_eth(&p);
	pkt_ipv6(&p, SELF6, PEER6);
	pkt_icmp(&p, 2, 0); /* packet too big */
	pkt_payload(&p, NULL, 48);
	pkt_finish(&p);
	expect(state, &p, TC_ACT_OK, DP_PASS_ICMP_ERROR);
	pkt_eth(&p);
	pkt_ipv4(&p, SELF4, PEER4);
	pkt_icmp(&p, 8, 0);
	pkt_payload(&p, "ping", 4);
	pkt_finish(&p);
	expect(state, &p, TC_ACT_SHOT, DP_DROP_STRICT);
}

static void dhcp_request_to_a_server_in_the_node_range_is_exempt(void **state)
{
	struct dp_config_v1 cfg = default_config();
	struct pkt p;

	pkt_eth(&p);
	pkt_ipv4(&p, SELF4, "10.0.0.254");
	pkt_udp(&p, 68, 67);
	pkt_payload(&p, NULL, 40);
	pkt_finish(&p);
	expect(state, &p, TC_ACT_OK, DP_PASS_DHCP);
	cfg.exempt = DP_EXEMPT_ARP | DP_EXEMPT_ND | DP_EXEMPT_ICMP_ERROR;
	set_config(*state, &cfg);
	expect(state, &p, TC_ACT_SHOT, DP_DROP_STRICT);
}

/* ---- modes ---- */

static void strict_mode_off_passes_and_counts_nothing(void **state)
{
	struct dp_config_v1 cfg = default_config();
	struct pkt p;

	cfg.strict = 0;
	set_config(*state, &cfg);
	tcp_out(&p, 4, POD4, 40000, 80);
	expect(state, &p, TC_ACT_OK, NO_REASON);
}

static void audit_mode_passes_and_counts_the_leak(void **state)
{
	struct dp_config_v1 cfg = default_config();
	struct pkt p;

	cfg.audit = 1;
	set_config(*state, &cfg);
	tcp_out(&p, 6, POD6, 40000, 80);
	expect(state, &p, TC_ACT_OK, DP_DROP_STRICT);
}

static void unconfigured_program_is_inert(void **state)
{
	struct dp_config_v1 cfg = default_config();
	struct pkt p;

	cfg.abi = 0;
	set_config(*state, &cfg);
	tcp_out(&p, 4, POD4, 40000, 80);
	expect(state, &p, TC_ACT_OK, NO_REASON);
}

/* ---- fragments, VLAN, malformed ---- */

static void later_fragment_to_the_cluster_is_dropped(void **state)
{
	struct pkt p;

	wg_out(&p, 4, PEER4, WG_PORT, WG_PORT, 0);
	pkt_ipv4_frag(&p, 1480, 0);
	expect(state, &p, TC_ACT_SHOT, DP_DROP_FRAGMENT);
	pkt_eth(&p);
	pkt_ipv6(&p, SELF6, POD6);
	pkt_ipv6_frag(&p, 1232, 0);
	pkt_payload(&p, NULL, 64);
	pkt_finish(&p);
	expect(state, &p, TC_ACT_SHOT, DP_DROP_FRAGMENT);
}

static void later_fragment_outside_the_cluster_passes(void **state)
{
	struct pkt p;

	tcp_out(&p, 4, OUT4, 40000, 443);
	pkt_ipv4_frag(&p, 1480, 0);
	expect(state, &p, TC_ACT_OK, DP_PASS_OUTSIDE_CLUSTER);
}

static void first_fragment_to_a_peer_is_judged_by_its_ports(void **state)
{
	struct pkt p;

	wg_out(&p, 4, PEER4, WG_PORT, WG_PORT, 0);
	pkt_ipv4_frag(&p, 0, 1);
	expect(state, &p, TC_ACT_OK, DP_PASS_TO_PEER);
}

static void vlan_tag_does_not_hide_a_leak(void **state)
{
	struct pkt p;

	pkt_eth(&p);
	pkt_vlan(&p, 0x8100, 42);
	pkt_ipv4(&p, SELF4, POD4);
	pkt_tcp(&p, 40000, 80, 0x18);
	pkt_finish(&p);
	expect(state, &p, TC_ACT_SHOT, DP_DROP_STRICT);
	pkt_eth(&p);
	pkt_vlan(&p, 0x88a8, 1);
	pkt_vlan(&p, 0x8100, 2);
	pkt_ipv6(&p, SELF6, PEER6);
	pkt_udp(&p, WG_PORT, WG_PORT);
	pkt_wireguard(&p, 32);
	pkt_finish(&p);
	expect(state, &p, TC_ACT_OK, DP_PASS_TO_PEER);
}

static void three_vlan_tags_are_malformed(void **state)
{
	struct pkt p;

	pkt_eth(&p);
	pkt_vlan(&p, 0x88a8, 1);
	pkt_vlan(&p, 0x8100, 2);
	pkt_vlan(&p, 0x8100, 3);
	pkt_ipv4(&p, SELF4, OUT4);
	pkt_tcp(&p, 40000, 443, 0x18);
	pkt_finish(&p);
	expect(state, &p, TC_ACT_SHOT, DP_DROP_MALFORMED);
}

static void unreadable_ip_destination_is_malformed(void **state)
{
	struct pkt p;

	/* Tagged: BPF_PROG_TEST_RUN refuses untagged IP frames shorter than the IP header. */
	pkt_eth(&p);
	pkt_vlan(&p, 0x8100, 42);
	pkt_ethertype(&p, 0x0800);
	pkt_payload(&p, "\x45\x00\x00\x28", 4);
	expect(state, &p, TC_ACT_SHOT, DP_DROP_MALFORMED);
}

static void truncated_transport_header_to_the_cluster_is_malformed(void **state)
{
	struct pkt p;

	pkt_eth(&p);
	pkt_ipv4(&p, SELF4, POD4);
	pkt_proto(&p, IPPROTO_TCP);
	pkt_payload(&p, NULL, 12);
	pkt_finish(&p);
	expect(state, &p, TC_ACT_SHOT, DP_DROP_MALFORMED);
}

static void truncated_transport_header_outside_the_cluster_passes(void **state)
{
	struct pkt p;

	pkt_eth(&p);
	pkt_ipv4(&p, SELF4, OUT4);
	pkt_proto(&p, IPPROTO_TCP);
	pkt_payload(&p, NULL, 12);
	pkt_finish(&p);
	expect(state, &p, TC_ACT_OK, DP_PASS_OUTSIDE_CLUSTER);
}

static void too_many_extension_headers_to_the_cluster_are_malformed(void **state)
{
	struct pkt p;

	pkt_eth(&p);
	pkt_ipv6(&p, SELF6, PEER6);
	for (int i = 0; i < 9; i++)
		pkt_ipv6_ext(&p, IPPROTO_DSTOPTS, 8);
	pkt_udp(&p, WG_PORT, WG_PORT);
	pkt_wireguard(&p, 32);
	pkt_finish(&p);
	expect(state, &p, TC_ACT_SHOT, DP_DROP_MALFORMED);
}

/* ---- events ---- */

struct seen {
	int n;
	struct dp_event_v1 first;
};

static int on_event(void *ctx, void *data, size_t size)
{
	struct seen *s = ctx;

	if (size >= sizeof(struct dp_event_v1) && s->n++ == 0)
		memcpy(&s->first, data, sizeof(s->first));
	return 0;
}

static void strict_drop_emits_an_egress_event(void **state)
{
	struct dp_fx *fx = *state;
	struct dp_config_v1 cfg = default_config();
	struct seen s = { 0 };
	struct ring_buffer *rb;
	uint8_t want[16];
	struct pkt p;

	cfg.events_per_sec = 10;
	set_config(fx, &cfg);
	rb = ring_buffer__new(fx->events, on_event, &s, NULL);
	assert_non_null(rb);
	tcp_out(&p, 6, POD6, 40000, 80);
	expect(state, &p, TC_ACT_SHOT, DP_DROP_STRICT);
	assert_int_equal(ring_buffer__consume(rb), 1);
	assert_int_equal(s.first.reason, DP_DROP_STRICT);
	assert_int_equal(s.first.direction, 1);
	assert_int_equal(s.first.proto, IPPROTO_TCP);
	assert_int_equal(ntohs(s.first.dport), 80);
	assert_int_equal(dp_fx_addr(POD6, want), 6);
	assert_memory_equal(s.first.daddr, want, 16);
	ring_buffer__free(rb);
}

/* ---- maps shared between the programs, pins, BTF ---- */

static uint32_t map_id(int fd)
{
	struct bpf_map_info info = { 0 };
	uint32_t len = sizeof(info);

	assert_int_equal(bpf_obj_get_info_by_fd(fd, &info, &len), 0);
	return info.id;
}

static void both_programs_share_every_map(void **state)
{
	static const char *const names[] = { "peers", "config",	  "allow",  "cidr4",
					     "cidr6", "counters", "events", "ratelimit" };
	struct dp_fx *fx = *state;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		int a = bpf_map__fd(bpf_object__find_map_by_name(fx->in->obj, names[i]));
		int b = bpf_map__fd(bpf_object__find_map_by_name(fx->eg->obj, names[i]));

		assert_true(a >= 0 && b >= 0);
		if (map_id(a) != map_id(b))
			fail_msg("map %s: ingress and egress hold different maps", names[i]);
	}
}

static void peer_added_through_one_program_serves_the_other(void **state)
{
	struct dp_fx *fx = *state;
	struct dp_peer_v1 v = { .node_id = 9 };
	struct dp_endpoint_v1 ep;
	struct pkt p;

	/* Written through the ingress skeleton's map, judged by the egress program. */
	assert_int_equal(dp_fx_endpoint("10.0.0.9", WG_PORT, &ep), 0);
	assert_int_equal(
	    bpf_map__update_elem(fx->in->maps.peers, &ep, sizeof(ep), &v, sizeof(v), BPF_ANY), 0);
	wg_out(&p, 4, "10.0.0.9", WG_PORT, WG_PORT, 0);
	expect(state, &p, TC_ACT_OK, DP_PASS_TO_PEER);
	/* And both programs count into one counters map. */
	pkt_eth(&p);
	pkt_ipv4(&p, "10.0.0.9", SELF4);
	pkt_udp(&p, WG_PORT, WG_PORT);
	pkt_wireguard(&p, 32);
	pkt_finish(&p);
	expect_verdict(fx, bpf_program__fd(fx->in->progs.dp_ingress), &p, TC_ACT_OK, DP_PASS_PEER);
}

static void maps_are_pinned_by_name_under_the_pin_root_with_btf(void **state)
{
	static const char *const names[] = { "peers", "config",	  "allow",  "cidr4",
					     "cidr6", "counters", "events", "ratelimit" };
	struct dp_fx *fx = *state;
	char path[128];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct bpf_map_info info = { 0 };
		uint32_t len = sizeof(info);
		int fd;

		snprintf(path, sizeof(path), "%s/%s", fx->root, names[i]);
		fd = bpf_obj_get(path);
		if (fd < 0)
			fail_msg("no pin at %s", path);
		assert_int_equal(bpf_obj_get_info_by_fd(fd, &info, &len), 0);
		assert_string_equal(info.name, names[i]);
		/* A ring buffer has neither key nor value type, so no BTF to show. */
		if (strcmp(names[i], "events"))
			assert_true(info.btf_id && info.btf_key_type_id && info.btf_value_type_id);
		close(fd);
	}
}

static void reload_reuses_the_pinned_maps(void **state)
{
	struct dp_fx *fx = *state;
	uint32_t before = map_id(fx->peers);
	struct pkt p;

	/* An agent restart: the skeletons go, the pins stay, the next load finds them. */
	dp_fx_unload(fx);
	assert_int_equal(dp_fx_load(fx, DP_FX_EGRESS, 0), 0);
	assert_int_equal(map_id(fx->peers), before);
	wg_out(&p, 4, PEER4, WG_PORT, WG_PORT, 0);
	expect(state, &p, TC_ACT_OK, DP_PASS_TO_PEER);
}

static void reload_with_another_peers_size_is_refused(void **state)
{
	struct dp_fx *fx = *state;

	/* libbpf reuses a pin only when type, sizes, max_entries and flags all match. */
	libbpf_print_fn_t quiet = libbpf_set_print(NULL); /* the refusal is expected */
	int ret;

	dp_fx_unload(fx);
	ret = dp_fx_load(fx, DP_FX_EGRESS, 1u << 21);
	libbpf_set_print(quiet);
	assert_true(ret < 0);
}

static void peers_map_grows_to_two_million_entries(void **state)
{
	struct dp_fx fx2 = { 0 };
	struct bpf_map_info info = { 0 };
	uint32_t len = sizeof(info);

	assert_int_equal(dp_fx_mount(&fx2), 0);
	assert_int_equal(dp_fx_load(&fx2, DP_FX_INGRESS | DP_FX_EGRESS, 1u << 21), 0);
	assert_int_equal(bpf_obj_get_info_by_fd(fx2.peers, &info, &len), 0);
	assert_int_equal(info.max_entries, 1u << 21);
	dp_fx_close(&fx2);
}

#define T(f)  cmocka_unit_test_setup_teardown(f, setup, cluster_teardown)
#define T2(f) cmocka_unit_test_setup_teardown(f, setup_both, cluster_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(plaintext_to_a_pod_v4_is_dropped),
		T(plaintext_to_a_pod_v6_is_dropped),
		T(plaintext_to_a_node_is_dropped),
		T(wireguard_to_a_peer_passes_v4),
		T(wireguard_to_a_peer_passes_v6),
		T(wireguard_to_a_missing_peer_is_dropped),
		T(peer_address_at_another_port_is_dropped),
		T(udp_to_a_peer_endpoint_from_another_port_is_dropped),
		T(plaintext_from_the_wireguard_port_to_a_peer_is_dropped),
		T(outside_the_cluster_passes),
		T(longest_prefix_decides_the_kind),
		T(join_client_to_a_node_passes),
		T(join_port_of_a_pod_is_not_join_traffic),
		T(control_plane_answers_from_the_join_port),
		T(arp_and_other_non_ip_frames_pass),
		T(neighbour_solicitation_to_a_node_is_exempt),
		T(icmp_error_to_a_node_is_exempt_echo_is_not),
		T(dhcp_request_to_a_server_in_the_node_range_is_exempt),
		T(strict_mode_off_passes_and_counts_nothing),
		T(audit_mode_passes_and_counts_the_leak),
		T(unconfigured_program_is_inert),
		T(later_fragment_to_the_cluster_is_dropped),
		T(later_fragment_outside_the_cluster_passes),
		T(first_fragment_to_a_peer_is_judged_by_its_ports),
		T(vlan_tag_does_not_hide_a_leak),
		T(three_vlan_tags_are_malformed),
		T(unreadable_ip_destination_is_malformed),
		T(truncated_transport_header_to_the_cluster_is_malformed),
		T(truncated_transport_header_outside_the_cluster_passes),
		T(too_many_extension_headers_to_the_cluster_are_malformed),
		T(strict_drop_emits_an_egress_event),
		T2(both_programs_share_every_map),
		T2(peer_added_through_one_program_serves_the_other),
		T2(maps_are_pinned_by_name_under_the_pin_root_with_btf),
		T2(reload_reuses_the_pinned_maps),
		T2(reload_with_another_peers_size_is_refused),
		T(peers_map_grows_to_two_million_entries),
	};

	if (geteuid() != 0) {
		printf("1..0 # SKIP BPF_PROG_TEST_RUN and bpffs mounts need root\n");
		return 0;
	}
	if (dp_fx_isolate() < 0) {
		printf("1..0 # SKIP cannot make a private mount namespace\n");
		return 0;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
