#!/usr/bin/env bash
# Builds a test Docker host image: the dind node image (dockerd from this machine's own
# binaries) plus Debian's sshd and its ldd closure, a static busybox for a shell, so the generic driver's tests can reach real
# engines over SSH. No registry: sshd comes from `apt-get download openssh-server libwrap0` and
# `dpkg -x`; the image is built FROM the local node image.
#
#   images/host/build.sh BASE_IMAGE TAG
#
# At run time the host needs (bind-mounted): /etc/ssh/ssh_host_ed25519_key (mode 600) and
# /root/.ssh/authorized_keys. Arguments after the image go to dockerd.
set -euo pipefail

base="$1"
tag="$2"
here="$(cd "$(dirname "$0")" && pwd)"
cache="${SHOAL_HOST_PKG_CACHE:-${TMPDIR:-/tmp}/shoal-host-pkgs}"
mkdir -p "$cache"
if ! ls "$cache"/openssh-server_*.deb >/dev/null 2>&1 || ! ls "$cache"/libwrap0_*.deb >/dev/null 2>&1; then
	(cd "$cache" && apt-get download openssh-server libwrap0 >/dev/null 2>&1) || {
		echo "images/host/build.sh: apt-get download openssh-server libwrap0 failed; run apt-get update" >&2
		exit 1
	}
fi

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
extract="$stage/extract"
root="$stage/root"
mkdir -p "$extract" "$root/usr/sbin" "$root/etc/ssh" "$root/root/.ssh" "$root/usr/bin"
for deb in "$cache"/openssh-server_*.deb "$cache"/libwrap0_*.deb; do
	dpkg -x "$deb" "$extract"
done
cp "$extract/usr/sbin/sshd" "$root/usr/sbin/sshd"

# The libraries sshd loads, at the paths ldd reports (libwrap from the extracted package).
LD_LIBRARY_PATH="$extract/lib/x86_64-linux-gnu:$extract/usr/lib/x86_64-linux-gnu" ldd "$extract/usr/sbin/sshd" |
	awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u |
	while read -r lib; do
		target="${lib#"$extract"}"
		mkdir -p "$root$(dirname "$target")"
		cp -L "$lib" "$root$target"
	done

printf 'root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
printf 'root:*:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\n' >"$root/etc/shadow"
chmod 600 "$root/etc/shadow"
cat >"$root/etc/ssh/sshd_config" <<'CONFIG'
Port 22
HostKey /etc/ssh/ssh_host_ed25519_key
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
AllowStreamLocalForwarding yes
AllowTcpForwarding yes
PidFile /run/sshd.pid
CONFIG
# The docker CLI, for `docker -H ssh://…` (it runs `docker system dial-stdio` on the host).
cp -L "$(command -v docker)" "$root/usr/bin/docker"
# A shell and a few tools for sshd's commands and the tests' `docker exec`: the node image has
# none (shoal's own binary is its init). Test hosts only; the dind driver needs no busybox.
busybox="$(command -v busybox || true)"
[ -n "$busybox" ] && ! ldd "$busybox" >/dev/null 2>&1 || {
	echo "images/host/build.sh: a static busybox is needed for the test hosts' shell: apt-get install busybox-static" >&2
	exit 1
}
cp -L "$busybox" "$root/usr/bin/busybox"
for applet in sh cat chmod ls mkdir rm kill sleep test echo ps; do
	ln -s busybox "$root/usr/bin/$applet"
done
cp "$here/entrypoint.sh" "$root/usr/bin/shoal-host-entrypoint"
chmod 755 "$root/usr/bin/shoal-host-entrypoint"

cat >"$stage/Dockerfile" <<DOCKERFILE
FROM $base
COPY root/ /
ENTRYPOINT ["/usr/bin/docker-init", "--", "/usr/bin/shoal-host-entrypoint"]
LABEL io.shoal.test-host=1
DOCKERFILE
DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$stage" >/dev/null
echo "built $tag from $base"
