#!/usr/bin/env bash
# Faults between node agents and the join service, on the host with real processes: a network
# partition between an agent and joind (nftables drops the join port in the agent's namespace)
# while the cluster keeps changing, then healed; and joind killed with SIGKILL and brought back
# by the operator. Each time the agent says what happened, keeps its mesh, and comes back to the
# cluster's current peer set by itself. joind sends a heartbeat every 500 ms here and the agents
# presume a session lost after 3 s of silence (--session-timeout-s). Prints TAP.
# shellcheck source=tests/lib/agent_env.bash
# shellcheck disable=SC2016 # diagnostics and checks are single-quoted: evaluated when they run
. "${CONCLAVE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/agent_env.bash"
agents=(1 2)
agent_env_require nft
agent_env_init faults
joind_extra=(--heartbeat-ms 500)

echo "1..17"
setup_network
setup_tpms
setup_trust
init_cluster
start_agents --session-timeout-s 3
declare -A id=()
for i in 1 2; do
	check "agent $i reaches running with 1 peer" "agent_diag $i" \
		until_true 30 is "$i" '.state == "running" and .peers == 1'
	id[$i]=$(st "$i" .node_id)
done

# same_generation: both agents hold the same peer-set generation (they re-attest every 2 s, so
# the generation moves; equal at one moment means neither lags behind).
same_generation() { [ "$(st 1 .generation)" = "$(st 2 .generation)" ]; }

# ---- a partition between agent 1 and joind ---------------------------------------------------
in_ns 1 nft -f - <<NFT
table inet conclave_fault {
	chain out { type filter hook output priority 0; ip daddr $net.1 tcp dport $port drop; }
	chain in { type filter hook input priority 0; ip saddr $net.1 tcp sport $port drop; }
}
NFT
partitioned=$(date +%s%N)
check "agent 1 notices the partition: reconnecting" "agent_diag 1" \
	until_true 20 is 1 '.state == "reconnecting" and .session == false'
echo "# agent 1 reconnecting $(ms_since "$partitioned") ms after the partition"
check "agent 1's log says the session went silent" 'tail -3 $work/a1.log' \
	grep -q "not even a heartbeat: the session is presumed lost" "$work/a1.log"
check "agent 1 keeps its peer (view and datapath) while cut off" "agent_diag 1" \
	eval "is 1 '.peers == 1' && dp_holds 1 2"
gen=$(st 2 .generation)
check "the cluster moves on meanwhile (agent 2 re-attests: new generations)" "agent_diag 2" \
	until_true 10 eval "[ \"\$(st 2 .generation)\" -gt $gen ]"
in_ns 1 nft delete table inet conclave_fault
healed=$(date +%s%N)
check "agent 1 is running again with the same node id once the partition heals" "agent_diag 1" \
	until_true 60 is 1 ".state == \"running\" and .node_id == ${id[1]} and .peers == 1"
echo "# agent 1 running $(ms_since "$healed") ms after the partition healed"
check "agent 1 catches up: both agents at the same generation" "agent_diag 1; agent_diag 2" \
	until_true 20 same_generation
check "agent 1's datapath admits agent 2's endpoint" "agent_diag 1" dp_holds 1 2

# ---- joind killed (SIGKILL) and recovered --------------------------------------------------------
kill -9 "$joind_pid"
wait "$joind_pid" 2>/dev/null
joind_pid=
for i in 1 2; do
	check "agent $i goes to reconnecting when joind is killed" "agent_diag $i" \
		until_true 10 is "$i" '.state == "reconnecting"'
	check "agent $i keeps its peer while joind is down" "agent_diag $i" \
		eval "is $i '.peers == 1' && dp_holds $i $((3 - i))"
done
start_joind
ctl recover --operator-key "$work/operator.key" --recovery "$work/cluster.rec" >"$work/recover.out" 2>&1
check "conclavectl recover brings the killed joind back" 'cat $work/recover.out' test $? = 0
for i in 1 2; do
	check "agent $i rejoins by itself with the same node id" "agent_diag $i" \
		until_true 40 is "$i" ".state == \"running\" and .node_id == ${id[$i]} and .peers == 1"
done
check "the store kept both members through SIGKILL: verify shows 2 active" \
	'ctl verify 2>&1 | tail -3' eval 'ctl verify 2>&1 | grep -q "verified: 2 active members, 0 revoked"'
