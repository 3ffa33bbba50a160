#!/bin/sh
# shoal node entrypoint. docker-init runs as PID 1 and starts this script, which turns the
# container into something dockerd accepts as a host, then replaces itself with dockerd.
#
# Environment:
#   SHOAL_STORAGE_DRIVER  force a storage driver instead of probing overlay2
#   SHOAL_IPTABLES        force the iptables backend: nft or legacy
#   SHOAL_SOCKET_GID      group id given to the engine's sockets (the host's docker group)
#   SHOAL_REGISTRY_FORWARD  PORT:ADDRESS:TARGET_PORT: the node's 127.0.0.1:PORT reaches the
#                         cluster's registry at ADDRESS:TARGET_PORT, as the host's does
# Arguments are passed on to dockerd.
set -eu

export container=docker
HOST_DIR=/run/shoal-host

say() {
	echo "shoal-node: $*" >&2
}

# /tmp must be a fresh tmpfs; the driver mounts one, this covers hand-made runs.
prepare_tmp() {
	mountpoint -q /tmp || mount -t tmpfs -o mode=1777 tmpfs /tmp
}

# Without --privileged (the capability-list fallback), /sys and the cgroup mounts arrive
# read-only. A plain "remount,rw" of a cgroup mount fails with EBUSY; a bind remount works.
make_writable() {
	if grep -q '^[^ ]* /sys sysfs ro[, ]' /proc/mounts; then
		mount -o remount,rw /sys || say "could not remount /sys read-write"
	fi
	grep ' /sys/fs/cgroup' /proc/mounts | while read -r _ target _ options _; do
		case "$options" in
		ro | ro,*)
			mount -o remount,bind,rw "$target" || say "could not remount $target read-write"
			;;
		esac
	done
}

# cgroup v2: a cgroup that holds processes cannot enable controllers for its children.
# Park every process of our root cgroup in a leaf, then delegate all controllers.
nest_cgroup_v2() {
	top=/sys/fs/cgroup
	[ -f "$top/cgroup.controllers" ] || return 0
	leaf="$top/shoal-entry"
	mkdir -p "$leaf"
	attempt=0
	while :; do
		for pid in $(cat "$top/cgroup.procs"); do
			echo "$pid" >"$leaf/cgroup.procs" 2>/dev/null || :
		done
		wanted=""
		for controller in $(cat "$top/cgroup.controllers"); do
			wanted="$wanted +$controller"
		done
		if [ -z "$wanted" ] || echo "$wanted" >"$top/cgroup.subtree_control" 2>/dev/null; then
			return 0
		fi
		attempt=$((attempt + 1))
		if [ "$attempt" -ge 50 ]; then
			say "could not delegate cgroup controllers; inner containers get no limits"
			return 0
		fi
	done
}

# Leftovers of an earlier run: pid files and the host-facing socket.
clear_stale_files() {
	find /run -name '*.pid' -type f -delete 2>/dev/null || :
	mkdir -p "$HOST_DIR"
	rm -f "$HOST_DIR/docker.sock"
}

# Point iptables at a backend the kernel supports: nft unless it fails, then legacy.
choose_iptables() {
	backend="${SHOAL_IPTABLES:-}"
	if [ -z "$backend" ]; then
		if [ -x /usr/sbin/xtables-nft-multi ] && /usr/sbin/xtables-nft-multi iptables -w -n -L >/dev/null 2>&1; then
			backend=nft
		elif [ -x /usr/sbin/xtables-legacy-multi ]; then
			backend=legacy
		else
			backend=nft
		fi
	fi
	[ -x "/usr/sbin/xtables-$backend-multi" ] || return 0
	for tool in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
		ln -sf "xtables-$backend-multi" "/usr/sbin/$tool"
	done
}

# The cluster's registry is published on the host's 127.0.0.1:PORT; the same name must work
# here, so locally made connections to 127.0.0.1:PORT are sent on to the registry container.
# route_localnet lets them leave with a loopback source; the INPUT rule keeps other hosts and
# task containers from reaching the node's loopback services through it (as kube-proxy does).
forward_registry() {
	[ -n "${SHOAL_REGISTRY_FORWARD:-}" ] || return 0
	port=${SHOAL_REGISTRY_FORWARD%%:*}
	target=${SHOAL_REGISTRY_FORWARD#*:}
	address=${target%:*}
	if ! {
		echo 1 >/proc/sys/net/ipv4/conf/all/route_localnet &&
			add_rule filter INPUT ! -i lo -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP &&
			add_rule nat OUTPUT -d 127.0.0.1/32 -p tcp --dport "$port" -j DNAT --to-destination "$target" &&
			add_rule nat POSTROUTING -s 127.0.0.1/32 -d "$address/32" -p tcp -j MASQUERADE
	}; then
		say "cannot forward 127.0.0.1:$port to the cluster's registry at $target (iptables or /proc/sys refused)"
		exit 1
	fi
}

# Appends an iptables rule to TABLE's CHAIN unless it is there already.
add_rule() {
	table=$1 chain=$2
	shift 2
	iptables -w -t "$table" -C "$chain" "$@" 2>/dev/null || iptables -w -t "$table" -A "$chain" "$@"
}

# overlay2 needs /var/lib/docker on a real filesystem (the driver mounts a volume there);
# when an overlay mount cannot be made there, fall back to vfs.
storage_driver() {
	if [ -n "${SHOAL_STORAGE_DRIVER:-}" ]; then
		echo "$SHOAL_STORAGE_DRIVER"
		return
	fi
	probe=/var/lib/docker/.shoal-overlay-probe
	rm -rf "$probe"
	mkdir -p "$probe/lower" "$probe/upper" "$probe/work" "$probe/merged"
	if mount -t overlay shoal-probe -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" "$probe/merged" 2>/dev/null; then
		umount "$probe/merged"
		driver=overlay2
	else
		say "overlay mounts fail on /var/lib/docker; using the vfs storage driver (slow, every layer is copied)"
		driver=vfs
	fi
	rm -rf "$probe"
	echo "$driver"
}

prepare_tmp
make_writable
nest_cgroup_v2
mount --make-rshared /
clear_stale_files
choose_iptables
forward_registry
driver=$(storage_driver)

# The sockets belong to root's group unless the host's docker group id is passed in.
exec dockerd \
	-H unix:///var/run/docker.sock \
	-H "unix://$HOST_DIR/docker.sock" \
	--group "${SHOAL_SOCKET_GID:-0}" \
	--storage-driver "$driver" \
	"$@"
