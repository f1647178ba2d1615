#!/usr/bin/env bash
# The mesh between node VMs, end to end: scripts/cluster up --debug with a control plane and two
# workers (QEMU TCG, debug image, joined over attested TLS), commands run inside the nodes with
# scripts/node-exec. Every node reaches every other over WireGuard; what crosses the bridge is
# WireGuard, never the payload; an unattested VM on the same bridge gets nothing through to the
# nodes' underlay or overlay addresses and the datapath counts its packets as drops; a WireGuard
# peer removed behind the agent's back means dropped traffic, never plaintext (strict mode); a
# rebooted worker rejoins with its node id and the mesh heals; a revoked worker is cut off within
# seconds. Needs root (network namespace, taps). Prints TAP.
# shellcheck disable=SC2016 # jq programs and node-side commands are single-quoted on purpose
set -u
# shellcheck source=tests/e2e/tap.bash
source "$(dirname "$0")/tap.bash"
export CONCLAVE_CLUSTER_DIR
CONCLAVE_CLUSTER_DIR=$(mktemp -d /tmp/conclave-mesh-test-XXXXXX)
work=$CONCLAVE_CLUSTER_DIR/test
cluster=$root/scripts/cluster
name=m$$
C=$CONCLAVE_CLUSTER_DIR/$name
ns=ccl-$name
X=$work/attacker # the unattested VM's directory
xaddr=10.88.0.99
x_pid='' tcpdump_pid='' up_pid=''

