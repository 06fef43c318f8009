#!/bin/sh
# The pre-encoded stream the publisher pushes with `-c copy`: 10 s of a test
# pattern and a tone, H.264 + AAC in FLV as an encoder would send over RTMP.
# Made once per guest at deploy time (user-space work, not measured).
set -eu
out=$1
[ -s "$out" ] && exit 0
ffmpeg -nostdin -hide_banner -loglevel error \
  -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100 \
  -t 10 -c:v libx264 -preset ultrafast -tune zerolatency -g 50 -b:v 2M -maxrate 2M -bufsize 1M \
  -c:a aac -b:a 128k -f flv "$out.part"
mv "$out.part" "$out"
