#!/usr/bin/env bash
# The node agent against a real control plane: one conclave-joind (its own swtpm) initialised
# by the operator, and conclave-agent processes, each with its own swtpm, in its own network
# namespace with a veth to a bridge in the join service's namespace; each agent's datapath is
# attached to its veth and pinned under its own bpffs directory. Three agents join and see each
# other; they re-attest and rotate their WireGuard keys; a revocation reaches the others' views
# and datapaths; an agent restarts and keeps its pinned maps (a peer's packets keep passing);
# the join service restarts and is recovered, and the agents come back by themselves; an agent
# whose PCRs do not match the node policy stays out. Agents' status is read with
# `conclavectl status --agent`. Needs root (network namespaces, bpffs). Prints TAP.
# shellcheck disable=SC2016 # jq and perl programs are single-quoted on purpose
# shellcheck source=tests/lib/agent_env.bash
. "${CONCLAVE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/agent_env.bash"
agent_env_require # no tools beyond the usual ones
agent_env_init agent
sender_pid=
# start_sender FROM TO: agent FROM's namespace sends WireGuard-shaped UDP from port 51820 to
# agent TO's WireGuard endpoint, as fast as it can, until stopped (at most 60 s).
start_sender() {
	nsenter --net="/run/netns/$pfx-$1" perl -MIO::Socket::INET -MSocket -e '
		my $s = IO::Socket::INET->new(Proto => "udp", LocalAddr => $ARGV[0],
					      LocalPort => 51820) or die "socket: $!";
		my $to = sockaddr_in(51820, inet_aton($ARGV[1]));
		my $msg = "\x04\0\0\0" . ("\0" x 28); # a WireGuard data message header
		my ($end, $n) = (time + 60, 0);
		$SIG{TERM} = sub { $end = 0 };
		while (time < $end) { for (1 .. 100) { send($s, $msg, 0, $to); $n++ } }
		print "$n\n"' "$net.1$1" "$net.1$2" >"$work/sender.out" 2>&1 &
	sender_pid=$!
}
stop_sender() { kill -TERM "$sender_pid"; wait "$sender_pid"; sender_pid=; }

echo "1..74"

setup_network
setup_tpms
# node 4's PCR 4 measures another kernel than the policy's
TSS2_LOG=all+none TPM2TOOLS_TCTI=$(cat "$work/tpm-4.tcti") \
	quiet tpm2_pcrextend "4:sha256=$(printf 'bad0%060d' 0)"
setup_trust
init_cluster

# ---- (1) three agents join and see each other; the fourth does not match the policy ---------
started=$(date +%s%N)
start_agents # with the options start_agent always gives
declare -A id=() key=() gen=()
for i in 1 2 3; do
	others=$(echo 1 2 3 | tr ' ' '\n' | grep -vx "$i" | tr '\n' ' ')
	if until_true 30 is "$i" '.state == "running" and .peers == 2'; then
		ok "agent $i reaches running with 2 peers"
	else
		not_ok "agent $i reaches running with 2 peers" "$(agent_diag "$i")"
	fi
	id[$i]=$(st "$i" .node_id) key[$i]=$(st "$i" .wg_public_key) gen[$i]=$(st "$i" .generation)
	# shellcheck disable=SC2086 # $others is a list
	check "agent $i's datapath admits exactly agents $others's endpoints" "agent_diag $i" \
		until_true 5 dp_holds "$i" $others
done
echo "# three agents running with 2 peers after $(ms_since "$started") ms"
check "the agents have three distinct node ids" 'declare -p id' \
	test "$(printf '%s\n' "${id[@]}" | grep -E '^[1-9][0-9]*$' | sort -u | wc -l)" = 3
check "each agent reports the cluster identity of the cluster file" 'status 1' \
	test "$(for i in 1 2 3; do st "$i" .cluster_id; done | sort -u)" = "$cluster_id"
check "agent 1's status names its overlay addresses, pod CIDR and re-attestation interval" \
	'status 1' is 1 '(.overlay_v4 | startswith("10.100.")) and (.overlay_v6 | startswith("fd00:100:"))
	and (.pod_cidr | startswith("10.244.")) and .reattest_interval_s == 2 and .session == true'
