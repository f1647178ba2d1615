#!/usr/bin/env bash
# conclave-cni chained after Debian's containernetworking-plugins (loopback; bridge +
# host-local), run exactly as libcni runs a conflist (tests/lib/cni_chain.bash), in real network
# namespaces: a "node" namespace holds the bridge, the pods' host-side veths and the datapath
# (tests/tools/dp_node: the real programs and maps, pinned under a bpffs directory of this
# test, with the ranges an agent would write: cluster 10.244.0.0/16, this node 10.244.1.0/24,
# attested node 2 10.244.2.0/24; 10.244.3.0/24 belongs to no attested node). A "remote"
# namespace answers for 10.244.2.10 and 10.244.3.10. Pods get addresses, conclave registers
# them, traffic to the unattested range is dropped at the pod's veth and attributed to the pod,
# bad input changes nothing, DEL removes everything and a second DEL succeeds. Root. TAP.
set -u
root=${CONCLAVE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${CONCLAVE_BUILD:-$root/build}
plugins=${CONCLAVE_CNI_PLUGINS:-/usr/lib/cni}
# shellcheck source=tests/lib/cni_chain.bash
. "$root/tests/lib/cni_chain.bash"
# shellcheck source=tests/lib/cni_node.bash
. "$root/tests/lib/cni_node.bash"

cni_require ip nsenter jq ping tc bpftool

work=$(mktemp -d /tmp/conclave-cni-XXXXXX)
tag=${work##*-}
pfx=cnc-cni-$tag # namespaces $pfx-node, $pfx-remote, $pfx-p1 ...
pins=/sys/fs/bpf/conclave-cni-test-$tag
br=cncbr${tag:0:6}
mkdir -p "$work/bin"
cp "$build/conclave-cni" "$work/bin/"
export CNI_PATH=$plugins:$work/bin CHAIN_NS=$pfx-node
mon_pid=

cleanup() {
	[ -n "$mon_pid" ] && kill "$mon_pid" 2>/dev/null
	cni_node_cleanup p1 p2 p3 p4 p5 p6
	if [ -n "${CONCLAVE_KEEP_WORK:-}" ]; then echo "# kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

pod() { local p=$1; shift; nsenter --net="/run/netns/$pfx-$p" "$@"; }
ns_of() { echo "/run/netns/$pfx-$1"; }
# cni NAME: runs conclave-cni alone with the given environment and stdin (file)
cni() { node env "$@" "$work/bin/conclave-cni"; }

# The node's state conclave-cni may touch: pod records, pod addresses, and tc filters.
node_state() {
	bpftool -j map dump pinned "$pins/pods" | jq -c 'map(.key) | sort'
	bpftool -j map dump pinned "$pins/pod_addrs" | jq -c 'map([.key, .value]) | sort'
	node ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | sort | while read -r l; do
		node tc filter show dev "$l" ingress 2>/dev/null | sed "s/^/$l /"
	done
}

echo "1..58"

# ---- the node, its datapath, the remote side -------------------------------------------------
cni_node_setup

cat >"$work/net.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "conclave-test-$tag", "plugins": [
  {"type": "bridge", "bridge": "$br", "isGateway": true, "isDefaultGateway": true,
   "ipMasq": false, "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.1.0/24"}]],
   "dataDir": "$work/ipam"}},
  {"type": "conclave-cni", "pinRoot": "$pins"}]}
EOF
cat >"$work/lo.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "lo", "plugins": [{"type": "loopback"}]}
EOF
k8s_args() { echo "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=$1"; }

# add_pod P ID ARGS: loopback and the chain, as a runtime does; the result in $work/P.result
add_pod() {
	local p=$1 id=$2 args=$3
	ip netns add "$pfx-$p" || return 1
	chain_add "$work/lo.conflist" "$id" "$(ns_of "$p")" lo "$args" || return 1
	chain_add "$work/net.conflist" "$id" "$(ns_of "$p")" eth0 "$args" || return 1
	printf '%s\n' "$chain_out" >"$work/$p.result"
}
del_pod() { chain_del "$work/net.conflist" "$(cat "$work/$1.result")" "$2" "$(ns_of "$1")" eth0 "$3"; }

