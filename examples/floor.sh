#!/usr/bin/env bash
# The physical floor: the tutorial cluster (1 manager, 1 worker, dataservice with 5 replicas)
# built by a plain script of docker commands, with the same node image and flags as shoal's dind
# driver, timed until 5/5 tasks run; then the same cluster built by `shoal apply`, timed the same
# way. Prints both and the ratio. Run from the repository root after `cargo build --release`
# and `images/dataservice/build.sh`:
#
#   examples/floor.sh            # 3 rounds each
#   ROUNDS=1 examples/floor.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
shoal="${SHOAL:-$root/target/release/shoal}"
rounds="${ROUNDS:-3}"
work="$(mktemp -d)"
state="/tmp/shoal-floor"
trap 'plain_down; [ -n "${repo:-}" ] && "$shoal" destroy --yes --repo "$repo" >/dev/null 2>&1; rm -rf "$work"' EXIT

now() { date +%s.%N; }

plain_down() {
  docker rm -f floor-m floor-w >/dev/null 2>&1 || true
  docker volume rm floor-m-data floor-w-data >/dev/null 2>&1 || true
  docker network rm floor-net >/dev/null 2>&1 || true
  rm -rf "$state"
}

wait_socket() {
  until DOCKER_HOST="unix://$state/$1/docker.sock" docker version >/dev/null 2>&1; do sleep 0.05; done
}

wait_running() { # DOCKER_HOST of a manager, service name, count
  until [ "$(DOCKER_HOST=$1 docker service ls --filter name="$2" --format '{{.Replicas}}')" = "$3/$3" ]; do
    sleep 0.1
  done
}

plain_up() {
  local image
  image="$(docker images shoal-node --format '{{.Repository}}:{{.Tag}}' | head -n1)"
  [ -n "$image" ] || { echo "no shoal-node image: run shoal once with the dind driver" >&2; exit 1; }
  docker network create --subnet 172.29.254.0/24 floor-net >/dev/null
  for n in m w; do
    mkdir -p "$state/$n"
    docker run -d --name "floor-$n" --hostname "floor-$n" --network floor-net \
      --cap-add ALL --cap-drop SYS_RESOURCE \
      --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
      --security-opt systempaths=unconfined --device-cgroup-rule 'a *:* rwm' \
      --cgroupns private --tmpfs /run --tmpfs /tmp \
      -v "floor-$n-data:/var/lib/docker" -v "$state/$n:/run/shoal-host" \
      -e DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 "$image" >/dev/null &
  done
  wait
  wait_socket m & wait_socket w & wait
  docker save dataservice:1 | DOCKER_HOST="unix://$state/m/docker.sock" docker load -q >/dev/null &
  docker save dataservice:1 | DOCKER_HOST="unix://$state/w/docker.sock" docker load -q >/dev/null &
  wait
  local m="unix://$state/m/docker.sock" ip token
  ip="$(docker inspect -f '{{(index .NetworkSettings.Networks "floor-net").IPAddress}}' floor-m)"
  DOCKER_HOST=$m docker swarm init --advertise-addr "$ip" --default-addr-pool 10.200.0.0/16 >/dev/null
  token="$(DOCKER_HOST=$m docker swarm join-token -q worker)"
  local wip
  wip="$(docker inspect -f '{{(index .NetworkSettings.Networks "floor-net").IPAddress}}' floor-w)"
  DOCKER_HOST="unix://$state/w/docker.sock" docker swarm join --advertise-addr "$wip" --token "$token" "$ip:2377" >/dev/null
  DOCKER_HOST=$m docker network create -d overlay dataapp_default >/dev/null
  DOCKER_HOST=$m docker service create -d --name dataapp_dataservice --replicas 5 \
    --restart-condition on-failure -p 4000:8080 --network dataapp_default dataservice:1 >/dev/null 2>&1
  wait_running "$m" dataapp_dataservice 5
}

shoal_up() {
  repo="$work/dataapp"
  mkdir -p "$repo"
  cp "$root/examples/dataapp/docker-compose.yml" "$repo/"
  printf 'cluster: floorshoal\ndriver: dind\ndriver_options:\n  preload_images: [dataservice:1]\nmachines:\n  vm-manager:\n    role: manager\n  vm-worker:\n    role: worker\n    count: 1\nstacks:\n  dataapp: docker-compose.yml\n' >"$repo/machines.yml"
  "$shoal" apply --yes --repo "$repo" >/dev/null 2>&1
  local host
  host="$("$shoal" env --repo "$repo" vm-manager | sed -n 's/^export DOCKER_HOST=//p')"
  wait_running "$host" dataapp_dataservice 5
}

plain_total=0
shoal_total=0
for round in $(seq "$rounds"); do
  plain_down
  start=$(now); plain_up; plain=$(echo "$(now) - $start" | bc)
  plain_down
  start=$(now); shoal_up; took=$(echo "$(now) - $start" | bc)
  "$shoal" destroy --yes --repo "$repo" >/dev/null 2>&1
  printf 'round %s: plain docker script %.2fs, shoal apply %.2fs\n' "$round" "$plain" "$took"
  plain_total=$(echo "$plain_total + $plain" | bc)
  shoal_total=$(echo "$shoal_total + $took" | bc)
done
printf 'mean: plain %.2fs, shoal %.2fs, ratio %.2f\n' \
  "$(echo "$plain_total / $rounds" | bc -l)" "$(echo "$shoal_total / $rounds" | bc -l)" \
  "$(echo "$shoal_total / $plain_total" | bc -l)"
