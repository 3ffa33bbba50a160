#!/usr/bin/env bash
# Builds the image shoal:local on the local Docker engine with no registry and no base image:
# the release binary plus the shared libraries `ldd` lists for it (its ldd closure), the CA
# certificates for https remotes, and the OpenSSH client, a shell and a passwd entry for ssh://
# hosts, imported as a root filesystem (the way images/dataservice/build.sh builds the demo
# service).
#
#   examples/selfhost/build-image.sh              # builds target/release/shoal first
#   BINARY=/path/to/shoal examples/selfhost/build-image.sh
#   IMAGE=registry.example.com/shoal:1 examples/selfhost/build-image.sh
#
# Then copy it to the managers: docker save shoal:local | ssh deploy@mgr1 docker load
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
image="${IMAGE:-shoal:local}"
if [ -z "${BINARY:-}" ]; then
	cargo build --release --locked --bin shoal --manifest-path "$root/Cargo.toml"
	BINARY="${CARGO_TARGET_DIR:-$root/target}/release/shoal"
fi

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/usr/local/bin" "$stage/etc/ssl/certs" "$stage/root/.ssh" "$stage/tmp" \
	"$stage/var/cache/shoal"
chmod 1777 "$stage/tmp"
cp "$BINARY" "$stage/usr/local/bin/shoal"
chmod 0755 "$stage/usr/local/bin/shoal"

# The OpenSSH client and a shell, for machines reached over ssh:// (shoal runs one
# `sh -c 'ssh -N -L …'` per host to forward its engine's socket).
mkdir -p "$stage/bin" "$stage/usr/bin"
ssh_client="$(command -v ssh || true)"
if [ -n "$ssh_client" ]; then
	cp -L "$ssh_client" "$stage/usr/bin/ssh"
else
	echo "build-image.sh: no ssh client here; ssh:// hosts will be unreachable from the image (install openssh-client)" >&2
fi
cp -L /bin/sh "$stage/bin/sh"

# The dynamic loader and every library the binaries load, at the paths ldd reports.
for binary in "$BINARY" /bin/sh $ssh_client; do
	ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
done | sort -u | while read -r lib; do
	mkdir -p "$stage$(dirname "$lib")"
	cp -L "$lib" "$stage$lib"
done

if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
	cp -L /etc/ssl/certs/ca-certificates.crt "$stage/etc/ssl/certs/"
else
	echo "build-image.sh: no /etc/ssl/certs/ca-certificates.crt here; https remotes will fail (install ca-certificates)" >&2
fi
echo 'root:x:0:0:root:/root:/usr/local/bin/shoal' >"$stage/etc/passwd"
echo 'root:x:0:' >"$stage/etc/group"
# A repository bind-mounted from the host belongs to another user than the container's root;
# git (and libgit2) refuse such repositories unless they are listed as safe.
printf '[safe]\n\tdirectory = *\n' >"$stage/root/.gitconfig"

tar --owner=0 --group=0 -C "$stage" -c . |
	docker import \
		-c 'ENTRYPOINT ["/usr/local/bin/shoal"]' \
		-c 'CMD ["watch", "--listen", "0.0.0.0:9808"]' \
		-c 'ENV HOME=/root SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
		-c 'EXPOSE 9808/tcp' \
		-c 'LABEL io.shoal.image=watch' \
		- "$image" >/dev/null
echo "built $image from $BINARY ($(du -sh "$stage" | cut -f1) in all)"