# ---- VERSION, STATUS ---------------------------------------------------------------------------
out=$(echo '{"cniVersion": "1.0.0"}' | cni CNI_COMMAND=VERSION)
check_why "VERSION lists 0.4.0, 1.0.0 and 1.1.0 and answers in the asked version" "echo '$out'" \
	jq -e '.cniVersion == "1.0.0" and .supportedVersions == ["0.4.0", "1.0.0", "1.1.0"]' <<<"$out"
jq '.plugins[1] + {cniVersion: "1.1.0", name: "n"}' "$work/net.conflist" >"$work/status.json"
check_why "STATUS succeeds while the datapath is loaded" "cni CNI_COMMAND=STATUS <$work/status.json" \
	cni CNI_COMMAND=STATUS <"$work/status.json"

# ---- ADD ----------------------------------------------------------------------------------------
if add_pod p1 c1 "$(k8s_args web-1)"; then ok "ADD pod 1 through loopback, bridge + host-local + conclave-cni"
else not_ok "ADD pod 1 through loopback, bridge + host-local + conclave-cni" "$chain_out"; fi
bridge_out=${chain_steps[0]}
check_why "conclave-cni passes the bridge's result through unchanged" \
	"echo bridge: '$bridge_out'; echo ours: '$chain_out'" \
	test "$(jq -S . <<<"$bridge_out")" = "$(jq -S . <<<"$chain_out")"
ip1=$(jq -r '.ips[0].address | split("/")[0]' "$work/p1.result")
check_why "pod 1 got an address of 10.244.1.0/24 on eth0 from host-local" "pod p1 ip -o addr" \
	eval "[[ $ip1 == 10.244.1.* ]] && pod p1 ip -o addr show eth0 | grep -q ' $ip1/24 '"
veth1=$(pod_field default/web-1 .veth) ifx1=$(pod_field default/web-1 .ifindex)
check_why "conclavectl pods lists pod 1 as default/web-1 with its address, container and veth" \
	"pods_json" eval "[ \"$(pod_field default/web-1 '.addresses == ["'"$ip1"'"] and .container_id == "c1" and .ifname == "eth0"')\" = true ] && [[ $veth1 == veth* ]]"
check_why "the pod program is attached to pod 1's host-side veth (tc ingress)" \
	"node tc filter show dev $veth1 ingress" eval "node tc filter show dev $veth1 ingress | grep -q dp_pod"
if add_pod p2 c2 "IgnoreUnknown=1"; then ok "ADD pod 2 (no pod name in CNI_ARGS)"
else not_ok "ADD pod 2 (no pod name in CNI_ARGS)" "$chain_out"; fi
ip2=$(jq -r '.ips[0].address | split("/")[0]' "$work/p2.result")
check_why "pod 2 is named by its container id" "pods_json" test "$(pod_field c2 .addresses[0])" = "$ip2"
if chain_check "$work/net.conflist" "$(cat "$work/p1.result")" c1 "$(ns_of p1)" eth0 "$(k8s_args web-1)"; then
	ok "CHECK of pod 1 passes through the whole chain"
else not_ok "CHECK of pod 1 passes through the whole chain" "$chain_out"; fi

# ---- traffic --------------------------------------------------------------------------------------
local0=$(counter pass_pod_local) peer0=$(counter pass_pod_peer) unatt0=$(counter drop_pod_unattested)
check_why "pod 1 reaches pod 2 on the same node" "pod p1 ping -c1 -W1 $ip2" pod p1 ping -c2 -W2 "$ip2"
check_why "... counted as pass_pod_local" "node_ctl status" test "$(counter pass_pod_local)" -gt "$local0"
check_why "pod 1 reaches 10.244.2.10 in attested node 2's range" "pod p1 ip route" \
	pod p1 ping -c2 -W2 10.244.2.10
check_why "... counted as pass_pod_peer" "node_ctl status" test "$(counter pass_pod_peer)" -gt "$peer0"
check_why "the node itself reaches 10.244.3.10 (the route works: a drop is the pod program's)" \
	"node ip route" node ping -c1 -W2 10.244.3.10
node "$build/conclavectl" monitor --pin-root "$pins" --json --count 1 >"$work/monitor.out" 2>&1 &
mon_pid=$!
sleep 0.5 # the monitor opens the ring buffer
check_why "pod 1 does not reach 10.244.3.10, which no attested node owns" "true" \
	eval '! pod p1 ping -c3 -i0.2 -W1 10.244.3.10'
