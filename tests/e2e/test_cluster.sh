#!/usr/bin/env bash
# scripts/cluster: two clusters side by side in cluster mode (a control plane and a worker; a
# control plane alone: 3 node VMs), status, separate trust, teardown of one while the other runs;
# in interim mode a cluster whose node fails to become ready; an interrupted `up`. Prints TAP.
# Needs root (network namespaces, tap devices). The mesh itself: tests/e2e/test_mesh.sh.
set -u
# shellcheck source=tests/e2e/tap.bash
source "$(dirname "$0")/tap.bash"
export CONCLAVE_CLUSTER_DIR
CONCLAVE_CLUSTER_DIR=$(mktemp -d /tmp/conclave-cluster-test-XXXXXX)
work=$CONCLAVE_CLUSTER_DIR/test
cluster=$root/scripts/cluster
a=a$$ b=b$$ c=c$$ d=d$$
cleanup() {
	local n
	for n in $a $b $c $d; do "$cluster" down --name "$n" >/dev/null 2>&1; done
	rm -rf "$CONCLAVE_CLUSTER_DIR"
}
trap cleanup EXIT

if [ "$(id -u)" -ne 0 ]; then
	echo "1..0 # SKIP scripts/cluster needs root"
	exit 0
fi
echo "1..13"
mkdir -p "$work"
"$root/scripts/build-image" --build "$build" --out "$work/image" >"$work/build.log" 2>&1 ||
	{ echo "Bail out! build-image failed"; exit 1; }
image=$work/image/node.efi

started=$SECONDS
"$cluster" up --name $a --workers 1 >"$work/a.out" 2>&1 &
pa=$!
"$cluster" up --name $b --workers 0 >"$work/b.out" 2>&1 &
pb=$!
wait $pa; ra=$?
wait $pb; rb=$?
echo "# two clusters (3 nodes) up in $((SECONDS - started)) s"

lines_ok() { # OUT N PREFIX: N lines "PREFIX-nodeI 10.88.0.X 10.100.Y.Z /path/console.log", logs exist
	local i=0 nm addr overlay log
	while read -r nm addr overlay log; do
		[ "$nm" = "$3-node$i" ] && [[ $addr =~ ^10\.88\.0\.[0-9]+$ ]] &&
			[[ $overlay =~ ^10\.100\.[0-9]+\.[0-9]+$ ]] && [ -f "$log" ] || return 1
		i=$((i + 1))
	done <"$1"
	[ $i -eq "$2" ]
}
[ $ra -eq 0 ] && lines_ok "$work/a.out" 2 $a &&
	ok "up --workers 1 boots a control plane and a worker that joins it; prints name, underlay and overlay address, console log" ||
	not_ok "up --workers 1 boots a control plane and a worker that joins it; prints name, underlay and overlay address, console log" \
		"exit $ra" "$(cat "$work/a.out")"
[ $rb -eq 0 ] && lines_ok "$work/b.out" 1 $b &&
	ok "a second cluster (a control plane alone, --workers 0) comes up beside it" ||
	not_ok "a second cluster (a control plane alone, --workers 0) comes up beside it" "exit $rb" "$(cat "$work/b.out")"

A=$CONCLAVE_CLUSTER_DIR/$a B=$CONCLAVE_CLUSTER_DIR/$b
"$cluster" status --name $a >"$work/status" 2>&1
[ "$(grep -c ' running ' "$work/status")" = 2 ] && grep -q ' 2 active, 0 revoked' "$work/status" &&
	ok "status shows both nodes running and the join service's 2 active members" ||
	not_ok "status shows both nodes running and the join service's 2 active members" "$(cat "$work/status")"
ip netns exec ccl-$a "$ctl" cluster-status --cluster "$A/cluster" --json >"$work/a.json" 2>&1
[ "$(jq -r '.verified and .control_plane.attested and ([.members[] | select(.active and .policy_ok)] | length == 2)' "$work/a.json" 2>/dev/null)" = true ] &&
	ok "the control plane's quote and every member's attested PCRs match the cluster's predicted, signed policy" ||
	not_ok "the control plane's quote and every member's attested PCRs match the cluster's predicted, signed policy" \
		"$(head -c 600 "$work/a.json")"
[ "$(stat -c %a "$A/recovery" "$A/cluster" 2>/dev/null | tr '\n' ' ')" = "600 600 " ] &&
	ok "the recovery and cluster files are kept in the cluster directory, 0600" ||
	not_ok "the recovery and cluster files are kept in the cluster directory, 0600" "$(ls -l "$A")"
