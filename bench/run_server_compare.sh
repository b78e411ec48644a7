#!/bin/bash
# $1 = kind (python|rust), $2 = port
kind=$1; port=$2
if [ $kind = python ]; then
  /work/.venv/bin/durus -s --host 127.0.0.1 --port $port --logginglevel 30 > /tmp/srv-$kind.log 2>&1 &
else
  ${REPO:-.}/target/release/durus serve --host 127.0.0.1 --port $port > /tmp/srv-$kind.log 2>&1 &
fi
spid=$!
sleep 1.5
# the Python launcher may fork; find the listening process
/work/.venv/bin/python ${REPO:-.}/bench/server_compare.py $kind $port 20000
pid=$(ss -ltnp 2>/dev/null | grep ":$port " | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
[ -z "$pid" ] && pid=$spid
echo "{\"server\": \"$kind\", \"peak_rss_kb\": $(grep VmHWM /proc/$pid/status | awk '{print $2}')}"
${REPO:-.}/target/release/durus stop --port $port
wait $spid
