#!/bin/busybox sh
# A shoal VM's first stage, /init of its initramfs: loads the modules that reach the root disk,
# mounts it, copies this VM's settings (the initramfs's /shoal, appended per VM) onto it, and
# hands over to the disk's /sbin/shoal-vm-init under docker-init (tini), which reaps orphans.
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in $(cat /boot-modules); do
  insmod "/modules/$module" || echo "shoal-vm: cannot load $module"
done
tries=0
while [ ! -b /dev/vda ] && [ $tries -lt 100 ]; do sleep 0.1; tries=$((tries + 1)); done
if ! mount -t ext4 /dev/vda /newroot; then
  echo "shoal-vm: cannot mount the root disk /dev/vda; powering off"
  sleep 1
  poweroff -f
fi
mkdir -p /newroot/etc/shoal
cp -a /shoal/. /newroot/etc/shoal/
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /usr/bin/docker-init -- /sbin/shoal-vm-init
