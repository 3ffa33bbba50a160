#!/bin/sh
# A shoal VM's second stage, run from its root disk under docker-init: mounts what dockerd
# needs, loads the kernel modules swarm uses, sets the address this VM was given, and keeps its
# dockerd running, reached over TLS on port 2376 with the cluster's certificates.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
. /etc/shoal/vm.env
hostname "$SHOAL_HOSTNAME"
echo "$SHOAL_HOSTNAME" > /etc/hostname
printf '127.0.0.1 localhost\n%s %s\n' "${SHOAL_ADDRESS%/*}" "$SHOAL_HOSTNAME" > /etc/hosts
for module in $(cat /etc/shoal/modules); do
  modprobe "$module" || echo "shoal-vm: cannot load $module"
done
ip link set lo up
ip link set eth0 up
ip addr add "$SHOAL_ADDRESS" dev eth0
echo "shoal-vm: $SHOAL_HOSTNAME at $SHOAL_ADDRESS, starting dockerd"
while true; do
  DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 dockerd \
    -H unix:///var/run/docker.sock -H tcp://0.0.0.0:2376 \
    --tlsverify --tlscacert /etc/shoal/tls/ca.pem \
    --tlscert /etc/shoal/tls/cert.pem --tlskey /etc/shoal/tls/key.pem \
    --label "io.shoal.cluster=$SHOAL_CLUSTER" --label "io.shoal.machine=$SHOAL_HOSTNAME"
  echo "shoal-vm: dockerd exited ($?), starting it again"
  sleep 2
done
