#!/bin/sh
# One measurement of the RTMP re-proxy, inside the guest, over 127.0.0.1 only:
# C consumers play rtmp://127.0.0.1/live/s while a publisher pushes the pre-encoded
# file (looped, `-c copy`) to /ingest/s for D seconds of wall time, as fast as the
# server takes it (READRATE 0) or at READRATE times real time. Prints one JSON
# object: what a streaming engineer reads.
#   bitrate        bits/s delivered to a consumer (mean over consumers)
#   speed          media seconds a consumer received per wall second (mean)
#   stalls         0.5 s progress periods in which a consumer received nothing,
#                  summed over consumers (between its first and last media)
#   frames_lost    share of the published video frames a consumer did not get
#                  (nginx-rtmp drops frames for players that fall behind; mean)
#   cpu_per_stream nginx's CPU (user + system, master and worker) per stream,
#                  in % of one CPU, over the measurement (streams: consumers + the
#                  re-proxy hop)
# Usage: stream.sh SOURCE.flv CONSUMERS SECONDS READRATE NGINX_PID_FILE
set -u
src=$1 C=$2 D=$3 R=$4 pidfile=$5
dir=$(mktemp -d "${TMPDIR:-/tmp}/rtmp.XXXXXX")
trap 'rm -rf "$dir"' EXIT
now() { date +%s.%N; }
# CPU ticks of nginx's master and its workers (fields 14 and 15 of /proc/PID/stat).
nginx_ticks() {
  m=$(cat "$pidfile" 2>/dev/null) || { echo 0; return; }
  for p in $m $(pgrep -P "$m"); do cat /proc/$p/stat 2>/dev/null; done |
    awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); t += f[12] + f[13] } END { print t + 0 }'
}
i=0; while [ ! -s "$pidfile" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
hz=$(getconf CLK_TCK)
t0=$(now); c0=$(nginx_ticks)
i=1
while [ $i -le "$C" ]; do
  ( s=$(now)
    timeout $((D + 30)) ffmpeg -nostdin -hide_banner -loglevel error -rw_timeout 15000000 \
      -i rtmp://127.0.0.1:1935/live/s -c copy -f null - \
      -progress "$dir/c$i.progress" -stats_period 0.5 2> "$dir/c$i.err"
    echo "$s $(now)" > "$dir/c$i.time" ) &
  i=$((i+1))
done
sleep 1
rate=""; [ "$R" != 0 ] && rate="-readrate $R"
timeout $((D + 20)) ffmpeg -nostdin -hide_banner -loglevel error $rate -stream_loop -1 -i "$src" \
  -c copy -f flv -progress "$dir/pub.progress" rtmp://127.0.0.1:1935/ingest/s 2> "$dir/pub.err" &
pub=$!
# SIGTERM: a background job of sh ignores SIGINT; ffmpeg ends the stream cleanly on either.
sleep "$D"; kill -TERM $pub 2>/dev/null; wait $pub 2>/dev/null
wait
t1=$(now); c1=$(nginx_ticks)
pub_frames=$(awk -F= '$1 == "frame" { f = $2 } END { print f + 0 }' "$dir/pub.progress" 2>/dev/null)
for i in $(seq 1 "$C"); do
  [ -s "$dir/c$i.progress" ] || { echo "consumer $i got nothing:" >&2; cat "$dir/c$i.err" >&2; continue; }
  set -- $(cat "$dir/c$i.time")
  awk -F= -v s0="$1" -v s1="$2" -v pf="$pub_frames" '
    $1 == "out_time_us" { t = $2 + 0; if (t > last) { if (seen && stuck) stalls += stuck; stuck = 0; seen = 1; last = t } }
    $1 == "progress" { if (seen && t <= prev) stuck++; prev = t }
    $1 == "total_size" { size = $2 + 0 }
    $1 == "frame" { fr = $2 + 0 }
    END { wall = s1 - s0; lost = (pf > 0) ? (pf - fr) / pf : 0; if (lost < 0) lost = 0
          printf "%f %f %d %f\n", size * 8 / wall, last / 1e6 / wall, stalls, lost }' "$dir/c$i.progress"
done > "$dir/per-consumer"
awk -v c0="$c0" -v c1="$c1" -v hz="$hz" -v t0="$t0" -v t1="$t1" -v streams="$((C + 1))" -v want="$C" '
  { n++; b += $1; s += $2; st += $3; l += $4 }
  END { wall = t1 - t0; if (n < want) { printf "only %d of %d consumers received the stream\n", n, want > "/dev/stderr" }
        if (n == 0) exit 1
        printf "{\"bitrate\": %.0f, \"speed\": %.3f, \"stalls\": %d, \"frames_lost\": %.4f, \"cpu_per_stream\": %.2f, \"consumers\": %d}\n",
          b / n, s / n, st, l / n, (c1 - c0) / hz / wall * 100 / streams, n }' "$dir/per-consumer"