cleanup() {
	[ -n "$tcpdump_pid" ] && kill "$tcpdump_pid" 2>/dev/null
	[ -n "$up_pid" ] && kill "$up_pid" 2>/dev/null && wait "$up_pid" 2>/dev/null
	if [ -n "$x_pid" ]; then
		kill "$x_pid" 2>/dev/null
		wait "$x_pid" 2>/dev/null
	fi
	"$cluster" down --name "$name" >/dev/null 2>&1
	if [ -n "${CONCLAVE_KEEP_WORK:-}" ]; then
		echo "# kept $CONCLAVE_CLUSTER_DIR"
	else
		rm -rf "$CONCLAVE_CLUSTER_DIR"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$(id -u)" -ne 0 ]; then
	echo "1..0 # SKIP needs root (network namespace, taps, QEMU with a TPM)"
	exit 0
fi
for tool in qemu-system-x86_64 swtpm swtpm_setup tcpdump jq flock; do
	command -v $tool >/dev/null || { echo "Bail out! $tool missing (scripts/install-deps)"; exit 1; }
done
echo "1..16"
mkdir -p "$work"
t0=$SECONDS

ms() { date +%s%N | cut -c1-13; }
# nx I CMD...: run CMD in node I (0: the control plane) through its exec channel
nx() { local i=$1; shift; "$root/scripts/node-exec" --timeout 40 "$C/nodes/$i" "$@"; }
xx() { "$root/scripts/node-exec" --timeout 40 "$X" "$@"; } # in the unattested VM
members() { ip netns exec "$ns" "$ctl" cluster-status --cluster "$C/cluster" --timeout-ms 30000 --json; }
# counter I REASON: node I's datapath packets counted for REASON
counter() { nx "$1" conclavectl status --json | jq -r ".counters.$2.packets"; }
peers_of() { nx "$1" conclavectl status --json | jq -r '.agent.peers'; }
console_of() { tr -d '\r' <"$C/nodes/$1/console.log"; }
agent_tail() { console_of "$1" | grep -a 'conclave: \|conclave-init' | tail -"${2:-3}"; }

# --- the cluster, and beside it the unattested VM -------------------------------------------------
# The attacker: a debug image without any cluster trust, booted without --join (the interim
# attestation to its own CA, then it stays up with an address on the cluster's bridge).
"$root/scripts/build-image" --build "$build" --out "$work/x-image" >"$work/x-build.log" 2>&1 ||
	{ echo "Bail out! build-image failed: $(tail -3 "$work/x-build.log")"; exit 1; }
"$root/scripts/node-vm" --prepare-only --dir "$X" --ca-dir "$work/x-ca" >/dev/null ||
	{ echo "Bail out! cannot provision the attacker's swtpm"; exit 1; }

started=$SECONDS
"$cluster" up --name "$name" --workers 2 --debug --timeout 300 >"$work/up.out" 2>&1 &
up_pid=$!
for _ in $(seq 100); do ip netns list | grep -qw "$ns" && break; sleep 0.2; done
ip -n "$ns" tuntap add tapx mode tap 2>/dev/null && ip -n "$ns" link set tapx master br0 &&
	ip -n "$ns" link set tapx up
"$root/scripts/node-vm" --image "$work/x-image/node-debug.efi" --dir "$X" --ca-dir "$work/x-ca" \
	--netns "$ns" --tap tapx --mac 52:54:00:cc:ff:99 --underlay "$xaddr/24" --stay-up \
	--exec-channel --timeout 300 </dev/null >"$work/x-node-vm.log" 2>&1 &
x_pid=$!
wait "$up_pid"
rc=$?
up_pid=
up_s=$((SECONDS - started))
echo "# cluster up (control plane + 2 workers) in $up_s s"
declare -A under=() over=()
i=0
while read -r nm addr ov log; do
	[ "$nm" = "$name-node$i" ] && [ -f "$log" ] || break
	under[$i]=$addr over[$i]=$ov
	i=$((i + 1))
done <"$work/up.out"
if [ $rc -eq 0 ] && [ $i -eq 3 ] && [[ ${over[0]}${over[1]}${over[2]} =~ ^(10\.100\.[0-9.]+){3}$ ]]; then
	ok "cluster up --debug: a control plane and 2 workers join; each line names its overlay address ($up_s s)"
else
	not_ok "cluster up --debug: a control plane and 2 workers join; each line names its overlay address" \
		"exit $rc" "$(cat "$work/up.out")"
	echo "Bail out! no cluster"
	exit 1
fi
echo "# nodes: $(for i in 0 1 2; do printf '%s=%s/%s ' "$i" "${under[$i]}" "${over[$i]}"; done)"

members >"$work/members0.json" 2>"$work/err"
[ "$(jq '[.members[] | select(.active)] | length' "$work/members0.json" 2>/dev/null)" = 3 ] &&
	[ "$(jq -r .verified "$work/members0.json")" = true ] &&
	"$cluster" status --name "$name" 2>&1 | grep -c ' running ' | grep -qx 3 &&
	ok "cluster-status verifies the control plane and lists 3 active members; status shows 3 running" ||
	not_ok "cluster-status verifies the control plane and lists 3 active members; status shows 3 running" \
		"$(cat "$work/err")" "$("$cluster" status --name "$name" 2>&1)"
node_id() { # I [FILE]: node I's member id, by its WireGuard endpoint
	jq -r --arg ep "${under[$1]}:51820" '[.members[] | select(.endpoints | index($ep))][0].node_id' \
		"${2:-$work/members0.json}"
}
wg_key() { jq -r --arg ep "${under[$1]}:51820" '[.members[] | select(.endpoints | index($ep)) | select(.active)][0].wg_pubkey' "${2:-$work/members0.json}"; }

# --- (a) every node reaches every other over the overlay --------------------------------------------
pairs() { # FAMILY: the pairs that do not ping, empty if all do
	local a b dst bad=
	for a in 0 1 2; do
		for b in 0 1 2; do
			[ $a = $b ] && continue
			if [ "$1" = 6 ]; then
				dst=$(nx $b conclavectl status --json | jq -r .agent.overlay_v6)
				nx $a ping6 -c 1 -W 3 "$dst" >/dev/null 2>&1 ||
					nx $a ping6 -c 2 -W 3 "$dst" >/dev/null 2>&1 || bad+=" $a->$b($dst)"
			else
				dst=${over[$b]}
				nx $a ping -c 1 -W 3 "$dst" >/dev/null 2>&1 ||
					nx $a ping -c 2 -W 3 "$dst" >/dev/null 2>&1 || bad+=" $a->$b($dst)"
			fi
		done
	done
	echo "$bad"
}
bad=$(pairs 4)
[ -z "$bad" ] && ok "every node pings every other on its overlay IPv4 address (6 pairs, WireGuard)" ||
	not_ok "every node pings every other on its overlay IPv4 address" "failed:$bad" "$(agent_tail 1)"
bad=$(pairs 6)
[ -z "$bad" ] && ok "every node pings every other on its overlay IPv6 address (6 pairs)" ||
	not_ok "every node pings every other on its overlay IPv6 address" "failed:$bad"

# --- (b) what crosses the bridge is WireGuard, never the payload -------------------------------------
capture_start() { # FILE
	ip netns exec "$ns" tcpdump -Z root -i any --immediate-mode -nn -U -s 0 -w "$1" >"$1.log" 2>&1 &
	tcpdump_pid=$!
	for _ in $(seq 50); do grep -q "listening on" "$1.log" 2>/dev/null && break; sleep 0.1; done
}
capture_stop() {
	sleep 1
	kill -INT "$tcpdump_pid" 2>/dev/null
	wait "$tcpdump_pid" 2>/dev/null
	tcpdump_pid=
}
marker=CONCLAVE-MARKER-$RANDOM$RANDOM$RANDOM
nx 2 'udp_probe recv 7100 20 >/run/udp7100 2>&1 & nc -l -p 7101 >/run/tcp7101 2>&1 & sleep 0.3' >/dev/null
capture_start "$work/wire.pcap"
nx 1 udp_probe send "${over[2]}" 7100 "$marker-udp" 3 >/dev/null
nx 1 "echo $marker-tcp | nc -w 5 ${over[2]} 7101" >/dev/null
# The capture's control: sent to the underlay address, outside the cluster's ranges, it leaves in
# the clear (and worker 2's datapath drops it): the capture does see a marker when there is one.
nx 1 udp_probe send "${under[2]}" 7102 "$marker-clear" 1 >/dev/null
capture_stop
got=$(nx 2 cat /run/udp7100 /run/tcp7101)
on_wire=$(grep -ac "$marker-udp\|$marker-tcp" "$work/wire.pcap")
clear=$(grep -ac "$marker-clear" "$work/wire.pcap")
wg_pkts=$(tcpdump -r "$work/wire.pcap" -nn "udp and src host ${under[1]} and dst host ${under[2]} and src port 51820 and dst port 51820" 2>/dev/null | wc -l)
all_pkts=$(tcpdump -r "$work/wire.pcap" -nn 2>/dev/null | wc -l)
echo "# capture: $all_pkts packets, $wg_pkts WireGuard from node 1 to node 2; marker seen $on_wire times (the control in the clear: $clear)"
grep -q "$marker-udp" <<<"$got" && grep -q "$marker-tcp" <<<"$got" &&
	ok "a UDP datagram and a TCP stream from worker 1 reach worker 2's overlay address" ||
	not_ok "a UDP datagram and a TCP stream from worker 1 reach worker 2's overlay address" "received: $got"
[ "$on_wire" = 0 ] && [ "$wg_pkts" -gt 0 ] && [ "$clear" -gt 0 ] &&
	ok "on the bridge: UDP 51820 between their underlay addresses ($wg_pkts packets), the payload never" ||
	not_ok "on the bridge: UDP 51820 between their underlay addresses, the payload never" \
		"marker in the capture: $on_wire times; WireGuard packets: $wg_pkts; control: $clear" \
		"$(tcpdump -r "$work/wire.pcap" -nn 2>/dev/null | head -5)"

# --- (c) an unattested VM on the same bridge gets nothing through -----------------------------------
for _ in $(seq 240); do [ -f "$X/ready" ] || ! kill -0 "$x_pid" 2>/dev/null && break; sleep 0.5; done
if [ -f "$X/ready" ] && xx true; then
	for t in 1 2; do # listeners on both workers, on every address
		nx $t 'rm -f /run/u7200 /run/t7201; udp_probe recv 7200 60 >/run/u7200 2>&1 & nc -l -p 7201 >/run/t7201 2>&1 & sleep 0.3' >/dev/null
	done
	declare -A before=()
	for t in 1 2; do
		before[$t,na]=$(counter $t drop_not_allowed)
		before[$t,up]=$(counter $t drop_unknown_peer)
	done
	# Routes to the overlay addresses through each worker's underlay address, then UDP (3 each)
	# and TCP to both, and UDP to the WireGuard port.
	xx "ip route add ${over[1]}/32 via ${under[1]} && ip route add ${over[2]}/32 via ${under[2]}" >/dev/null
	xx "for t in ${under[1]} ${over[1]} ${under[2]} ${over[2]}; do
		udp_probe send \$t 7200 ATTACK-udp-\$t 3
		(echo ATTACK-tcp-\$t | nc -w 3 \$t 7201) &
	done
	udp_probe send ${under[1]} 51820 ATTACK-wg 3
	udp_probe send ${under[2]} 51820 ATTACK-wg 3
	wait" >"$work/attack.out" 2>&1
	# The control: a peer reaches the same listeners through WireGuard.
	nx 0 "udp_probe send ${over[1]} 7200 LEGIT-udp 2; udp_probe send ${over[2]} 7200 LEGIT-udp 2
		echo LEGIT-tcp | nc -w 5 ${over[1]} 7201; echo LEGIT-tcp | nc -w 5 ${over[2]} 7201" >/dev/null 2>&1
	sleep 0.5
	recv1=$(nx 1 cat /run/u7200 /run/t7201) recv2=$(nx 2 cat /run/u7200 /run/t7201)
	if ! grep -q ATTACK <<<"$recv1$recv2" && [ "$(grep -c LEGIT <<<"$recv1")" -ge 2 ] &&
		[ "$(grep -c LEGIT <<<"$recv2")" -ge 2 ]; then
		ok "nothing the unattested VM sends (UDP, TCP; underlay and overlay addresses) reaches a worker; a peer's does"
	else
		not_ok "nothing the unattested VM sends reaches a worker; a peer's does" \
			"worker 1 received: $recv1" "worker 2 received: $recv2" "attacker: $(cat "$work/attack.out")"
	fi
	diag=
	for t in 1 2; do
		na=$(($(counter $t drop_not_allowed) - before[$t,na]))
		up=$(($(counter $t drop_unknown_peer) - before[$t,up]))
		diag+="worker $t: drop_not_allowed +$na, drop_unknown_peer +$up; "
		# 6 UDP datagrams and at least 2 SYNs to other ports, 3 datagrams to the WireGuard port
		[ $na -ge 8 ] && [ $up -ge 3 ] || diag+="(too few) "
	done
	echo "# $diag"
	[[ $diag != *"too few"* ]] &&
		ok "the workers' datapaths count the unattested VM's packets as drops (not allowed, unknown peer)" ||
		not_ok "the workers' datapaths count the unattested VM's packets as drops" "$diag"
else
	not_ok "nothing the unattested VM sends reaches a worker" "the unattested VM is not up: $(tail -3 "$X/exchange.log" 2>/dev/null)"
	not_ok "the workers' datapaths count the unattested VM's packets as drops" "no unattested VM"
fi
[ -n "$x_pid" ] && kill "$x_pid" 2>/dev/null && wait "$x_pid" 2>/dev/null
x_pid=

# --- strict mode: a WireGuard peer removed behind the agent's back ----------------------------------
key2=$(wg_key 2)
strict_before=$(counter 1 drop_strict)
nx 1 wg_peer remove cnc0 "$key2" >"$work/wgrm.out" 2>&1
left=$(nx 1 wg_peer list cnc0)
nx 2 'udp_probe recv 7300 30 >/run/u7300 2>&1 & sleep 0.3' >/dev/null
capture_start "$work/strict.pcap"
nx 1 udp_probe send "${over[2]}" 7300 "$marker-nopeer" 3 >/dev/null 2>&1
# and with a route that sends the overlay address out of the underlay NIC in the clear
nx 1 "ip route add ${over[2]}/32 via ${under[2]} dev eth0" >/dev/null
nx 1 udp_probe send "${over[2]}" 7300 "$marker-strict" 3 >/dev/null 2>&1
nx 1 "echo $marker-strict | nc -w 3 ${over[2]} 7301" >/dev/null 2>&1
nx 0 ping -c 2 -W 2 "${over[1]}" >/dev/null 2>&1 # the capture's control: WireGuard from node 0
capture_stop
nx 1 "ip route del ${over[2]}/32 via ${under[2]} dev eth0" >/dev/null
strict_after=$(counter 1 drop_strict)
got=$(nx 2 cat /run/u7300)
on_wire=$(grep -ac "$marker" "$work/strict.pcap")
control=$(tcpdump -r "$work/strict.pcap" -nn "udp and src host ${under[0]} and port 51820" 2>/dev/null | wc -l)
echo "# strict: drop_strict +$((strict_after - strict_before)), marker on the wire $on_wire times, delivered: ${got:-nothing}; capture control: $control WireGuard packets from node 0"
! grep -q "$key2" <<<"$left" && [ "$on_wire" = 0 ] && [ "$control" -gt 0 ] && ! grep -q "$marker" <<<"$got" &&
	ok "worker 1 without worker 2's WireGuard peer: its traffic to worker 2 is dropped, never sent in the clear" ||
	not_ok "worker 1 without worker 2's WireGuard peer: its traffic to worker 2 is dropped, never sent in the clear" \
		"peer still there: $(grep -c "$key2" <<<"$left"); on the wire: $on_wire; control packets: $control; delivered: $got" \
		"$(cat "$work/wgrm.out")"
[ $((strict_after - strict_before)) -ge 4 ] &&
	ok "routed out of the underlay NIC instead, it is dropped by strict mode (drop_strict +$((strict_after - strict_before)))" ||
	not_ok "routed out of the underlay NIC instead, it is dropped by strict mode" \
		"drop_strict $strict_before -> $strict_after"

# --- (e) a worker reboots on the same TPM and disk: same node id, the mesh heals -------------------
id1=$(node_id 1)
started=$SECONDS
"$cluster" reboot --name "$name" --node 1 --timeout 240 >"$work/reboot.out" 2>&1
rrc=$?
reboot_s=$((SECONDS - started))
members >"$work/members1.json" 2>"$work/err"
echo "# worker 1 rebooted in $reboot_s s (exit $rrc)"
[ $rrc -eq 0 ] && [ "$(node_id 1 "$work/members1.json")" = "$id1" ] &&
	[ "$(jq '.members | length' "$work/members1.json")" = 3 ] &&
	[ "$(jq '[.members[] | select(.active)] | length' "$work/members1.json")" = 3 ] &&
	[ "$(wg_key 1 "$work/members1.json")" != "$(wg_key 1)" ] &&
	ok "a rebooted worker rejoins as node $id1 (no new member; a new WireGuard key) in $reboot_s s" ||
	not_ok "a rebooted worker rejoins with the same node id" "exit $rrc: $(cat "$work/reboot.out")" \
		"before: node $id1; after: $(jq -c '[.members[] | {node_id, active, endpoints}]' "$work/members1.json" 2>/dev/null)" \
		"$(agent_tail 1)"
healed=
for _ in 1 2 3 4 5; do
	bad=$(pairs 4)
	[ -z "$bad" ] && healed=1 && break
	sleep 2
done
[ -n "$healed" ] && ok "after the reboot every node pings every other again (the mesh healed)" ||
	not_ok "after the reboot every node pings every other again" "failed:$bad" "$(agent_tail 1)"

# --- (d) revocation -------------------------------------------------------------------------------------
id2=$(node_id 2 "$work/members1.json")
lines0=$(console_of 0 | wc -l) lines1=$(console_of 1 | wc -l)
t_start=$(ms)
ip netns exec "$ns" "$ctl" revoke --cluster "$C/cluster" --operator-key "$C/operator.key" \
	--timeout-ms 30000 "$id2" >"$work/revoke.out" 2>&1
vrc=$?
t_done=$(ms)
declare -A seen=()
until [ -n "${seen[0]:-}" ] && [ -n "${seen[1]:-}" ]; do
	for j in 0 1; do # (not n: tap.bash counts tests in it)
		[ -n "${seen[$j]:-}" ] && continue
		lines=$(console_of $j | tail -n +$((j == 0 ? lines0 + 1 : lines1 + 1)))
		grep -aq 'agent: generation [0-9]*: 1 peers' <<<"$lines" && seen[$j]=$(ms)
	done
	[ $(($(ms) - t_done)) -lt 15000 ] || break
	sleep 0.05
done
p0=$(peers_of 0) p1=$(peers_of 1)
revoke_ms=$((t_done - t_start))
d0=$(( ${seen[0]:-999999999999999} - t_done )) d1=$(( ${seen[1]:-999999999999999} - t_done ))
echo "# revoke of node $id2: conclavectl revoke took $revoke_ms ms; after it returned node 0 applied the removal in $d0 ms, node 1 in $d1 ms"
[ $vrc -eq 0 ] && [ "$p0" = 1 ] && [ "$p1" = 1 ] && [ $d0 -le 3000 ] && [ $d1 -le 3000 ] &&
	ok "revoking worker 2: within 3 s of the revocation the other nodes have 1 peer left ($d0 ms, $d1 ms)" ||
	not_ok "revoking worker 2: within 3 s of the revocation the other nodes have 1 peer left" \
		"revoke exit $vrc: $(cat "$work/revoke.out")" "peers: node 0 $p0, node 1 $p1; $d0 ms, $d1 ms" \
		"$(agent_tail 0 2)"
cut=1
for b in 0 1; do
	nx 2 ping -c 2 -W 2 "${over[$b]}" >/dev/null 2>&1 && cut=0
done
nx 0 ping -c 1 -W 3 "${over[1]}" >/dev/null 2>&1 || nx 0 ping -c 2 -W 3 "${over[1]}" >/dev/null 2>&1 || cut=2
[ $cut = 1 ] && ok "the revoked worker's pings to the others' overlay addresses fail; the others still reach each other" ||
	not_ok "the revoked worker's pings to the others' overlay addresses fail; the others still reach each other" \
		"$([ $cut = 0 ] && echo "a ping from the revoked worker went through" || echo "node 0 no longer reaches node 1")"
members >"$work/members2.json" 2>"$work/err"
[ "$(jq --argjson id "$id2" '[.members[] | select(.node_id == $id and (.active | not))] | length' "$work/members2.json")" = 1 ] &&
	[ "$(jq '[.members[] | select(.active)] | length' "$work/members2.json")" = 2 ] &&
	ok "cluster-status shows node $id2 revoked, 2 active" ||
	not_ok "cluster-status shows node $id2 revoked, 2 active" "$(cat "$work/err")" \
		"$(jq -c '[.members[] | {node_id, active}]' "$work/members2.json" 2>/dev/null)"

# --- the nodes' own view ------------------------------------------------------------------------------
errors=$(for i in 0 1 2; do console_of $i | grep -a 'conclave: error\|exited (\|Kernel panic' | sed "s/^/node $i: /"; done)
[ -z "$errors" ] && ok "no node logged an error, a crash or a service restart" ||
	not_ok "no node logged an error, a crash or a service restart" "$(head -10 <<<"$errors")"
echo "# test_mesh took $((SECONDS - t0)) s"