node_status 1 --json >"$work/dpstatus.json" 2>&1
check "conclavectl status in agent 1's namespace: both programs on veth1, strict, 2 peers" \
	'head -c 600 $work/dpstatus.json' jqt "$work/dpstatus.json" \
	'([.attached[] | select(.ifname == "veth1" and .current) | .direction] | sort) == ["egress", "ingress"]
	 and .config.strict and .peers == 2'
# The attested nodes' ranges that conclave-cni's pod program lets pods reach (docs/cni.md).
peer_nets() {
	bpftool -j map dump pinned "$pins-$1/peer_net4" | jq -r '.[] | (.formatted // .) |
		"\(.key.addr | map(tostring) | join("."))/\(.key.prefixlen)"' | sort
}
check "agent 1 pins the per-pod program for conclave-cni" "ls $pins-1" test -e "$pins-1/prog_pod"
check "agent 1's peer_net4 holds the pod CIDRs of agents 1, 2 and 3 (its own included)" \
	"peer_nets 1" eval '[ "$(for i in 1 2 3; do st "$i" .pod_cidr; done | grep -c /)" = 3 ] &&
		[ "$(for i in 1 2 3; do st "$i" .pod_cidr; done | sort | comm -23 - <(peer_nets 1))" = "" ]'
node_status 1 >"$work/dpstatus.txt" 2>&1
check "conclavectl status prints agent 1's state, node id and peers" 'head -3 $work/dpstatus.txt' \
	grep -qE "^agent: +running, node ${id[1]}, generation [0-9]+, 2 peers" "$work/dpstatus.txt"
check "agent 1's datapath passed the join service's replies (pass_reply counted)" \
	'jq -c .counters $work/dpstatus.json' jqt "$work/dpstatus.json" '.counters.pass_reply.packets > 0'
check "agent 1 logs each state of its start by name: modules, keys, mesh-setup, joining, running" \
	'grep "agent: [a-z-]*$" $work/a1.log | head -6' eval \
	'[ "$(grep -oE "agent: (modules|keys|mesh-setup|joining|running|unknown)$" "$work/a1.log" | head -5 | tr "\n" " ")" = \
	  "agent: modules agent: keys agent: mesh-setup agent: joining agent: running " ]'

# ---- (7) bad input: the node whose PCR 4 measures another kernel stays out -------------------
if until_true 20 is 4 '.state == "refused"'; then
	ok "agent 4 (PCR 4 not as the policy expects) is refused"
else
	not_ok "agent 4 (PCR 4 not as the policy expects) is refused" "$(agent_diag 4)"
fi
check "agent 4's reason names the failed policy check" "agent_diag 4" \
	is 4 '.last_error | test("policy")'
check "agent 4's reason names the PCR" "agent_diag 4" is 4 '.last_error | test("PCR 4")'
check "agent 4 has no node id and no peers" "agent_diag 4" is 4 '.node_id <= 0 and .peers == 0'
check "agent 4's datapath admits nobody" "agent_diag 4" test "$(dp_count 4)" = 0
check "joind logs the refusal naming the policy" 'tail -5 $work/joind.log' \
	grep -qE 'connection refused at node attestation: .*policy: PCR 4' "$work/joind.log"

# ---- (2) verify ------------------------------------------------------------------------------
ctl verify --json >"$work/verify.json" 2>"$work/verify.err"
check "conclavectl verify passes" 'cat $work/verify.err' jqt "$work/verify.json" '.verified == true'
check "verify lists the three agents as active members, and nobody else" \
	'jq -c "[.members[] | {node_id, active}]" $work/verify.json' \
	jqt "$work/verify.json" \
	'([.members[] | select(.active) | .node_id] | sort) == ($ids | sort) and (.members | length) == 3' \
	--argjson ids "[${id[1]},${id[2]},${id[3]}]"
ctl verify >"$work/verify.txt" 2>&1
check "verify prints 'verified: 3 active members, 0 revoked'" 'tail -3 $work/verify.txt' \
	grep -q "verified: 3 active members, 0 revoked" "$work/verify.txt"

# ---- (3) continuous attestation: every agent re-attests and rotates its key -----------------
started=$(date +%s%N)
for i in 1 2 3; do
	check "agent $i rotates its WireGuard key within 10 s (re-attestation every 2 s)" \
		"agent_diag $i" until_true 10 is "$i" \
		".wg_public_key != \"${key[$i]}\" and .seconds_since_attested >= 0 and .seconds_since_attested <= 3"
