# shellcheck shell=bash
# TAP results for shell tests (sourced): ok NAME, not_ok NAME [DIAGNOSTIC...]; n counts them.
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)); echo "not ok $n - $1"; shift
	local l; for l in "$@"; do printf '%s\n' "$l" | sed 's/^/# /'; done
}