reach=0
for addr in $(awk '{ print $2 }' "$work/a.out"); do
	ip netns exec ccl-$a ping -c 1 -W 1 "$addr" >/dev/null 2>&1 && reach=1
done
[ $reach = 0 ] && ok "the nodes' datapaths drop the host's pings to their underlay addresses" ||
	not_ok "the nodes' datapaths drop the host's pings to their underlay addresses"

# The clusters share no trust: A's cluster file refuses B's control plane (the same address, in
# B's namespace), and their EK CAs differ.
ip netns exec ccl-$b "$ctl" cluster-status --cluster "$A/cluster" >"$work/x" 2>&1
rx=$?
[ $rx -eq 1 ] && grep -q "failed check ek-certificate" "$work/x" &&
	! cmp -s "$A/trust/ek-roots.pem" "$B/trust/ek-roots.pem" &&
	ok "clusters have separate EK CAs (one's cluster file refuses the other's control plane: ek-certificate)" ||
	not_ok "clusters have separate trust" "exit $rx" "$(head -5 "$work/x")"

"$cluster" down --name $a >/dev/null 2>&1
left=$(pgrep -f "$A/" | wc -l)
! ip netns list | grep -qw "ccl-$a" && [ ! -d "$A" ] && [ "$left" = 0 ] &&
	ok "down removes the namespace, the state and every VM and swtpm" ||
	not_ok "down removes the namespace, the state and every VM and swtpm" "processes left: $left"
[ "$("$cluster" status --name $b 2>&1 | grep -c ' running ')" = 1 ] &&
	ok "the other cluster keeps running" || not_ok "the other cluster keeps running"
"$cluster" down --name $b >/dev/null 2>&1

# A node that cannot become ready: the image builder's signed policy is for the good image, the
# nodes boot one whose initramfs has one byte changed.
cp "$image" "$work/tampered.efi"
initrd_of "$image" "$work/node.cpio"
at=$(grep -obUa 'VARIANT_ID=production' "$work/node.cpio" | head -1 | cut -d: -f1)
printf 'P' | dd of="$work/tampered.efi" bs=1 seek=$(($(section_offset "$image" .initrd) + at + 11)) \
	conv=notrunc status=none
"$ctl" policy keygen --out "$work/builder" >/dev/null
"$ctl" measure --out "$work/m.json" "$image" >/dev/null
"$ctl" policy sign --key "$work/builder.key" --in "$work/m.json" --out "$work/policy.signed"
"$cluster" up --interim --name $c --workers 1 --image "$work/tampered.efi" --policy "$work/policy.signed" \
	--policy-pubkey "$work/builder.pub" >"$work/c.out" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q "$c-node0 failed: refused" "$work/c.out" &&
	ok "up --interim exits 1 and names the node when a node's quote is refused" ||
	not_ok "up --interim exits 1 and names the node when a node's quote is refused" "exit $rc" "$(cat "$work/c.out")"
! ip netns list | grep -qw "ccl-$c" && [ ! -d "$CONCLAVE_CLUSTER_DIR/$c" ] &&
	[ -f "$CONCLAVE_CLUSTER_DIR/$c-logs/0/console.log" ] &&
	ok "a failed up tears down and keeps the console logs" ||
	not_ok "a failed up tears down and keeps the console logs"

# Interrupted: TERM (what Ctrl-C's INT also triggers) while nodes boot tears everything down.
"$cluster" up --name $d --workers 0 >"$work/d.out" 2>&1 &
pd=$!
for _ in $(seq 100); do [ -f "$CONCLAVE_CLUSTER_DIR/$d/nodes/0/node-vm.pid" ] && break; sleep 0.1; done
sleep 2
kill -TERM $pd
wait $pd; rd=$?
sleep 1
[ $rd -ne 0 ] && ! ip netns list | grep -qw "ccl-$d" && [ ! -d "$CONCLAVE_CLUSTER_DIR/$d" ] &&
	[ "$(pgrep -f "$CONCLAVE_CLUSTER_DIR/$d/" | wc -l)" = 0 ] &&
	ok "an interrupted up tears everything down" ||
	not_ok "an interrupted up tears everything down" "exit $rd" "$(cat "$work/d.out")"
grep -q "logs kept in" "$work/d.out" && ok "an interrupted up says where the console logs are" ||
	not_ok "an interrupted up says where the console logs are" "$(cat "$work/d.out")"
