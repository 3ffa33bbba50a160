#!/usr/bin/env bash
# Builds the demo service image dataservice:1 on the local Docker engine, with no registry:
# a statically linked build of examples/dataservice.rs is the image's only file.
#
#   images/dataservice/build.sh            # rustc on the one file: quick, std only
#   USE_CARGO=1 images/dataservice/build.sh  # cargo build of the crate's example (rebuilds every
#                                           # dependency statically, so it takes minutes)
#
# Afterwards list dataservice:1 in driver_options.preload_images to copy it into dind nodes.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
target=x86_64-unknown-linux-gnu
image="${IMAGE:-dataservice:1}"
out="${CARGO_TARGET_DIR:-$root/target}/dataservice"
mkdir -p "$out"

if [ "${USE_CARGO:-0}" = 1 ]; then
	RUSTFLAGS="-C target-feature=+crt-static" \
		cargo build --release --example dataservice --target "$target" --manifest-path "$root/Cargo.toml"
	binary="${CARGO_TARGET_DIR:-$root/target}/$target/release/examples/dataservice"
else
	rustc --edition 2021 --crate-name dataservice -C opt-level=3 -C strip=symbols \
		-C target-feature=+crt-static --target "$target" \
		"$root/examples/dataservice.rs" -o "$out/dataservice"
	binary="$out/dataservice"
fi

if file "$binary" 2>/dev/null | grep -q 'dynamically linked'; then
	echo "build.sh: $binary is dynamically linked; it cannot run alone in an image" >&2
	exit 1
fi

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp "$binary" "$stage/dataservice"
chmod 0755 "$stage/dataservice"
tar --owner=0 --group=0 -C "$stage" -c dataservice |
	docker import \
		-c 'ENTRYPOINT ["/dataservice"]' \
		-c 'EXPOSE 8080/tcp' \
		-c 'LABEL io.shoal.demo=1' \
		- "$image" >/dev/null
echo "built $image from $binary ($(du -h "$binary" | cut -f1))"
