#!/bin/sh
# Test Docker host: starts sshd (when its host key is mounted), then becomes the dind node's
# init (shoal's own binary), which turns into dockerd with the arguments given.
set -eu
if [ -f /etc/ssh/ssh_host_ed25519_key ]; then
	mkdir -p /run/sshd
	chmod 755 /run/sshd
	/usr/sbin/sshd -E /tmp/sshd.log
fi
exec /usr/bin/shoal node-init "$@"
