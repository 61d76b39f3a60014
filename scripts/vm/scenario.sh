# The cgroup-v2 scenario, run by the VM's init (scripts/vm/init) on a kernel
# booted with cgroup_no_v1=all. Each check prints "VMTEST: ok NAME" or
# "VMTEST: FAIL NAME: what happened"; scripts/vm-test counts them.
M="minirt --root /var/lib/minirt --run-root /run/minirt"

# field KEY: the first value of KEY in the JSON on stdin (minirt inspect).
field() { grep -o "\"$1\": *[^,}]*" | head -1 | sed 's/^[^:]*: *//; s/"//g'; }
t() { cut -d' ' -f1 /proc/uptime; }
ok() { echo "VMTEST: ok $1 (at $(t)s)"; }
fail() { echo "VMTEST: FAIL $1 (at $(t)s): $(echo "$2" | tr '\n' '|' | cut -c1-600)"; }
# check NAME CONDITION-COMMAND DETAIL
check() { if eval "$2"; then ok "$1"; else fail "$1" "$3"; fi; }

# The host is cgroup2 only: no v1 hierarchy, the controllers minirt uses offered.
v1=$(grep -c ' - cgroup ' /proc/self/mountinfo)
ctl=$(cat /sys/fs/cgroup/cgroup.controllers)
check pure-v2 '[ "$v1" = 0 ] && echo " $ctl " | grep -q " memory " && echo " $ctl " | grep -q " pids "' \
    "v1 mounts: $v1, controllers: $ctl"

# The cgroups module's own real-kernel tests (limits, OOM, kill, the device
# filter and its release), now on a unified host; the pure ones ran on the host.
out=$(minirt-unit cgroups::kernel_tests:: --test-threads=1 2>&1); rc=$?
check unit-tests '[ $rc = 0 ]' "$(echo "$out" | grep -E 'FAILED|panicked|failed|test result' | head -20)"
echo "$out" | grep -E '^test .* \.\.\. ' | sed 's/^/VMTEST: unit: /'

out=$($M run --rm --net none busybox echo hello 2>&1); rc=$?
check run-rm '[ $rc = 0 ] && [ "$out" = hello ]' "rc=$rc out=$out"

# Limits land in the unified hierarchy with Docker's values.
$M run -d --name lim --net none -m 48m --cpus 0.5 --pids-limit 33 busybox sleep 600 >/dev/null 2>/tmp/err
pid=$($M inspect lim 2>&1 | field Pid)
cg=$(sed -n 's/^0:://p' /proc/$pid/cgroup 2>/dev/null)
d=/sys/fs/cgroup$cg
vals="$(cat $d/memory.max $d/memory.swap.max $d/cpu.max $d/pids.max 2>&1 | tr '\n' ' ')"
check limits '[ -n "$cg" ] && [ "$vals" = "50331648 0 50000 100000 33 " ]' \
    "pid=$pid cgroup=$cg values=$vals $(cat /tmp/err)"
# exec on a cgroup2-only host: the process is born in the container's
# cgroup (its own namespace's root there), and counts there.
out=$($M exec lim cat /proc/self/cgroup 2>&1); rc=$?
$M exec -d lim sleep 600 >/dev/null 2>&1
n=$(wc -l < $d/cgroup.procs 2>/dev/null)
check exec-in-cgroup '[ $rc = 0 ] && [ "$out" = "0::/" ] && [ "$n" = 2 ]' "rc=$rc out=$out procs=$n"
$M rm -f lim >/dev/null 2>&1
check limits-dir-removed '[ -n "$cg" ] && [ ! -e "$d" ]' "$d is still there"

# -m 32m and 64 MiB allocated: killed by the OOM killer, exit 137, OOMKilled.
out=$($M run --name oom --net none -m 32m busybox dd if=/dev/zero of=/dev/null bs=64M count=1 2>&1); rc=$?
oom=$($M inspect oom 2>&1 | field OOMKilled)
check oom '[ $rc = 137 ] && [ "$oom" = true ]' "rc=$rc OOMKilled=$oom out=$out"
$M rm oom >/dev/null 2>&1

