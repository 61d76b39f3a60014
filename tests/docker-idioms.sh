#!/usr/bin/env bash
# Common Docker idioms, written for `docker` and run unchanged with minirt:
# the test puts a `docker` on PATH that is minirt with a private root inside
# a test network namespace (tests/e2e/docker_cli.rs). Each check prints one
# "ok ..." line; the first failure stops the script with a message.
set -euo pipefail

fail() { echo "FAIL: $*" >&2; exit 1; }

docker network create --subnet 10.99.0.0/24 idiomnet >/dev/null
docker run -d --name web --net idiomnet -p 8080:80 busybox httpd -f -p 80 >/dev/null

ip=$(docker inspect -f '{{.NetworkSettings.IPAddress}}' web)
[ "$ip" = 10.99.0.2 ] || fail "IPAddress is '$ip'"
echo "ok inspect -f IPAddress"

pid=$(docker inspect --format '{{.State.Pid}}' web)
[ -d "/proc/$pid" ] || fail "State.Pid $pid is no process"
echo "ok inspect State.Pid"

[ "$(docker inspect -f '{{range $p, $b := .NetworkSettings.Ports}}{{$p}} {{(index $b 0).HostPort}}{{end}}' web)" = "80/tcp 8080" ] \
    || fail "Ports map"
echo "ok NetworkSettings.Ports map"

line=$(docker ps --format '{{.Names}}\t{{.Status}}')
case "$line" in web$'\t'Up*) ;; *) fail "ps --format gave '$line'" ;; esac
echo "ok ps --format Names/Status"

[ "$(docker ps | awk 'NR==2 {print $NF}')" = web ] || fail "last ps column is not NAMES"
echo "ok ps NAMES last"

[ "$(docker port web 80)" = 0.0.0.0:8080 ] || fail "port web 80 gave '$(docker port web 80)'"
echo "ok port web 80"

docker run -d --name job busybox sh -c 'sleep 0.3; exit 7' >/dev/null
[ "$(docker wait job)" = 7 ] || fail "wait"
echo "ok wait prints the exit code"

[ "$(docker ps -aq --filter exited=7)" = "$(docker inspect -f '{{.Id}}' job | cut -c1-12)" ] || fail "filter exited=7"
echo "ok ps --filter exited"

docker rm job >/dev/null
docker rm -f $(docker ps -aq) >/dev/null
docker network rm idiomnet >/dev/null
[ -z "$(docker ps -aq)" ] || fail "containers left"
echo "ok cleaned up"