done
echo "# every agent rotated its key after $(ms_since "$started") ms"
for i in 1 2 3; do
	check "joind logs node ${id[$i]} (agent $i) re-attested" 'grep -c re-attested $work/joind.log' \
		grep -q "node ${id[$i]} re-attested" "$work/joind.log"
	check "agent $i still has 2 peers, at a later generation" "agent_diag $i" \
		is "$i" ".state == \"running\" and .peers == 2 and .generation > ${gen[$i]}"
done
ctl verify --json >"$work/verify.json" 2>"$work/verify.err"
check "the member list carries the rotated keys, none of the first ones" 'cat $work/verify.err' \
	jqt "$work/verify.json" '.verified and ([.members[].wg_pubkey] - [$k1, $k2, $k3] | length) == 3' \
	--arg k1 "${key[1]}" --arg k2 "${key[2]}" --arg k3 "${key[3]}"
check "agent 1's log says it re-attested and rotated" 'tail -3 $work/a1.log' \
	grep -q "re-attested; WireGuard key rotated" "$work/a1.log"

# ---- (4) revocation ----------------------------------------------------------------------------
revoked_at=$(date +%s%N)
ctl revoke --operator-key "$work/operator.key" "${id[3]}" >"$work/revoke.out" 2>&1
rc=$? done_at=$(date +%s%N)
check "conclavectl revoke of agent 3 (node ${id[3]}) succeeds" 'cat $work/revoke.out' test $rc = 0
for i in 1 2; do
	if until_true 10 eval "is $i '.peers == 1' && dp_holds $i $((3 - i))"; then
		ms=$((($(date +%s%N) - done_at) / 1000000))
		echo "# agent $i dropped node ${id[3]} $ms ms after revoke returned ($(ms_since "$revoked_at") ms after it started)"
		check "agent $i's view and datapath drop the revoked node within 3 s of the revocation" \
			true test "$ms" -le 3000
	else
		not_ok "agent $i's view and datapath drop the revoked node" "$(agent_diag "$i")"
	fi
done
check "the revoked agent 3 goes to state refused" "agent_diag 3" until_true 10 is 3 '.state == "refused"'
check "agent 3's status says it was revoked" "agent_diag 3" is 3 '.last_error | test("revoked")'
check "agent 3's log says it was revoked" 'tail -5 $work/a3.log' grep -q "revoked by the cluster" "$work/a3.log"
check "agent 3 stops on SIGTERM with status 0" "tail -3 $work/a3.log" stop_agent 3
check "agent 3's status socket is removed on exit" true test ! -e "$work/a3.sock"

# ---- (5) an agent restarts: same node, pinned maps reused -------------------------------------
# Agent 1 keeps sending WireGuard packets to agent 2 throughout: agent 2's datapath must pass
# every one of them, while agent 2 is down, while it rejoins and while it applies agent 1's
# rotated keys (its datapath entries are endpoints, and agent 1's endpoint never changes).
# A pod on agent 2's node, registered by conclave-cni as a runtime would run it (the prevResult
# written here rather than by a bridge plugin): the restart must move it to its new pod program.
pod_ns=$pfx-pod2
trap 'ip netns del "$pod_ns" 2>/dev/null; cleanup' EXIT
quiet ip netns add "$pod_ns"
quiet ip -n "$pfx-2" link add cncpod0 type veth peer name eth0 netns "$pod_ns"
quiet ip -n "$pod_ns" addr add 10.244.250.5/24 dev eth0
quiet ip -n "$pod_ns" link set eth0 up
quiet ip -n "$pfx-2" link set cncpod0 up
pod_conf=$(jq -nc --arg pins "$pins-2" --arg ns "/run/netns/$pod_ns" '{cniVersion: "1.0.0",
	name: "agent-test", type: "conclave-cni", pinRoot: $pins, prevResult: {cniVersion: "1.0.0",
	interfaces: [{name: "eth0", sandbox: $ns}], ips: [{address: "10.244.250.5/24", interface: 0}]}}')
# pod_cni COMMAND: conclave-cni in agent 2's namespace for that pod
pod_cni() { in_ns 2 env CNI_COMMAND="$1" CNI_CONTAINERID=agent-pod CNI_NETNS="/run/netns/$pod_ns" \
	CNI_IFNAME=eth0 "$build/conclave-cni" <<<"$pod_conf"; }
