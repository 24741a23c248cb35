#!/usr/bin/env bash
# Services the integration tests need, on a Debian machine:
#   - dockerd (Debian's docker.io), socket /var/run/docker.sock
#   - the test image overthere-test:busybox, built locally from busybox-static
#   - nats-server with JetStream on 127.0.0.1:4222 (monitoring on 127.0.0.1:8222)
#   - the clients tests drive: ssh, sshpass, curl
#   - OpenSSH's sshd, the baseline of the SSH benchmark (started by the bench itself)
#
# Usage: bash scripts/services.sh up|down|status
#
#   up      install what is missing, start what is not running, build the
#           image if it is missing. Idempotent: reuses whatever already works.
#   down    stop the daemons that `up` started (found by their pid files).
#   status  show what is installed and running; exits 1 if something is not.
#
# Every step either makes its service work or exits non-zero with the reason:
# a missing service is a failure, never a skip. Nothing is exported; tests use
# the defaults below (or the same environment variables).
#
# Environment (all optional):
#   OVERTHERE_SERVICES_DIR  state dir for logs, pid files, NATS store (/tmp/overthere-services)
#   OVERTHERE_TEST_IMAGE    test image name (overthere-test:busybox)
#   NATS_HOST, NATS_PORT, NATS_HTTP_PORT   (127.0.0.1, 4222, 8222)
#   DOCKER                  docker client (/usr/bin/docker, Debian's, matching the engine)
#   SERVICES_TIMEOUT_S      how long to wait for a daemon to answer (60)
set -euo pipefail

STATE_DIR=${OVERTHERE_SERVICES_DIR:-/tmp/overthere-services}
TEST_IMAGE=${OVERTHERE_TEST_IMAGE:-overthere-test:busybox}
NATS_HOST=${NATS_HOST:-127.0.0.1}
NATS_PORT=${NATS_PORT:-4222}
NATS_HTTP_PORT=${NATS_HTTP_PORT:-8222}
DOCKER=${DOCKER:-/usr/bin/docker}
TIMEOUT_S=${SERVICES_TIMEOUT_S:-60}

# Bump when the image recipe below changes: an image with another recipe label is rebuilt.
IMAGE_RECIPE=1

DOCKERD_PIDFILE=$STATE_DIR/dockerd.pid
DOCKERD_LOG=$STATE_DIR/dockerd.log
NATS_PIDFILE=$STATE_DIR/nats-server.pid
NATS_LOG=$STATE_DIR/nats-server.log
NATS_STORE=$STATE_DIR/nats-store

# ---------------------------------------------------------------- helpers

say() { printf '[services] %s\n' "$*"; }
fail() {
  printf '[services] ERROR: %s\n' "$*" >&2
  exit 1
}

# Run a command as root: directly when we are root, else through sudo.
as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@" || fail "'sudo $*' failed. This script needs root for it: run it as root, or allow sudo without a password for this user."
  else
    fail "'$*' needs root, and sudo is not installed. Run this script as root (or install sudo)."
  fi
}

# Wait until "$@" succeeds, at most TIMEOUT_S seconds. $1 is a label for messages.
wait_for() {
  local label=$1
  shift
  local deadline=$((SECONDS + TIMEOUT_S))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 0.5
  done
  say "$label answers"
}

# The pid in a pid file if that process is alive and is `name`; nothing otherwise.
live_pid() {
  local pidfile=$1 name=$2 pid
  [[ -r $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/comm && $(</proc/"$pid"/comm) == "$name" ]] || return 1
  printf '%s\n' "$pid"
}

ensure_state_dir() {
  mkdir -p "$STATE_DIR" || fail "cannot create state dir $STATE_DIR (set OVERTHERE_SERVICES_DIR)"
}

# ---------------------------------------------------------------- packages

# Debian package -> a file that proves it is installed.
declare -A PACKAGE_FILES=(
  [docker.io]=/usr/sbin/dockerd
  [nats-server]=/usr/sbin/nats-server
  [busybox-static]=/bin/busybox
  [sshpass]=/usr/bin/sshpass
  [openssh-client]=/usr/bin/ssh
  [curl]=/usr/bin/curl
  [openssh-server]=/usr/sbin/sshd
  # smartmob-agent unpacks tar.bz2 and tar.xz archives through these.
  [bzip2]=/usr/bin/bzip2
  [xz-utils]=/usr/bin/xz
  # runtime-docker's disk quotas: a loop-mounted ext4 image per container.
  [e2fsprogs]=/sbin/mkfs.ext4
  [mount]=/sbin/losetup
  # transport-nats's TLS test makes a throwaway certificate.
  [openssl]=/usr/bin/openssl
)
PACKAGE_ORDER=(docker.io nats-server busybox-static sshpass openssh-client curl openssh-server bzip2 xz-utils e2fsprogs mount openssl)

