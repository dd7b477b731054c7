#!/usr/bin/env bash
# nexcage demo: runs a busybox container through each backend nexcage can
# use on this machine and shows its output. Run it with `make demo` (which
# builds bin/nexcage first) as root on Debian 12.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NEXCAGE="${NEXCAGE:-$REPO/bin/nexcage}"
WORK=""

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

cleanup() {
	local id
	if [[ -n "$WORK" && -d "$WORK" ]]; then
		for id in $("$NEXCAGE" "${GLOBALS[@]}" list -q 2>/dev/null || true); do
			"$NEXCAGE" "${GLOBALS[@]}" delete --force "$id" || true
		done
		rm -rf "$WORK"
	fi
}

setup() {
	[[ $(id -u) -eq 0 ]] || { echo "demo: run as root (containers need it)" >&2; exit 1; }
	[[ -x "$NEXCAGE" ]] || { echo "demo: $NEXCAGE missing; run make build" >&2; exit 1; }
	WORK="$(mktemp -d /tmp/nexcage-demo.XXXXXX)"
	trap cleanup EXIT
	# Routing: ids starting with crun- go to crun, every other id to runc.
	# (The Proxmox backend is the default once it is configured.)
	cat >"$WORK/nexcage.json" <<-JSON
	{
	  "runtime": {
	    "routing": [
	      {"pattern": "^crun-.*$", "runtime": "crun"},
	      {"pattern": ".*", "runtime": "runc"}
	    ]
	  }
	}
	JSON
	GLOBALS=(--root "$WORK/root" --config "$WORK/nexcage.json")
	say "nexcage version"
	"$NEXCAGE" version
}

# busybox_bundle DIR SCRIPT : an OCI bundle with busybox-static as rootfs
# and config.json from `nexcage spec`, running `sh -c SCRIPT`.
busybox_bundle() {
	local dir="$1" script="$2"
	mkdir -p "$dir/rootfs/bin" "$dir/rootfs/proc" "$dir/rootfs/sys" "$dir/rootfs/dev" "$dir/rootfs/tmp" "$dir/rootfs/etc"
	cp /bin/busybox "$dir/rootfs/bin/busybox"
	local applet
	for applet in $(/bin/busybox --list); do
		[[ "$applet" == busybox ]] || ln -sf busybox "$dir/rootfs/bin/$applet"
	done
	echo 'root:x:0:0:root:/root:/bin/sh' >"$dir/rootfs/etc/passwd"
	"$NEXCAGE" spec --bundle "$dir"
	# The default process is ["sh"]; make it ["sh", "-c", SCRIPT]. SCRIPT is
	# escaped for JSON (\ and ") and for sed (& and |).
	script="${script//\\/\\\\}"; script="${script//\"/\\\"}"
	script="${script//&/\\&}"; script="${script//|/\\|}"
	sed -i "s|^\(\s*\)\"sh\"$|\1\"sh\", \"-c\", \"$script\"|" "$dir/config.json"
	grep -q '"-c"' "$dir/config.json" || { echo "demo: cannot set args in $dir/config.json" >&2; return 1; }
}

# demo_oci RUNTIME ID: one container through runc or crun, step by step.
demo_oci() {
	local rt="$1" id="$2" b="$WORK/bundle-$1"
	say "$rt: a busybox bundle in $b"
	busybox_bundle "$b" "echo hello from a $rt container, pid \$\$; sleep 300"
	say "$rt: nexcage route $id"
	"$NEXCAGE" "${GLOBALS[@]}" route "$id"
	say "$rt: create, start, state"
	"$NEXCAGE" "${GLOBALS[@]}" create --bundle "$b" "$id" >"$WORK/$id.out" 2>&1
	"$NEXCAGE" "${GLOBALS[@]}" start "$id"
	wait_for_output "$WORK/$id.out"
	cat "$WORK/$id.out"
	"$NEXCAGE" "${GLOBALS[@]}" state "$id"
	say "$rt: list (all backends)"
	"$NEXCAGE" "${GLOBALS[@]}" list
	say "$rt: kill -s SIGKILL $id, delete"
	"$NEXCAGE" "${GLOBALS[@]}" kill -s SIGKILL "$id"
	wait_for_status "$id" stopped
	"$NEXCAGE" "${GLOBALS[@]}" delete "$id"
	say "$rt: run (foreground, exit code passed through)"
	local rc=0
	busybox_bundle "$WORK/run-$rt" "echo run says hi via $rt; exit 3"
	"$NEXCAGE" "${GLOBALS[@]}" run --bundle "$WORK/run-$rt" "$id-run" || rc=$?
	echo "exit code: $rc"
}

wait_for_output() {
	local f="$1" i
	for i in $(seq 100); do [[ -s "$f" ]] && return 0; sleep 0.1; done
	echo "demo: no output in $f" >&2; return 1
}

wait_for_status() {
	local id="$1" want="$2" i
	for i in $(seq 100); do
		"$NEXCAGE" "${GLOBALS[@]}" state "$id" | grep -q "\"status\": \"$want\"" && return 0
		sleep 0.1
	done
	echo "demo: $id never became $want" >&2; return 1
}

main() {
	setup
	demo_oci runc runc-demo
	demo_oci crun crun-demo
	say "done: every container was deleted"
	"$NEXCAGE" "${GLOBALS[@]}" list
}

main "$@"
