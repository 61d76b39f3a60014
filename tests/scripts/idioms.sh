#!/usr/bin/env bash
# Docker idioms from everyday scripts, run unchanged with minirt in place of
# docker: the test (tests/e2e/idioms.rs) puts a `minirt` on PATH that uses a
# private root inside a test network namespace, and this script only says
# `docker`. Runs in a scratch directory. Each check prints one "ok ..."
# line; the first failure stops the script with a message.
set -euo pipefail

docker() { minirt "$@"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
# Polls a condition (never a fixed sleep as synchronisation): up to 30 s.
wait_until() {
    local i
    for i in $(seq 300); do
        if eval "$1"; then return 0; fi
        sleep 0.1
    done
    fail "timed out waiting for: $1"
}

docker network create --subnet 10.98.0.0/24 idioms >/dev/null
docker run -d --name web --net idioms -p 8080:80 busybox httpd -f -p 80 >/dev/null

[ "$(docker inspect -f '{{.NetworkSettings.IPAddress}}' web)" = 10.98.0.2 ] || fail "IPAddress"
echo "ok inspect -f IPAddress"

line=$(docker ps --format '{{.Names}}\t{{.Status}}')
case "$line" in web$'\t'Up*) ;; *) fail "ps --format gave '$line'" ;; esac
echo "ok ps --format Names/Status"

[ "$(docker port web 80)" = 0.0.0.0:8080 ] || fail "port web 80"
echo "ok port web 80"

docker run -d --name job busybox sh -c 'exit 3' >/dev/null
[ "$(docker wait job)" = 3 ] || fail "wait"
echo "ok wait"

docker cp web:/etc/hostname ./hostname
[ "$(cat hostname)" = "$(docker exec web hostname)" ] || fail "cp out"
echo hello > greeting
docker cp greeting web:/tmp/
[ "$(docker exec web cat /tmp/greeting)" = hello ] || fail "cp in"
docker cp web:/tmp/greeting - | tar -x -O >copied
[ "$(cat copied)" = hello ] || fail "cp to a tar stream"
echo "ok cp both ways"

docker run -d --name talker busybox sh -c 'echo one; echo two; echo three' >/dev/null
docker wait talker >/dev/null
[ "$(docker logs --tail 1 talker)" = three ] || fail "logs --tail 1"
[ "$(docker logs -n 2 talker | head -1)" = two ] || fail "logs -n 2"
echo "ok logs --tail"

[ "$(docker stats --no-stream --format '{{.Name}}' web)" = web ] || fail "stats --no-stream"
docker stats --no-stream | head -1 | grep -q 'MEM USAGE / LIMIT' || fail "stats header"
echo "ok stats --no-stream"

docker pause web >/dev/null
case "$(docker ps --format '{{.Status}}' --filter name=web)" in *"(Paused)") ;; *) fail "paused status" ;; esac
[ "$(docker inspect -f '{{.State.Paused}}' web)" = true ] || fail "State.Paused"
if docker exec web true 2>/dev/null; then fail "exec while paused"; fi
docker unpause web >/dev/null
[ "$(docker exec web echo back)" = back ] || fail "unpause"
echo "ok pause/unpause"

docker volume create appdata >/dev/null
docker run --rm -v appdata:/data busybox sh -c 'echo saved > /data/state'
[ "$(docker run --rm -v appdata:/data busybox cat /data/state)" = saved ] || fail "volume data"
docker volume ls -q | grep -qx appdata || fail "volume ls"
[ "$(docker volume inspect -f '{{.Driver}}' appdata)" = local ] || fail "volume inspect"
docker volume rm appdata >/dev/null
echo "ok volume"

docker create --name later busybox echo created-then-started >/dev/null
[ "$(docker ps -a --filter name=later --format '{{.Status}}')" = Created ] || fail "create status"
[ "$(docker start -a later)" = created-then-started ] || fail "start -a"
echo "ok create + start -a"

docker run -d --name flaky --restart always busybox sh -c 'exit 1' >/dev/null
wait_until '[ "$(docker inspect -f "{{.RestartCount}}" flaky)" -ge 2 ]'
[ "$(docker inspect -f '{{.HostConfig.RestartPolicy.Name}}' flaky)" = always ] || fail "RestartPolicy"
docker stop flaky >/dev/null
count=$(docker inspect -f '{{.RestartCount}}' flaky)
[ "$(docker inspect -f '{{.State.Running}}' flaky)" = false ] || fail "stop ends restarts"
[ "$(docker inspect -f '{{.RestartCount}}' flaky)" = "$count" ] || fail "restarted after stop"
echo "ok --restart always"

docker run -d --name checked --health-cmd 'test -f /tmp/ok' --health-interval 200ms \
    --health-retries 1 busybox sh -c 'touch /tmp/ok; exec sleep 600' >/dev/null
wait_until '[ "$(docker inspect -f "{{.State.Health.Status}}" checked)" = healthy ]'
docker exec checked rm /tmp/ok
wait_until '[ "$(docker inspect -f "{{.State.Health.Status}}" checked)" = unhealthy ]'
case "$(docker ps --format '{{.Status}}' --filter name=checked)" in *"(unhealthy)") ;; *) fail "ps health" ;; esac
echo "ok health check goes unhealthy"

docker rm -f $(docker ps -aq) >/dev/null
docker network rm idioms >/dev/null
[ -z "$(docker ps -aq)" ] || fail "containers left"
[ -z "$(docker volume ls -q)" ] || fail "volumes left"
echo "ok cleaned up"