check_why "... counted as drop_pod_unattested" "node_ctl status" \
	test "$(counter drop_pod_unattested)" -ge "$((unatt0 + 3))"
check_why "pod 1's record counts its 3 dropped packets; pod 2's none" "pods_json" \
	eval '[ "$(pod_field default/web-1 .drop_packets)" = 3 ] && [ "$(pod_field c2 .drop_packets)" = 0 ]'
for _ in $(seq 50); do kill -0 "$mon_pid" 2>/dev/null || break; sleep 0.1; done
check_why "conclavectl monitor names pod default/web-1 in the drop event" "cat $work/monitor.out" \
	jq -e --arg src "$ip1:0" '.reason == "drop_pod_unattested" and .direction == "pod" and
		.pod == "default/web-1" and .container_id == "c1" and .destination == "10.244.3.10:0"' \
	"$work/monitor.out"
mon_pid=
conf1=$(jq -c --slurpfile r "$work/p1.result" '.plugins[1] + {cniVersion: .cniVersion, name: .name, prevResult: $r[0]}' "$work/net.conflist")
out=$(cni CNI_COMMAND=ADD CNI_CONTAINERID=c1 CNI_NETNS="$(ns_of p1)" CNI_IFNAME=eth0 CNI_ARGS="$(k8s_args web-1)" <<<"$conf1")
check_why "a repeated ADD of pod 1 succeeds and keeps its record's drop counters" "echo '$out'; pods_json" \
	eval '[ "$(jq -S . <<<"$out")" = "$(jq -S . "$work/p1.result")" ] && [ "$(pod_field default/web-1 .drop_packets)" = 3 ]'
check_why "pod 2 does not reach 10.244.3.10 either" true eval '! pod p2 ping -c1 -W1 10.244.3.10'
check_why "... and that drop is pod 2's" "pods_json" test "$(pod_field c2 .drop_packets)" = 1
spoof0=$(counter drop_pod_spoofed)
quiet pod p1 ip addr add 10.244.1.250/32 dev eth0
check_why "pod 1 sending from an address that is not its own is dropped (drop_pod_spoofed)" "node_ctl status" \
	eval '! pod p1 ping -c1 -W1 -I 10.244.1.250 10.244.2.10 && [ "$(counter drop_pod_spoofed)" -gt "$spoof0" ]'

# ---- bad input changes nothing -----------------------------------------------------------------
node_state >"$work/state.before"
conf_of() { jq -c '.plugins[1] + {cniVersion: .cniVersion, name: .name}' "$work/net.conflist"; }
good=$(conf_of | jq -c --slurpfile r "$work/p1.result" '. + {prevResult: $r[0]}')
quiet ip netns add "$pfx-p3"
env_add=(CNI_COMMAND=ADD CNI_CONTAINERID=c3 CNI_NETNS="$(ns_of p3)" CNI_IFNAME=eth0 CNI_ARGS=)
# refuse NAME CODE MSG-REGEX ENV... <stdin: exit 1, the CNI error on stdout, the node unchanged
refuse() {
	local name=$1 code=$2 re=$3 out rc; shift 3
	out=$(cni "$@"); rc=$?
	node_state >"$work/state.after"
	if [ $rc = 1 ] && jq -e --argjson c "$code" --arg re "$re" \
		'.code == $c and (.msg | test($re)) and (.cniVersion | length > 0)' <<<"$out" >/dev/null &&
		cmp -s "$work/state.before" "$work/state.after"; then
		ok "$name"
	else
		not_ok "$name" "exit $rc, stdout: $out" "$(diff "$work/state.before" "$work/state.after")"
	fi
}
refuse "bad JSON: code 6, nothing changed" 6 "not valid JSON" "${env_add[@]}" <<<'{"cniVersion": "1.0.0",'
refuse "trailing data after the object: code 6" 6 "JSON|data after" "${env_add[@]}" <<<"$good x"
refuse "no prevResult: code 7 naming the chain" 7 "chained plugin" "${env_add[@]}" <<<"$(conf_of)"
refuse "unknown cniVersion: code 1" 1 "9.9.9 is not supported" "${env_add[@]}" \
	<<<"$(jq -c '.cniVersion = "9.9.9"' <<<"$good")"
