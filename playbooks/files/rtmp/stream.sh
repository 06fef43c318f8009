#!/bin/bash
# One measurement of the RTMP re-proxy, inside the guest, over 127.0.0.1 only:
# C consumers play rtmp://127.0.0.1/live/s while a publisher pushes the pre-encoded
# file (looped, `-c copy`) to /ingest/s, as fast as the server takes it (READRATE 0)
# or at READRATE times real time. The measured window is D seconds from the
# publisher's first packet (starting ffmpeg takes seconds on a slow guest; that is
# not measured) until the consumers have received the end of the stream. Prints one
# JSON object, what a streaming engineer reads:
#   bitrate        bits/s delivered to a consumer over the window (mean over consumers)
#   speed          media seconds a consumer received per second of the window (mean)
#   frames_lost    share of the published video frames a consumer did not get
#                  (nginx-rtmp drops frames for players that fall behind; mean)
#   cpu_per_stream nginx's CPU (user + system, master and worker) over the window
#                  per stream, in % of one CPU (streams: the consumers and the
#                  re-proxy hop)
# Usage: stream.sh SOURCE.flv CONSUMERS SECONDS READRATE NGINX_PID_FILE
set -u
src=$1 C=$2 D=$3 R=$4 pidfile=$5
dir=$(mktemp -d "${TMPDIR:-/tmp}/rtmp.XXXXXX")
trap 'rm -rf "$dir"' EXIT
now() { date +%s.%N; }
# CPU ticks of nginx's master and its workers (fields 14 and 15 of /proc/PID/stat).
nginx_ticks() {
  local m p
  m=$(cat "$pidfile" 2>/dev/null) || { echo 0; return; }
  for p in $m $(pgrep -P "$m"); do cat /proc/$p/stat 2>/dev/null; done |
    awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); t += f[12] + f[13] } END { print t + 0 }'
}
# Waits (bounded) until a command succeeds; the waits are before the window.
until_ok() { local i=0; until "$@"; do sleep 0.2; i=$((i + 1)); [ $i -lt 600 ] || return 1; done; }
until_ok test -s "$pidfile" || { echo "nginx did not start (no $pidfile)" >&2; exit 1; }
listening() { ss -Hltn 'sport = :1935' | grep -q .; }
until_ok listening || { echo "nginx does not listen on 127.0.0.1:1935" >&2; exit 1; }
# nginx-rtmp keeps a player of an ended stream waiting for the next publisher (and
# ffmpeg blocked in a read does not end on one SIGTERM): a consumer never ends by
# itself. It has received the stream when its progress file stops growing; then it
# is killed. Each runs under a hard time limit too.
cons=()
for i in $(seq 1 "$C"); do
  timeout -k 5 $((D + 180)) ffmpeg -nostdin -hide_banner -loglevel error \
    -progress "$dir/c$i.progress" -stats_period 0.25 -rw_timeout 120000000 \
    -i rtmp://127.0.0.1:1935/live/s -c copy -f flv -y /dev/null 2> "$dir/c$i.err" &
  cons+=($!)
done
playing() { [ "$(ss -Htn state established 'dport = :1935' | wc -l)" -ge "$C" ]; }
until_ok playing || { echo "the $C consumers did not all connect" >&2; exit 1; }
rate=(); [ "$R" != 0 ] && rate=(-readrate "$R")
timeout -k 5 $((D + 120)) ffmpeg -nostdin -hide_banner -loglevel error \
  -progress "$dir/pub.progress" -stats_period 0.25 "${rate[@]}" -stream_loop -1 -i "$src" \
  -c copy -f flv rtmp://127.0.0.1:1935/ingest/s 2> "$dir/pub.err" &
pub=$!
until_ok test -s "$dir/pub.progress" || { echo "the publisher never sent:" >&2; cat "$dir/pub.err" >&2; exit 1; }
t0=$(now); c0=$(nginx_ticks)
sleep "$D"
# SIGTERM: the publisher ends the stream cleanly (its read of a file is never blocked).
kill -TERM $pub 2>/dev/null; wait $pub 2>/dev/null
# Drained: no progress file grew for a second (bounded: 60 s).
sizes() { stat -c %s "$dir"/c*.progress 2>/dev/null | tr '\n' ' '; }
prev=$(sizes) still=0
for _ in $(seq 1 240); do
  sleep 0.25; cur=$(sizes)
  if [ "$cur" = "$prev" ]; then still=$((still + 1)); [ $still -ge 4 ] && break; else still=0 prev=$cur; fi
done
t1=$(stat -c %.9Y "$dir"/c*.progress | sort -n | tail -n 1); c1=$(nginx_ticks)
for p in "${cons[@]}"; do pkill -KILL -P "$p" 2>/dev/null; done
{ wait; } 2>/dev/null  # no "Killed" line per consumer
pub_frames=$(awk -F= '$1 == "frame" { f = $2 } END { print f + 0 }' "$dir/pub.progress")
for i in $(seq 1 "$C"); do
  [ -s "$dir/c$i.progress" ] || { echo "consumer $i got nothing:" >&2; cat "$dir/c$i.err" >&2; continue; }
  awk -F= -v t0="$t0" -v t1="$(stat -c %.9Y "$dir/c$i.progress")" -v pf="$pub_frames" '
    $1 == "total_size" { size = $2 + 0 }
    $1 == "out_time_us" { t = $2 + 0 }
    $1 == "frame" { fr = $2 + 0 }
    END { wall = t1 - t0; lost = (pf > 0) ? (pf - fr) / pf : 0; if (lost < 0) lost = 0
          printf "%f %f %f\n", size * 8 / wall, t / 1e6 / wall, lost }' "$dir/c$i.progress"
done > "$dir/per-consumer"
awk -v c0="$c0" -v c1="$c1" -v hz="$(getconf CLK_TCK)" -v t0="$t0" -v t1="$t1" -v streams="$((C + 1))" -v want="$C" '
  { n++; b += $1; s += $2; l += $3 }
  END { wall = t1 - t0
        if (n < want) printf "only %d of %d consumers received the stream\n", n, want > "/dev/stderr"
        if (n == 0) exit 1
        printf "{\"bitrate\": %.0f, \"speed\": %.3f, \"frames_lost\": %.4f, \"cpu_per_stream\": %.2f, \"consumers\": %d, \"window_s\": %.2f}\n",
          b / n, s / n, l / n, (c1 - c0) / hz / wall * 100 / streams, n, wall }' "$dir/per-consumer"