pod_prog() { in_ns 2 tc filter show dev cncpod0 ingress | sed -n 's/.*handle 0xc1a7 .* id \([0-9]*\) .*/\1/p'; }
pinned_pod() { bpftool -j prog show pinned "$pins-2/prog_pod" | jq -r .id; }
check "conclave-cni registers a pod on agent 2's node, attached to the pinned pod program" \
	"pod_cni ADD; in_ns 2 tc filter show dev cncpod0 ingress" \
	eval 'pod_cni ADD && [ -n "$(pod_prog)" ] && [ "$(pod_prog)" = "$(pinned_pod)" ]'
old_pod=$(pinned_pod)
map_id=$(peers_map_id 2) count=$(dp_count 2)
unknown0=$(counter 2 drop_unknown_peer) passed0=$(counter 2 pass_peer)
start_sender 1 2
check "agent 1's WireGuard packets pass agent 2's datapath (pass_peer counts them)" \
	'cat $work/sender.out' until_true 5 eval '[ "$(counter 2 pass_peer)" -gt "$passed0" ]'
check "agent 2 stops on SIGTERM with status 0" "tail -3 $work/a2.log" stop_agent 2
check "its datapath maps stay pinned and filled after it exits" "dp_endpoints 2" \
	test "$(peers_map_id 2)" = "$map_id" -a "$(dp_count 2)" = "$count"
# Until it has rejoined, the datapath it finds must hold the peers it had. Its status socket
# does not answer while it joins, so its log tells where it is.
lines=$(wc -l <"$work/a2.log")
started=$(date +%s%N)
start_agent 2
min=$count samples=0 joining=0
while [ "$(ms_since "$started")" -lt 20000 ]; do
	progress=$(tail -n +$((lines + 1)) "$work/a2.log")
	grep -q "agent: running" <<<"$progress" && break
	c=$(dp_count 2) || c=0
	samples=$((samples + 1))
	grep -q "agent: joining" <<<"$progress" && joining=$((joining + 1))
	[ "${c:-0}" -lt "$min" ] && min=${c:-0}
	sleep 0.01
done
echo "# agent 2 running again after $(ms_since "$started") ms; $samples samples of its peers map ($joining while it was joining): fewest $min entries, had $count"
check "agent 2's peers map kept its entries while it restarted and rejoined" "dp_endpoints 2" \
	test "$min" = "$count"
unknown1=$(counter 2 drop_unknown_peer) passed1=$(counter 2 pass_peer)
echo "# agent 2's datapath while it restarted: $((passed1 - passed0)) of agent 1's packets passed, $((unknown1 - unknown0)) dropped as from an unknown peer"
check "agent 2's datapath dropped none of agent 1's packets while it restarted and rejoined" \
	true test "$((unknown1 - unknown0))" = 0
# Agent 1's re-attestations change its key in agent 2's view (updates "~1"): wait for four.
# A peers map that drops and re-adds an entry does so for some 50 us, which a packet hits
# most of the time, not every time: four chances.
check "agent 2 applies agent 1's rotated keys, four times" "tail -3 $work/a2.log" \
	until_true 15 eval '[ "$(tail -n +$((lines + 1)) "$work/a2.log" | grep -c "peers (+0 ~1 -0)")" -ge 4 ]'
unknown2=$(counter 2 drop_unknown_peer) passed2=$(counter 2 pass_peer)
stop_sender
echo "# agent 2's datapath while it applied agent 1's new keys: $((passed2 - passed1)) of agent 1's packets passed, $((unknown2 - unknown1)) dropped as from an unknown peer ($(cat "$work/sender.out") sent)"
check "agent 2's datapath dropped none of agent 1's packets while it applied agent 1's new keys" \
	true test "$((unknown2 - unknown1))" = 0
check "restarted agent 2 runs with the same node id and 1 peer" "agent_diag 2" \
	until_true 10 is 2 ".state == \"running\" and .node_id == ${id[2]} and .peers == 1"
check "it reused the pinned peers map (same map id $map_id)" 'bpftool map show pinned $pins-2/peers' \
	test "$(peers_map_id 2)" = "$map_id"
check "its datapath admits agent 1's endpoint" "agent_diag 2" until_true 5 dp_holds 2 1
check "restarted agent 2 moved the pod to its new pod program, in the same tc slot" \
	"echo old $old_pod pinned \$(pinned_pod); in_ns 2 tc filter show dev cncpod0 ingress" \
	eval '[ "$(pinned_pod)" != "$old_pod" ] && [ "$(pod_prog)" = "$(pinned_pod)" ]'