refuse "absent netns: code 4 naming it" 4 "no-such-ns" CNI_COMMAND=ADD CNI_CONTAINERID=c3 \
	CNI_NETNS=/run/netns/no-such-ns CNI_IFNAME=eth0 <<<"$good"
refuse "no CNI_CONTAINERID: code 4" 4 "CNI_CONTAINERID" CNI_COMMAND=ADD CNI_NETNS="$(ns_of p3)" \
	CNI_IFNAME=eth0 <<<"$good"
refuse "a netns without the interface: code 7, nothing changed" 7 "eth0 in" "${env_add[@]}" <<<"$good"
refuse "prevResult without addresses: code 7" 7 "no address for eth0" "${env_add[@]}" \
	<<<"$(jq -c '.prevResult.ips = []' <<<"$good")"
refuse "an address held by pod 1 is refused for another pod: code 100" 100 "registered to pod default/web-1" \
	CNI_COMMAND=ADD CNI_CONTAINERID=c2 CNI_NETNS="$(ns_of p2)" CNI_IFNAME=eth0 <<<"$good"
refuse "a pin root without a datapath: code 11 (try again), nothing changed" 11 "not loaded" \
	CNI_COMMAND=ADD CNI_CONTAINERID=c1 CNI_NETNS="$(ns_of p1)" CNI_IFNAME=eth0 \
	<<<"$(jq -c '.pinRoot = "/sys/fs/bpf/conclave-none-'"$tag"'"' <<<"$good")"

# A whole chain whose conclave-cni step fails: the runtime then runs DEL, which must clean up
# what bridge made; conclave-cni must have left no filter on the new veth.
jq '.plugins[1].pinRoot = "/sys/fs/bpf/conclave-none-'"$tag"'"' "$work/net.conflist" >"$work/bad.conflist"
if chain_add "$work/bad.conflist" c4 "$(ns_of p3)" eth0 ""; then
	not_ok "a chain whose conclave-cni step fails fails ADD" "$chain_out"
else
	ok "a chain whose conclave-cni step fails fails ADD"
fi
veth4=$(jq -r '.interfaces[] | select(.sandbox == null and (.name | startswith("veth"))) | .name' <<<"${chain_steps[0]}")
check_why "... and left no pod record or filter on its veth ($veth4)" "node tc filter show dev $veth4 ingress" \
	eval "[ -n '$veth4' ] && ! node tc filter show dev $veth4 ingress | grep -q . && [ -z \"\$(pod_field c4 .pod)\" ]"
chain_del "$work/bad.conflist" "${chain_steps[0]}" c4 "$(ns_of p3)" eth0 ""

# ---- CHECK finds what is missing ------------------------------------------------------------------
veth2=$(pod_field c2 .veth)
quiet node tc filter del dev "$veth2" ingress
out=$(cni CNI_COMMAND=CHECK CNI_CONTAINERID=c2 CNI_NETNS="$(ns_of p2)" CNI_IFNAME=eth0 \
	<<<"$(conf_of | jq -c --slurpfile r "$work/p2.result" '. + {prevResult: $r[0]}')")
check_why "CHECK of pod 2 without its filter fails (code 101) naming the pod and the veth's filter" \
	"echo '$out'" jq -e '.code == 101 and (.msg | test("pod c2 .*no conclave filter"))' <<<"$out"

# ---- an agent restart moves the pods to its pod program ----------------------------------------
# tests/tools/dp_node loads the datapath again exactly as a restarted agent's datapath_open does
# (same pinned maps, a new pod program pinned as prog_pod). Pod 1 runs the old program, pod 2
# has lost its filter (above), pod 6's veth vanishes without a DEL.
prog_pod() { bpftool -j prog show pinned "$pins/prog_pod" | jq -r .id; }
# our_filter VETH: "ID" of the one filter in our slot (pref 1, handle 0xc1a7) on VETH's ingress
our_filter() {
	node tc filter show dev "$1" ingress | grep -c ' handle 0xc1a7 ' | grep -qx 1 &&
		node tc filter show dev "$1" ingress | sed -n 's/.*pref 1 bpf chain 0 handle 0xc1a7 .* id \([0-9]*\) .*/\1/p'
}
reload() { node "$build/tests/tools/dp_node" load "$pins" --cidr 10.244.0.0/16 \
	--node 10.244.1.0/24=1 --node 10.244.2.0/24=2 >"$work/reload.out" 2>&1; }