# --pids-limit: the same fork loop gets all 60 sleepers without it.
script='(for i in $(seq 60); do sleep 1000 & done) 2>/dev/null; set -- /proc/[0-9]*; echo $#'
lim=$($M run --rm --net none --pids-limit 20 busybox sh -c "$script" 2>&1)
free=$($M run --rm --net none busybox sh -c "$script" 2>&1)
check pids-limit '[ "$lim" -le 20 ] 2>/dev/null && [ "$free" -ge 60 ] 2>/dev/null' \
    "with the limit: $lim, without: $free"

# Devices: a disk node can be made (mknod is allowed) but not opened; the
# allowed ones work. /dev/kmsg opened write-only needs no capability, so
# only the device filter can refuse it. Outside a container (and with
# --privileged) the same opens are not refused with EPERM.
out=$($M run --rm --net none busybox sh -c 'mknod /dev/sdX b 8 0 && head -c1 /dev/sdX' 2>&1); rc=$?
check device-denied '[ $rc != 0 ] && echo "$out" | grep -q "Operation not permitted"' "rc=$rc out=$out"
out=$($M run --rm --net none busybox sh -c 'mknod /dev/kmsg2 c 1 11 && echo vmtest > /dev/kmsg2' 2>&1); rc=$?
check device-denied-char '[ $rc != 0 ] && echo "$out" | grep -q "Operation not permitted"' "rc=$rc out=$out"
out=$($M run --rm --net none busybox sh -c 'head -c1 /dev/null && echo x > /dev/null && head -c4 /dev/zero | wc -c && mknod /tmp/n c 1 3 && echo y > /tmp/n && echo fine' 2>&1); rc=$?
check device-allowed '[ $rc = 0 ] && echo "$out" | grep -q fine' "rc=$rc out=$out"
mknod /tmp/sdX b 8 0; out=$(head -c1 /tmp/sdX 2>&1)
mknod /tmp/kmsg2 c 1 11; out2=$(echo vmtest 2>&1 > /tmp/kmsg2 && echo written)
check device-control '! echo "$out" | grep -q "Operation not permitted" && [ "$out2" = written ]' \
    "outside a container: disk: $out; kmsg: $out2"
out=$($M run --rm --net none --privileged busybox sh -c 'mknod /dev/kmsg2 c 1 11 && echo vmtest > /dev/kmsg2 && echo written' 2>&1); rc=$?
check device-privileged '[ $rc = 0 ] && echo "$out" | grep -q written' "rc=$rc out=$out"

# A bridge network with a published port, reached from the VM's own side.
$M network create --subnet 10.88.0.0/24 vmnet >/dev/null 2>/tmp/err
$M run -d --name web --net vmnet -p 8080:80 busybox sh -c \
    'mkdir /www && echo served-from-v2 > /www/index.html && exec httpd -f -p 80 -h /www' >/dev/null 2>>/tmp/err
ip=$($M inspect web 2>&1 | field IPAddress)
# (busybox-static's wget crashes in getaddrinfo: HTTP by hand over nc.)
get() { printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 "$1" "$2" 2>&1; }
got=""
for i in $(seq 50); do
    got=$(get 127.0.0.1 8080) && echo "$got" | grep -q served-from-v2 && break
    sleep 0.2
done
check port-map-loopback 'echo "$got" | grep -q "^served-from-v2"' "got=$got $(cat /tmp/err)"
got=$(get "$ip" 80)
check container-ip 'echo "$got" | grep -q "^served-from-v2"' "ip=$ip got=$got"
$M rm -f web >/dev/null 2>&1
$M network rm vmnet >/dev/null 2>&1

# Nothing left: no container, no cgroup directory, no bridge or veth.
left=$($M ps -aq 2>&1)
check no-containers '[ -z "$left" ]' "$left"
# The instance's parent (minirt-<tag>) stays, empty, for the next start, as
# Docker's "docker" parent does; nothing else may be there.
dirs=$(find /sys/fs/cgroup -mindepth 1 -type d ! -path '/sys/fs/cgroup/minirt-*' 2>&1;
       find /sys/fs/cgroup -mindepth 2 -type d -path '/sys/fs/cgroup/minirt-*/*' 2>&1)
check no-cgroups '[ -z "$dirs" ]' "$dirs"
links=$(ip -o link show | grep -v ': lo:')
check no-links '[ -z "$links" ]' "$links"