check "... its log says so, and conclavectl pods shows the pod on the current program" \
	"grep 'pod program' $work/a2.log; in_ns 2 $ctl pods --pin-root $pins-2" \
	eval 'tail -n +$((lines + 1)) "$work/a2.log" | grep -q "pod program [0-9]*: 1 pods moved to it" &&
		in_ns 2 "$ctl" pods --pin-root "$pins-2" --json | jq -e "length == 1 and .[0].program == \"current\""'
check "CHECK of the pod passes after the restart" "pod_cni CHECK" pod_cni CHECK
check "DEL of the pod removes its filter" "in_ns 2 tc filter show dev cncpod0 ingress" \
	eval 'pod_cni DEL && [ -z "$(pod_prog)" ]'
ip netns del "$pod_ns"
check "agent 1 keeps agent 2 as its 1 peer" "agent_diag 1" until_true 5 eval "is 1 '.peers == 1' && dp_holds 1 2"

# ---- (6) the join service restarts; the operator recovers it; agents come back -----------------
check "joind stops on SIGTERM with status 0" 'tail -3 $work/joind.log' stop_joind
stopped_at=$(date +%s%N)
for i in 1 2; do
	check "agent $i goes to reconnecting when the join service goes away" "agent_diag $i" \
		until_true 10 is "$i" '.state == "reconnecting" and .session == false'
	check "agent $i keeps its peer meanwhile (view and datapath)" "agent_diag $i" \
		eval "is $i '.peers == 1' && dp_holds $i $((3 - i))"
done
start_joind # without --recovery: it waits for the operator
# A join service that accepts connections and then says nothing (stopped): the agents' joins
# wait for it up to their deadline (--timeout-ms 5000); meanwhile status requests are answered
# (docs/agent.md: "Backoff and joins answer status requests while waiting").
kill -STOP "$joind_pid"
slowest=0 polled=$(date +%s%N)
while [ "$(ms_since "$polled")" -lt 8000 ]; do
	asked=$(date +%s%N)
	status 1 >/dev/null
	took=$(ms_since "$asked")
	[ "$took" -gt "$slowest" ] && slowest=$took
	sleep 0.1
done
kill -CONT "$joind_pid"
echo "# agent 1's slowest status answer over 8 s while joind was stopped: $slowest ms"
check "agent 1 answers status within 3 s while its join waits on a silent join service" \
	'grep "agent: " $work/a1.log | tail -3' test "$slowest" -le 3000
check "a restarted join service without its secret: agents keep reconnecting (not ready)" \
	"agent_diag 1" until_true 10 is 1 '.state == "reconnecting" and (.last_error | test("not ready|init"))'
ctl recover --operator-key "$work/operator.key" --recovery "$work/cluster.rec" >"$work/recover.out" 2>&1
rc=$?
check "conclavectl recover succeeds" 'cat $work/recover.out; tail -3 $work/joind.log' test $rc = 0
recovered_at=$(date +%s%N)
for i in 1 2; do
	if until_true 40 is "$i" ".state == \"running\" and .node_id == ${id[$i]} and .peers == 1"; then
		ok "agent $i rejoins by itself with the same node id"
		echo "# agent $i running $(ms_since "$recovered_at") ms after recover ($(ms_since "$stopped_at") ms after joind stopped)"
	else
		not_ok "agent $i rejoins by itself with the same node id" "$(agent_diag "$i")"
	fi
	check "agent $i's datapath still admits exactly its peer" "agent_diag $i" dp_holds "$i" $((3 - i))
done
check "the cluster verifies after recover: 2 active members, 1 revoked" \
	'ctl verify 2>&1 | tail -3' eval 'ctl verify 2>&1 | grep -q "verified: 2 active members, 1 revoked"'

# ---- (7, end) the node that does not match the policy never got in -----------------------------
check "agent 4 is still refused and never became a peer" "agent_diag 4" \
	eval 'is 4 ".state == \"refused\"" && ! dp_endpoints 1 | grep -q "$net.14:" && ! dp_endpoints 2 | grep -q "$net.14:"'
check "agent 1 stops on SIGTERM with status 0" "tail -3 $work/a1.log" stop_agent 1