add_pod p6 c7 "" >/dev/null || bail "ADD of pod 6 failed: $chain_out"
ifx6=$(pod_field c7 .ifindex) veth6=$(pod_field c7 .veth) old=$(prog_pod)
check_why "before the restart pod 1 runs the pinned pod program $old (conclavectl pods: current)" \
	"pods_json" eval '[ "$(pod_field default/web-1 .program)" = current ] && [ "$(pod_field default/web-1 .prog_id)" = "$old" ] && [ "$(our_filter "$veth1")" = "$old" ]'
quiet ip netns del "$pfx-p6" # the veth goes with the pod's netns; no DEL ever comes
until_true 5 eval '! node ip link show "$veth6"' || bail "pod 6's veth $veth6 did not go away"
quiet bpftool prog pin id "$old" "$pins/test_old_pod" # to put it back on pod 1 below
drops1=$(pod_field default/web-1 .drop_packets)
check_why "the restart loads and pins a new pod program" "cat $work/reload.out" \
	eval 'reload && [ "$(prog_pod)" != "$old" ]'
new=$(prog_pod)
check_why "... and reports pod 1 moved, pod 6 gone and pod 2 (no filter) left alone" "cat $work/reload.out" \
	grep -qx "pods: moved 1 current 0 gone 1 skipped 1 failed 0" "$work/reload.out"
check_why "pod 1's veth runs the new program $new in the same tc slot, the only filter there" \
	"node tc filter show dev $veth1 ingress" test "$(our_filter "$veth1")" = "$new"
check_why "conclavectl pods shows pod 1 on the current program $new" "pods_json" \
	eval '[ "$(pod_field default/web-1 .program)" = current ] && [ "$(pod_field default/web-1 .prog_id)" = "$new" ]'
check_why "pod 1 keeps its record, addresses and drop counters" "pods_json; bpftool map dump pinned $pins/pod_addrs" \
	eval '[ "$(pod_field default/web-1 .addresses[0])" = "$ip1" ] && [ "$(pod_field default/web-1 .drop_packets)" = "$drops1" ] && [ "$(addrs_of "$ifx1")" = 1 ]'
check_why "pod 6, whose veth vanished, is unregistered (record and address) and logged" \
	"pods_json; cat $work/reload.out" \
	eval '[ -z "$(pod_field c7 .pod)" ] && [ "$(addrs_of "$ifx6")" = 0 ] && grep -q "pods: c7 .*is gone: record and addresses removed" "$work/reload.out"'
check_why "pod 2, whose filter was removed, gets none attached and is logged (program: none)" \
	"pods_json; cat $work/reload.out; node tc filter show dev $veth2 ingress" \
	eval '[ "$(pod_field c2 .program)" = none ] && ! node tc filter show dev "$veth2" ingress | grep -q . && grep -q "pods: c2 .*no conclave filter.*left alone" "$work/reload.out"'
unatt0=$(counter drop_pod_unattested) peer0=$(counter pass_pod_peer)
check_why "under the new program pod 1 still does not reach 10.244.3.10" true \
	eval '! pod p1 ping -c2 -i0.2 -W1 10.244.3.10'
check_why "... dropped as drop_pod_unattested and counted in pod 1's record" "node_ctl status; pods_json" \
	eval '[ "$(counter drop_pod_unattested)" -ge "$((unatt0 + 2))" ] && [ "$(pod_field default/web-1 .drop_packets)" = "$((drops1 + 2))" ]'
check_why "under the new program pod 1 reaches 10.244.2.10 in attested node 2's range (pass_pod_peer)" \
	"node_ctl status" eval 'pod p1 ping -c2 -W2 10.244.2.10 && [ "$(counter pass_pod_peer)" -gt "$peer0" ]'
if chain_check "$work/net.conflist" "$(cat "$work/p1.result")" c1 "$(ns_of p1)" eth0 "$(k8s_args web-1)"; then
	ok "CHECK of pod 1 passes on the new program"
