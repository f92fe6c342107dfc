#!/usr/bin/env bash
# Installs what the foreign clients need from Debian: golang-go and
# golang-google-grpc-dev (grpc-go 1.33, built offline in GOPATH mode) for
# peers/go, python3 with venv for peers/python (grpcio itself comes from PyPI,
# into a venv, via make peers), nodejs and npm for peers/node (@grpc/grpc-js
# itself comes from npm, via make peers), a JDK and grpc-java 1.41 with its jars
# (libgrpc-java, libnetty-java, libguava-java, libperfmark-java, in /usr/share/java)
# for peers/java, and nghttp2-client for h2load, the reference client of make
# bench. As root it installs them; otherwise it says what to run.
set -euo pipefail
missing=()
command -v go >/dev/null 2>&1 || missing+=(golang-go)
[ -d /usr/share/gocode/src/google.golang.org/grpc ] || missing+=(golang-google-grpc-dev)
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v javac >/dev/null 2>&1 || missing+=(default-jdk-headless)
[ -f /usr/share/java/grpc-netty.jar ] || missing+=(libgrpc-java)
[ -f /usr/share/java/netty-codec-http2.jar ] || missing+=(libnetty-java)
[ -f /usr/share/java/guava.jar ] || missing+=(libguava-java)
[ -f /usr/share/java/perfmark-api.jar ] || missing+=(libperfmark-java)
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "peers need: ${missing[*]}; run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 2
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
