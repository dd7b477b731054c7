#!/usr/bin/env bash
# nexcage demo: runs a busybox container through each backend nexcage can
# use on this machine and shows its output. Run it with `make demo` (which
# builds bin/nexcage first) as root on Debian 12.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NEXCAGE="${NEXCAGE:-$REPO/bin/nexcage}"
WORK=""
GLOBALS=()
PVE=()

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

cleanup() {
	local id name
	if [[ -n "$WORK" && -d "$WORK" ]]; then
		# The Proxmox config (when set up) knows every backend; the first one only runc/crun.
		local -a g=("${GLOBALS[@]}")
		[[ ${#PVE[@]} -gt 0 ]] && g=("${PVE[@]}")
		for id in $("$NEXCAGE" "${g[@]}" list -q 2>/dev/null || true); do
			"$NEXCAGE" "${g[@]}" delete --force "$id" || true
		done
		# Anything the simulated node still runs after a failed step.
		if [[ -d "$WORK/pve/var/lib/lxc" ]]; then
			for name in $(ls "$WORK/pve/var/lib/lxc"); do
				lxc-stop -k -P "$WORK/pve/var/lib/lxc" -n "$name" 2>/dev/null || true
			done
		fi
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

wait_for_status() { wait_for_status_in GLOBALS "$@"; }

# wait_for_status_in ARRAYNAME ID STATUS: poll `nexcage state` with the
# global flags held in the named array.
wait_for_status_in() {
	local -n globals="$1"
	local id="$2" want="$3" i
	for i in $(seq 100); do
		"$NEXCAGE" "${globals[@]}" state "$id" | grep -q "\"status\": \"$want\"" && return 0
		sleep 0.1
	done
	echo "demo: $id never became $want" >&2; return 1
}

# setup_pve: a simulated Proxmox node (pvesim, real LXC underneath) in
# $WORK/pve, and a nexcage config whose default backend is Proxmox LXC.
setup_pve() {
	PVESIM="${PVESIM:-$REPO/bin/pvesim}"
	[[ -x "$PVESIM" ]] || { echo "demo: $PVESIM missing; run make build" >&2; exit 1; }
	mkdir -p "$WORK/sbin" "$WORK/pve"
	# Unprivileged containers (Proxmox's default) must traverse to their rootfs.
	chmod 755 "$WORK"
	local t
	for t in pct pveam pvesh pveversion; do ln -s "$PVESIM" "$WORK/sbin/$t"; done
	export PVESIM_ROOT="$WORK/pve"
	say "proxmox: pvesim init --with-templates (a simulated node 'pve' in $PVESIM_ROOT)"
	"$PVESIM" init --with-templates
	"$WORK/sbin/pveam" list local
	cat >"$WORK/nexcage-pve.json" <<-JSON
	{
	  "proxmox": {
	    "pct_path": "$WORK/sbin/pct", "pveam_path": "$WORK/sbin/pveam", "pvesh_path": "$WORK/sbin/pvesh", "pveversion_path": "$WORK/sbin/pveversion",
	    "etc_pve": "$WORK/pve/etc/pve", "lxc_path": "$WORK/pve/var/lib/lxc", "lock_dir": "$WORK/pve/run/lock/lxc", "node": "pve"
	  },
	  "storage": {"image_path": "$WORK/images"},
	  "runtime": {"routing": [{"pattern": "^crun-.*$", "runtime": "crun"}, {"pattern": "^runc-.*$", "runtime": "runc"}]},
	  "container_config": {"default_container_type": "lxc"}
	}
	JSON
	PVE=(--root "$WORK/root" --config "$WORK/nexcage-pve.json")
}

# vmid_of ID: the VMID Proxmox gave the container (nexcage state's data.vmid).
vmid_of() { "$NEXCAGE" "${PVE[@]}" state "$1" | sed -n 's/^ *"vmid": "\([0-9]*\)".*/\1/p'; }

# demo_pve_bundle: an OCI bundle with a bind mount, as a Proxmox container.
demo_pve_bundle() {
	local id=test-oci b="$WORK/bundle-pve" share="$WORK/share"
	mkdir -p "$share"
	chmod 777 "$share"
	say "proxmox: a busybox bundle with a bind mount $share -> /share"
	busybox_bundle "$b" "echo hello from a Proxmox container: \$(hostname) pid \$\$ > /share/hello.txt; sleep 300"
	sed -i "s|^\(\s*\)\"mounts\": \[$|&\n\1\1{\"destination\": \"/share\", \"type\": \"bind\", \"source\": \"$share\", \"options\": [\"rbind\", \"rw\"]},|" "$b/config.json"
	grep -q '"/share"' "$b/config.json" || { echo "demo: cannot add the mount to $b/config.json" >&2; return 1; }
	sed -i "s|\"hostname\": \"runc\"|\"hostname\": \"$id\"|" "$b/config.json"
	say "proxmox: nexcage route $id; nexcage create --name $id --image $b"
	"$NEXCAGE" "${PVE[@]}" route "$id"
	"$NEXCAGE" "${PVE[@]}" create --name "$id" --image "$b"
	local vmid; vmid="$(vmid_of "$id")"
	say "proxmox: pct config $vmid (written by one pct create; note mp0 and the raw lxc lines)"
	"$WORK/sbin/pct" config "$vmid"
	"$NEXCAGE" "${PVE[@]}" start "$id"
	wait_for_output "$share/hello.txt"
	say "proxmox: what the container wrote into the bind mount"
	cat "$share/hello.txt"
	say "proxmox: nexcage state $id (host pid of the container's init), pct list"
	"$NEXCAGE" "${PVE[@]}" state "$id"
	"$WORK/sbin/pct" list
	say "proxmox: kill -s SIGKILL $id, delete"
	"$NEXCAGE" "${PVE[@]}" kill -s SIGKILL "$id"
	wait_for_status_in PVE "$id" stopped
	"$NEXCAGE" "${PVE[@]}" delete "$id"
}

# demo_pve_template: a container from a Proxmox template (the seed's command).
demo_pve_template() {
	local id=test-template img=local:vztmpl/ubuntu-22.04-standard_22.04-1_amd64.tar.zst
	say "proxmox: nexcage create --name $id --image $img"
	"$NEXCAGE" "${PVE[@]}" create --name "$id" --image "$img"
	"$NEXCAGE" "${PVE[@]}" start "$id"
	local vmid; vmid="$(vmid_of "$id")"
	say "proxmox: pct exec $vmid -- cat /etc/os-release (inside the template's rootfs)"
	"$WORK/sbin/pct" exec "$vmid" -- head -n 2 /etc/os-release
	"$WORK/sbin/pct" exec "$vmid" -- ps
	say "proxmox: stop (pct shutdown), delete (pct destroy)"
	"$NEXCAGE" "${PVE[@]}" stop "$id"
	"$NEXCAGE" "${PVE[@]}" delete "$id"
	say "proxmox: a template that does not exist gives an error naming the fix"
	"$NEXCAGE" "${PVE[@]}" create --name bad --image local:vztmpl/ubuntu-22.04-standrd_22.04-1_amd64.tar.zst || echo "(exit code $?)"
}

main() {
	setup
	demo_oci runc runc-demo
	demo_oci crun crun-demo
	setup_pve
	demo_pve_bundle
	demo_pve_template
	say "done: every container was deleted"
	"$NEXCAGE" "${PVE[@]}" list
	"$WORK/sbin/pct" list
}

main "$@"
