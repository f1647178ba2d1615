#!/usr/bin/env bash
# conclave-cni under a real container runtime: containerd (Debian's, started here with its own
# root, state and socket, CRI off) runs busybox containers with `ctr run --rm --cni --rootfs`,
# and ctr runs our chained conflist (bridge + host-local + conclave-cni) from /etc/cni/net.d
# with the plugins in /opt/cni/bin. ctr itself runs in a "node" network namespace holding the
# datapath (tests/tools/dp_node, as in test_cni.sh) and a "remote" namespace answering for
# 10.244.2.10 (attested node 2's range) and 10.244.3.10 (no attested node's). Containers get
# addresses from the chain, conclave registers and later removes them, and a container's traffic
# to the unattested range is dropped and attributed to it. What this test puts into
# /etc/cni/net.d and /opt/cni/bin has names of its own and is removed at the end. Root. TAP.
set -u
root=${CONCLAVE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${CONCLAVE_BUILD:-$root/build}
plugins=${CONCLAVE_CNI_PLUGINS:-/usr/lib/cni}
# shellcheck source=tests/lib/cni_node.bash
. "$root/tests/lib/cni_node.bash"

cni_require containerd ctr runc containerd-shim-runc-v2 busybox ip nsenter jq bpftool tc

work=$(mktemp -d /tmp/conclave-ctr-XXXXXX)
tag=${work##*-}
pfx=cnc-ctr-$tag
pins=/sys/fs/bpf/conclave-ctr-test-$tag
plugin=conclave-cni-test-$tag # our binary's name in /opt/cni/bin, the conflist's type
conflist=/etc/cni/net.d/00-conclave-test-$tag.conflist # ctr takes the first conflist by name
made_dirs=() made_links=()
containerd_pid=
declare -A ctr_pid=()

cleanup() {
	local c l sock=$work/containerd.sock
	for c in "${!ctr_pid[@]}"; do touch "$work/$c/tmp/stop"; done
	for c in "${!ctr_pid[@]}"; do
		# a container that does not end by itself is killed: its shim must not outlive us
		until_true 10 eval "! kill -0 ${ctr_pid[$c]}" ||
			{ ctr --address "$sock" task kill -s SIGKILL "$c"; sleep 1; }
		wait_ctr "$c" >/dev/null 2>&1
	done
	if [ -n "$containerd_pid" ]; then
		kill "$containerd_pid" 2>/dev/null
		wait "$containerd_pid" 2>/dev/null
	fi
	rm -f "$conflist" "/opt/cni/bin/$plugin"
	for l in "${made_links[@]}"; do rm -f "$l"; done
	for ((i = ${#made_dirs[@]} - 1; i >= 0; i--)); do rmdir "${made_dirs[$i]}" 2>/dev/null; done
	cni_node_cleanup
	# containerd's state holds mounts only while tasks run; all have ended by now
	if [ -n "${CONCLAVE_KEEP_WORK:-}" ]; then echo "# kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

mkdir_owned() { [ -d "$1" ] || { mkdir -p "$1" && made_dirs+=("$1"); }; }

# A container: its own busybox rootfs; its script reports through files in its /tmp (the
# rootfs is a directory of ours) and waits for the test between steps.
container_script='export PATH=/bin
ip -o -4 addr show eth0 > /tmp/addr
while [ ! -e /tmp/go ] && [ ! -e /tmp/stop ]; do sleep 0.1; done
[ -e /tmp/stop ] && exit 0
for t in $(cat /tmp/targets); do ping -c3 -i0.2 -W1 $t > /tmp/ping-$t 2>&1; echo $? > /tmp/rc-$t; done
touch /tmp/pinged
while [ ! -e /tmp/stop ]; do sleep 0.1; done'

start_ctr() {
	local c=$1 r=$work/$1 a
	mkdir -p "$r/bin" "$r/proc" "$r/sys" "$r/dev" "$r/etc" "$r/tmp"
	cp "$(command -v busybox)" "$r/bin/busybox"
	for a in sh ip ping sleep cat; do ln -sf busybox "$r/bin/$a"; done
	node ctr --address "$work/containerd.sock" run --rm --cni --rootfs "$r" "$c" /bin/sh -c \
		"$container_script" >"$work/$c.out" 2>&1 &
	ctr_pid[$c]=$!
}
wait_ctr() { local rc; wait "${ctr_pid[$1]}"; rc=$?; unset "ctr_pid[$1]"; return $rc; }
addr_of() { awk '{print $4}' "$work/$1/tmp/addr" 2>/dev/null | cut -d/ -f1; }
# ping_from C TARGET...: C pings each target three times; its exit statuses in rc-TARGET
ping_from() {
	local c=$1; shift
	echo "$@" >"$work/$c/tmp/targets"
	touch "$work/$c/tmp/go"
	until_true 30 test -e "$work/$c/tmp/pinged"
}
rc_of() { cat "$work/$1/tmp/rc-$2" 2>/dev/null; }

echo "1..14"

# ---- node, remote, datapath, CNI configuration --------------------------------------------------
cni_node_setup
mkdir_owned /etc/cni
mkdir_owned /etc/cni/net.d
mkdir_owned /opt/cni
mkdir_owned /opt/cni/bin
for p in bridge host-local loopback; do # Debian's plugins, where ctr looks for them
	[ -e "/opt/cni/bin/$p" ] || { ln -s "$plugins/$p" "/opt/cni/bin/$p" && made_links+=("/opt/cni/bin/$p"); }
done
cp "$build/conclave-cni" "/opt/cni/bin/$plugin"
cat >"$conflist" <<EOF
{"cniVersion": "1.0.0", "name": "conclave-test-$tag", "plugins": [
  {"type": "bridge", "bridge": "cncbr${tag:0:6}", "isGateway": true, "isDefaultGateway": true,
   "ipMasq": false, "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.1.0/24"}]],
   "dataDir": "$work/ipam"}},
  {"type": "$plugin", "pinRoot": "$pins"}]}
EOF
first=$(find /etc/cni/net.d -maxdepth 1 -name '*.conf*' | sort | head -1)
[ "$first" = "$conflist" ] || bail "another CNI configuration sorts before ours: $first"

cat >"$work/containerd.toml" <<EOF
version = 2
disabled_plugins = ["io.containerd.grpc.v1.cri"]
EOF
containerd --config "$work/containerd.toml" --root "$work/root" --state "$work/state" \
	--address "$work/containerd.sock" >"$work/containerd.log" 2>&1 &
containerd_pid=$!
until_true 30 ctr --address "$work/containerd.sock" version || bail "containerd did not start"
ok "containerd runs with its own root, state and socket"

# ---- two containers --------------------------------------------------------------------------
a=$pfx-a b=$pfx-b
ida=default-$a idb=default-$b # ctr's CNI container id: its namespace, "-", the container's id
start_ctr "$a"
start_ctr "$b"
check_why "container a gets an address of 10.244.1.0/24 from the chain" "cat $work/$a.out" \
	until_true 60 eval "[[ \$(addr_of $a) == 10.244.1.* ]]"
check_why "container b gets another one" "cat $work/$b.out" \
	until_true 60 eval "[[ \$(addr_of $b) == 10.244.1.* ]] && [ \$(addr_of $b) != \$(addr_of $a) ]"
ipa=$(addr_of "$a") ipb=$(addr_of "$b")
check_why "conclave registered container a (named by its container id) with its address" "pods_json" \
	until_true 10 test "$(pod_field "$ida" '.addresses[0]')" = "$ipa"
check_why "conclave registered container b with its address" "pods_json" \
	test "$(pod_field "$idb" '.addresses[0]')" = "$ipb"
veth_a=$(pod_field "$ida" .veth) ifx_a=$(pod_field "$ida" .ifindex)
check_why "the pod program runs on container a's host-side veth" "node tc filter show dev $veth_a ingress" \
	eval "node tc filter show dev '$veth_a' ingress | grep -q dp_pod"

node "$build/conclavectl" monitor --pin-root "$pins" --json --count 1 >"$work/monitor.out" 2>&1 &
mon=$!
sleep 0.5 # the monitor opens the ring buffer
ping_from "$a" "$ipb" 10.244.2.10 10.244.3.10 || not_ok "container a ran its pings" "cat $work/$a.out"
check_why "container a reaches container b" "cat $work/$a/tmp/ping-$ipb" test "$(rc_of "$a" "$ipb")" = 0
check_why "container a reaches 10.244.2.10 (attested node 2)" "cat $work/$a/tmp/ping-10.244.2.10" \
	test "$(rc_of "$a" 10.244.2.10)" = 0
check_why "container a does not reach 10.244.3.10 (no attested node's)" \
	"cat $work/$a/tmp/ping-10.244.3.10" test "$(rc_of "$a" 10.244.3.10)" = 1
check_why "the 3 drops are container a's, none container b's" "pods_json" \
	eval "[ \"\$(pod_field $ida .drop_packets)\" = 3 ] && [ \"\$(pod_field $idb .drop_packets)\" = 0 ]"
until_true 5 eval "! kill -0 $mon"
kill "$mon" 2>/dev/null
check_why "conclavectl monitor attributes the drop to container a" "cat $work/monitor.out" \
	jq -e --arg c "$ida" '.reason == "drop_pod_unattested" and .pod == $c and .container_id == $c
		and .destination == "10.244.3.10:0"' "$work/monitor.out"

# ---- the containers end: ctr runs DEL ------------------------------------------------------------
touch "$work/$a/tmp/stop"
check_why "container a exits with status 0 (ctr run --rm)" "cat $work/$a.out" wait_ctr "$a"
check_why "conclave removed container a: record, addresses and veth gone; b still registered" \
	"pods_json; bpftool map dump pinned $pins/pod_addrs" \
	eval "[ -z \"\$(pod_field $ida .pod)\" ] && [ \"\$(bpftool -j map dump pinned $pins/pod_addrs | jq --argjson i $ifx_a '[.[] | select((.formatted.value // .value) == \$i)] | length')\" = 0 ] && ! node ip link show '$veth_a' && [ -n \"\$(pod_field $idb .pod)\" ]"
touch "$work/$b/tmp/stop"
wait_ctr "$b" >/dev/null 2>&1
check_why "after container b exits no pod is registered on the node" "pods_json" \
	test "$(pods_json | jq length)" = 0