else not_ok "CHECK of pod 1 passes on the new program" "$chain_out"; fi
# Pod 1 back on the earlier program, as if the re-attach had missed it: CHECK and pods say so.
quiet node tc filter replace dev "$veth1" ingress protocol all pref 1 handle 0xc1a7 \
	bpf object-pinned "$pins/test_old_pod" direct-action
check_why "conclavectl pods shows a pod on the earlier program as stale" "pods_json" \
	eval '[ "$(pod_field default/web-1 .program)" = stale ] && [ "$(pod_field default/web-1 .prog_id)" = "$old" ]'
out=$(cni CNI_COMMAND=CHECK CNI_CONTAINERID=c1 CNI_NETNS="$(ns_of p1)" CNI_IFNAME=eth0 \
	CNI_ARGS="$(k8s_args web-1)" <<<"$conf1")
check_why "CHECK of a pod on the earlier program fails (code 101) naming both programs" "echo '$out'" \
	jq -e --arg o "$old" --arg n "$new" '.code == 101 and (.msg | test("earlier pod program \\(id " + $o + "\\).*id " + $n))' <<<"$out"
rm -f "$pins/test_old_pod"
check_why "a second restart moves it to that restart's program and finds nothing else to do" \
	"cat $work/reload.out; node tc filter show dev $veth1 ingress" \
	eval 'reload && grep -qx "pods: moved 1 current 0 gone 0 skipped 1 failed 0" "$work/reload.out" && [ "$(our_filter "$veth1")" = "$(prog_pod)" ] && [ "$(prog_pod)" != "$new" ]'

# ---- DEL -------------------------------------------------------------------------------------------
if del_pod p1 c1 "$(k8s_args web-1)"; then ok "DEL pod 1 (reverse order) succeeds"
else not_ok "DEL pod 1 (reverse order) succeeds" "$chain_out"; fi
check_why "pod 1 is no longer registered (record and address), its veth is gone" \
	"pods_json; bpftool map dump pinned $pins/pod_addrs" \
	eval '[ -z "$(pod_field default/web-1 .pod)" ] && [ "$(addrs_of "$ifx1")" = 0 ] && ! node ip link show "$veth1"'
if del_pod p1 c1 "$(k8s_args web-1)"; then ok "a second DEL of pod 1 succeeds"
else not_ok "a second DEL of pod 1 succeeds" "$chain_out"; fi
quiet ip netns del "$pfx-p2" # pod 2's sandbox is gone before the runtime's DEL
out=$(cni CNI_COMMAND=DEL CNI_CONTAINERID=c2 CNI_NETNS="$(ns_of p2)" CNI_IFNAME=eth0 <<<"$(conf_of)")
check_why "DEL of pod 2 with its netns gone (and no prevResult) succeeds and unregisters it" \
	"echo '$out'; pods_json" eval "[ -z '$out' ] && [ -z \"\$(pod_field c2 .pod)\" ]"
out=$(cni CNI_COMMAND=DEL CNI_CONTAINERID=never-added CNI_IFNAME=eth0 <<<"$(conf_of)")
check_why "DEL of an unknown container succeeds" "echo '$out'" test -z "$out"
# GC: of two pods, the one the runtime still knows stays
add_pod p4 c5 "" >/dev/null || bail "ADD of pod 4 failed: $chain_out"
add_pod p5 c6 "" >/dev/null || bail "ADD of pod 6 failed: $chain_out"
out=$(cni CNI_COMMAND=GC CNI_PATH="$CNI_PATH" <<<"$(conf_of | jq -c '. + {"cni.dev/valid-attachments": [{"containerID": "c6", "ifname": "eth0"}]}')")
check_why "GC with only pod c6 valid removes pod c5 and keeps c6" "echo '$out'; pods_json" \
	eval '[ -z "$(pod_field c5 .pod)" ] && [ "$(pod_field c6 .pod)" = c6 ]'
del_pod p5 c6 "" >/dev/null
del_pod p4 c5 "" >/dev/null
check_why "at the end no pod is registered and no pod filter is left on the node" "pods_json; node_state" \
	eval '[ "$(pods_json | jq length)" = 0 ] && ! node_state | grep -q dp_pod && [ "$(bpftool -j map dump pinned "$pins/pod_addrs" | jq length)" = 0 ]'