package_installed() {
  local package=$1
  [[ -x ${PACKAGE_FILES[$package]} ]] || return 1
  # /bin/busybox may come from the dynamic `busybox` package; the image needs the static one.
  if [[ $package == busybox-static ]]; then
    [[ $(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null) == 'install ok installed' ]] || return 1
  fi
  # docker.io also provides the client the script uses.
  if [[ $package == docker.io ]]; then
    [[ -x $DOCKER ]] || return 1
  fi
}

ensure_packages() {
  local missing=() package
  for package in "${PACKAGE_ORDER[@]}"; do
    package_installed "$package" || missing+=("$package")
  done
  if ((${#missing[@]} == 0)); then
    say "packages: all present (${PACKAGE_ORDER[*]})"
    return
  fi
  command -v apt-get >/dev/null 2>&1 ||
    fail "missing ${missing[*]} and there is no apt-get: install them by hand (this script knows Debian only)"
  say "packages: installing ${missing[*]}"
  # needrestart (recommended by docker.io) must not ask or restart anything.
  as_root env DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get update -q ||
    fail "apt-get update failed"
  # Packages must not start their own services (openssh-server would start an
  # sshd on port 22 of every interface): what the tests need, this script starts
  # on loopback. A policy-rc.d that says no does that, for sysvinit and systemd.
  local policy=/usr/sbin/policy-rc.d placed_policy=''
  if [[ ! -e $policy ]]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy" ||
      fail "could not write $policy"
    placed_policy=1
  fi
  local installed=0
  as_root env DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 \
    apt-get install -y -q "${missing[@]}" </dev/null || installed=$?
  [[ -z $placed_policy ]] || as_root rm -f "$policy"
  ((installed == 0)) || fail "apt-get install ${missing[*]} failed"
  for package in "${missing[@]}"; do
    package_installed "$package" || fail "$package is still missing after apt-get install"
  done
  say "packages: installed ${missing[*]}"
}

# ---------------------------------------------------------------- docker

docker_answers() { timeout 20 "$DOCKER" info >/dev/null 2>&1; }

# Without systemd nothing may have mounted the cgroup hierarchies dockerd needs.
ensure_cgroups() {
  if [[ -e /sys/fs/cgroup/cgroup.controllers || -d /sys/fs/cgroup/memory ]]; then
    return
  fi
  command -v cgroupfs-mount >/dev/null 2>&1 ||
    fail "no cgroup hierarchy under /sys/fs/cgroup and no cgroupfs-mount to create one"
  say "docker: mounting cgroups (cgroupfs-mount)"
  as_root cgroupfs-mount || fail "cgroupfs-mount failed"
}

ensure_docker() {
  local pid
  if docker_answers; then
    if pid=$(live_pid "$DOCKERD_PIDFILE" dockerd); then
      say "docker: dockerd already running (pid $pid, started by this script)"
    else
      say "docker: engine already answering; reusing it"
    fi
    return
  fi
  if [[ -n ${DOCKER_HOST:-} ]]; then
    fail "docker: DOCKER_HOST=$DOCKER_HOST does not answer; this script only starts the local engine (unset DOCKER_HOST)"
  fi
  if pgrep -x dockerd >/dev/null 2>&1; then
    # Someone else's dockerd (an init script, say) may still be starting.
    say "docker: a dockerd runs already; waiting for it to answer"
    wait_for "docker: engine" docker_answers && return
    local why
    why=$(timeout 20 "$DOCKER" version -f '{{.Server.Version}}' 2>&1 | grep -v '^$' | tail -n 2 || true)
    fail "docker: dockerd runs but does not answer: $why
  (permission denied? add yourself to the docker group: sudo usermod -aG docker \$USER, then log in again)"
  fi

  ensure_cgroups
  say "docker: starting dockerd (log $DOCKERD_LOG)"
  local group_args=()
  # Let the invoking user (not only root) use the socket.
  if [[ $(id -u) -ne 0 ]]; then group_args=(--group "$(id -gn)"); fi
  : >"$DOCKERD_LOG"
  # setsid: the daemon outlives this script and its process group.
  as_root setsid -f dockerd --pidfile "$DOCKERD_PIDFILE" "${group_args[@]}" \
    </dev/null >>"$DOCKERD_LOG" 2>&1
  if ! wait_for "docker: engine" docker_answers; then
    say "docker: last lines of $DOCKERD_LOG:" >&2
    tail -n 30 "$DOCKERD_LOG" >&2 || true
    fail "docker: dockerd did not answer within ${TIMEOUT_S}s"
  fi
  pid=$(live_pid "$DOCKERD_PIDFILE" dockerd) || fail "docker: dockerd answers but wrote no pid file"
  say "docker: dockerd running (pid $pid), $("$DOCKER" version -f 'server {{.Server.Version}}' 2>/dev/null)"
}

# ---------------------------------------------------------------- test image

image_recipe() {
  "$DOCKER" image inspect -f '{{ index .Config.Labels "org.overthere.recipe" }}' "$TEST_IMAGE" 2>/dev/null
}

# A root filesystem: static busybox with every applet linked, merged /usr, /tmp, users.
make_rootfs() {
  local root=$1 applet
  mkdir -p "$root"/{usr/bin,etc,root,tmp,var/tmp,home,proc,sys,dev,work}
  ln -s usr/bin "$root/bin"
  ln -s usr/bin "$root/sbin"
  ln -s bin "$root/usr/sbin"
  cp /bin/busybox "$root/usr/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [[ $applet == busybox ]] || ln -s busybox "$root/usr/bin/$applet"
  done
  chmod 1777 "$root/tmp" "$root/var/tmp"
  chmod 700 "$root/root"
  cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
  cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
  printf 'overthere test image (busybox-static), recipe %s\n' "$IMAGE_RECIPE" >"$root/etc/overthere-test"
}

ensure_image() {
  local recipe
  recipe=$(image_recipe || true)
  if [[ $recipe == "$IMAGE_RECIPE" ]]; then
    say "image: $TEST_IMAGE present (recipe $IMAGE_RECIPE)"
    return
  fi
  if ldd /bin/busybox >/dev/null 2>&1; then
    fail "image: /bin/busybox is dynamically linked; install busybox-static"
  fi
  if [[ -n $recipe ]]; then
    say "image: $TEST_IMAGE has recipe '$recipe', rebuilding as recipe $IMAGE_RECIPE"
  else
    say "image: building $TEST_IMAGE from busybox-static"
  fi
  local build_dir
  build_dir=$(mktemp -d "${TMPDIR:-/tmp}/overthere-image.XXXXXX")
  # shellcheck disable=SC2064 # expand now: the variable is local
  trap "rm -rf '$build_dir'" EXIT
  make_rootfs "$build_dir/rootfs"
  tar -C "$build_dir/rootfs" --owner=0 --group=0 --numeric-owner -c . |
    "$DOCKER" import \
      --change 'CMD ["/bin/sh"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change "LABEL org.overthere.recipe=$IMAGE_RECIPE" \
      - "$TEST_IMAGE" >/dev/null || fail "image: docker import failed"
  rm -rf "$build_dir"
  trap - EXIT
  # Prove it runs before calling it done.
  local greeting
  greeting=$("$DOCKER" run --rm --network none "$TEST_IMAGE" sh -c 'echo ok') ||
    fail "image: $TEST_IMAGE was built but does not run"
  [[ $greeting == ok ]] || fail "image: $TEST_IMAGE said '$greeting' instead of 'ok'"
  say "image: built $TEST_IMAGE ($(/bin/busybox --list | wc -l) busybox applets)"
}

# ---------------------------------------------------------------- nats

# The INFO line a NATS server sends on connect; fails when nothing answers.
nats_info() {
  timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2" && IFS= read -r -t 3 line <&3 && printf "%s\n" "$line"' \
    _ "$NATS_HOST" "$NATS_PORT" 2>/dev/null
}

nats_ready() {
  local info
  info=$(nats_info) || return 1
  [[ $info == INFO* && $info == *'"jetstream":true'* ]] || return 1
  curl -fsS "http://$NATS_HOST:$NATS_HTTP_PORT/healthz" >/dev/null 2>&1
}

ensure_nats() {
  local pid info
  if info=$(nats_info); then
    [[ $info == INFO* ]] || fail "nats: something on $NATS_HOST:$NATS_PORT answers, but it is not NATS"
    [[ $info == *'"jetstream":true'* ]] ||
      fail "nats: the server on $NATS_HOST:$NATS_PORT runs without JetStream; stop it or restart it with -js"
    if pid=$(live_pid "$NATS_PIDFILE" nats-server); then
      say "nats: nats-server already running (pid $pid, started by this script)"
    else
      say "nats: a JetStream server already listens on $NATS_HOST:$NATS_PORT; reusing it"
    fi
    return
  fi
  mkdir -p "$NATS_STORE"
  say "nats: starting nats-server on $NATS_HOST:$NATS_PORT with JetStream (store $NATS_STORE, log $NATS_LOG)"
  rm -f "$NATS_PIDFILE"
  setsid -f nats-server \
    --addr "$NATS_HOST" --port "$NATS_PORT" --http_port "$NATS_HTTP_PORT" \
    --server_name overthere-test -js --store_dir "$NATS_STORE" \
    --pid "$NATS_PIDFILE" --log "$NATS_LOG" </dev/null >>"$NATS_LOG" 2>&1
  if ! wait_for "nats: nats-server" nats_ready; then
    say "nats: last lines of $NATS_LOG:" >&2
    tail -n 30 "$NATS_LOG" >&2 || true
    fail "nats: nats-server did not answer on $NATS_HOST:$NATS_PORT within ${TIMEOUT_S}s"
  fi
  pid=$(live_pid "$NATS_PIDFILE" nats-server) || fail "nats: nats-server answers but wrote no pid file"
  say "nats: nats-server running (pid $pid), nats://$NATS_HOST:$NATS_PORT, monitoring http://$NATS_HOST:$NATS_HTTP_PORT"
}

# ---------------------------------------------------------------- down

# Stop the process in a pid file if it is alive and is `name`; wait for it to go.
stop_pidfile() {
  local pidfile=$1 name=$2 pid
  if ! pid=$(live_pid "$pidfile" "$name"); then
    say "$name: not started by this script (no live pid in $pidfile)"
    rm -f "$pidfile" 2>/dev/null || true
    return
  fi
  say "$name: stopping pid $pid"
  if [[ -O /proc/$pid ]]; then kill -TERM "$pid"; else as_root kill -TERM "$pid"; fi
  local deadline=$((SECONDS + TIMEOUT_S))
  while [[ -e /proc/$pid ]]; do
    if ((SECONDS >= deadline)); then
      fail "$name: pid $pid still running ${TIMEOUT_S}s after SIGTERM"
    fi
    sleep 0.5
  done
  rm -f "$pidfile" 2>/dev/null || true
  say "$name: stopped"
}

# ---------------------------------------------------------------- status

status() {
  local ok=0 package pid
  for package in "${PACKAGE_ORDER[@]}"; do
    if package_installed "$package"; then
      say "package $package: installed"
    else
      say "package $package: MISSING"
      ok=1
    fi
  done
  if docker_answers; then
    local started='not started by this script'
    if pid=$(live_pid "$DOCKERD_PIDFILE" dockerd); then started="pid $pid, started by this script"; fi
    say "docker: up, server $("$DOCKER" version -f '{{.Server.Version}}' 2>/dev/null) ($started)"
    if [[ $(image_recipe || true) == "$IMAGE_RECIPE" ]]; then
      say "image: $TEST_IMAGE present"
    else
      say "image: $TEST_IMAGE MISSING (or an old recipe)"
      ok=1
    fi
  else
    say "docker: DOWN"
    say "image: unknown (docker is down)"
    ok=1
  fi
  if nats_ready; then
    local started='not started by this script'
    if pid=$(live_pid "$NATS_PIDFILE" nats-server); then started="pid $pid, started by this script"; fi
    say "nats: up with JetStream on $NATS_HOST:$NATS_PORT ($started)"
  else
    say "nats: DOWN (or no JetStream / no monitoring on $NATS_HOST:$NATS_HTTP_PORT)"
    ok=1
  fi
  return "$ok"
}

# ---------------------------------------------------------------- main

main() {
  local command=${1:-}
  case $command in
    up)
      ensure_state_dir
      ensure_packages
      ensure_docker
      ensure_image
      ensure_nats
      say "up: docker, $TEST_IMAGE and nats (nats://$NATS_HOST:$NATS_PORT) are ready"
      ;;
    down)
      stop_pidfile "$NATS_PIDFILE" nats-server
      stop_pidfile "$DOCKERD_PIDFILE" dockerd
      ;;
    status)
      status
      ;;
    *)
      printf 'usage: %s up|down|status\n' "${0##*/}" >&2
      exit 2
      ;;
  esac
}

main "$@"
