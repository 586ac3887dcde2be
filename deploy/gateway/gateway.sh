#!/usr/bin/env bash
# deploy/gateway/gateway.sh - renders haproxy.cfg.in and runs HAProxy in front
# of a stable and a canary recd, splitting gRPC calls by weight (stable 100,
# canary 0 unless told). rollout.py then moves the weights through the
# runtime socket this writes in --dir.
#
# Usage:
#   deploy/gateway/gateway.sh --listen 127.0.0.1:8080 --stable 127.0.0.1:50051 \
#       --canary 127.0.0.1:50061 --dir /tmp/gw [--canary-weight 0] [--check-inter 1s] \
#       [--daemon | --check]
#
# --dir       where haproxy.cfg, admin.sock (the runtime API, mode 600) and,
#             with --daemon, haproxy.pid go; created (mode 700) if missing
# --daemon    start in the background and write --dir/haproxy.pid (stop it
#             with: kill "$(cat DIR/haproxy.pid)"); without it HAProxy runs
#             in the foreground (exec) and stops on SIGTERM or Ctrl-C
# --check     render and validate the configuration (haproxy -c), run nothing
#
# HAPROXY names the binary (default: haproxy on PATH, else /usr/sbin/haproxy).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2; exit "${1:-2}"; }
die() { echo "gateway: $*" >&2; exit 2; }

listen='' stable='' canary='' dir='' canary_weight=0 inter=1s mode=foreground
while [ $# -gt 0 ]; do
  case "$1" in
    --listen) listen=${2:?}; shift 2 ;;
    --stable) stable=${2:?}; shift 2 ;;
    --canary) canary=${2:?}; shift 2 ;;
    --dir) dir=${2:?}; shift 2 ;;
    --canary-weight) canary_weight=${2:?}; shift 2 ;;
    --check-inter) inter=${2:?}; shift 2 ;;
    --daemon) mode=daemon; shift ;;
    --check) mode=check; shift ;;
    -h|--help) usage 0 ;;
    *) echo "gateway: unknown argument '$1'" >&2; usage ;;
  esac
done
if [ -z "$listen" ] || [ -z "$stable" ] || [ -z "$canary" ] || [ -z "$dir" ]; then usage; fi

# What goes into the configuration is checked here, so that nothing an
# argument holds can add a directive of its own (a space or a newline would).
addr_re='^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$'
for a in "$listen" "$stable" "$canary"; do
  [[ $a =~ $addr_re ]] || die "'$a' is not host:port"
done
if ! [[ $canary_weight =~ ^[0-9]{1,3}$ ]] || [ "$canary_weight" -gt 100 ]; then
  die "--canary-weight must be 0..100, not '$canary_weight'"
fi
canary_weight=$((10#$canary_weight))  # "010" is ten, not octal eight
[[ $inter =~ ^[0-9]+(ms|s)?$ ]] || die "--check-inter must be a time such as 1s or 500ms"
[ -d "$dir" ] || (umask 077 && mkdir -p "$dir")
dir=$(cd "$dir" && pwd)
[[ $dir =~ ^[A-Za-z0-9._/-]+$ ]] || die "--dir '$dir' may hold only letters, digits and ._/-"
# sun_path holds 108 bytes with its NUL.
[ ${#dir} -le 96 ] || die "--dir '$dir' is too long for a unix socket path"

haproxy=${HAPROXY:-$(command -v haproxy || echo /usr/sbin/haproxy)}
[ -x "$haproxy" ] || die "no haproxy (apt-get install haproxy; deploy/setup.sh does)"

cfg=$dir/haproxy.cfg
sed -e "s|@LISTEN@|$listen|g" -e "s|@STABLE@|$stable|g" -e "s|@CANARY@|$canary|g" \
    -e "s|@SOCKET@|$dir/admin.sock|g" -e "s|@CHECK_INTER@|$inter|g" \
    -e "s|@STABLE_WEIGHT@|$((100 - canary_weight))|g" -e "s|@CANARY_WEIGHT@|$canary_weight|g" \
    "$here/haproxy.cfg.in" > "$cfg.tmp"
mv "$cfg.tmp" "$cfg"
"$haproxy" -c -q -f "$cfg" || die "$cfg is not valid (haproxy -c said why above)"

case "$mode" in
  check) echo "gateway: $cfg is valid" ;;
  daemon)
    rm -f "$dir/haproxy.pid"
    "$haproxy" -D -p "$dir/haproxy.pid" -f "$cfg"
    echo "gateway: listening on $listen (stable $stable, canary $canary at ${canary_weight}%)," \
         "runtime API $dir/admin.sock, pid $(cat "$dir/haproxy.pid")" ;;
  foreground)
    echo "gateway: listening on $listen (stable $stable, canary $canary at ${canary_weight}%)," \
         "runtime API $dir/admin.sock" >&2
    exec "$haproxy" -db -f "$cfg" ;;
esac
