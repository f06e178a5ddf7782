# Sourced by run.sh (not run): the builds: the controlplane binary from its Go module, and the
# image factory (pause, etcd, CoreDNS, raft-injector from the Dockerfile, the Ratis example),
# each image cached by the content that makes it.
# It uses run.sh's settings (here, root, cache, the images' names) and its log/die.

# --- builds -----------------------------------------------------------------------------

# The binary is cached outside the checkout, keyed by the sources, so fresh clones
# (CI) reuse it and a change to go.mod or main.go rebuilds it.
binary_path() {
  local key
  key=$( (echo "$build_flags_rev"; cat "$here/go.mod" "$here/go.sum" "$here/main.go") | sha256sum | cut -c1-16)
  echo "$cache/controlplane-$key"
}

go_build() { # module-dir output package
  local version pkg ldflags
  # Report the pinned release, as a release build would, so kubectl and clients see 1.32.
  version=$(sed -n 's/^[[:space:]]*k8s.io\/kubernetes v\([0-9.]*\)$/\1/p' "$here/go.mod")
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=v$version -X $pkg.gitMajor=${version%%.*}"
    ldflags+=" -X $pkg.gitMinor=$(cut -d. -f2 <<<"$version") -X $pkg.gitTreeState=clean"
  done
  # The module mirror has no checksum database for every module; go.sum pins the hashes.
  (cd "$1" && CGO_ENABLED=0 GOSUMDB=off GOFLAGS=-mod=readonly \
    go build -trimpath -ldflags="$ldflags" -o "$2.partial" "$3") || die "go build in $1 failed"
  mv "$2.partial" "$2"
}

build() {
  local bin
  bin=$(binary_path)
  if [[ -x $bin ]]; then
    echo "$bin"
    return
  fi
  command -v go >/dev/null || die "Go is needed to build the control plane (https://go.dev/doc/install)"
  mkdir -p "$cache"
  log "building etcd and the Kubernetes components (a cold build takes several minutes)"
  local started=$SECONDS
  go_build "$here" "$bin" .
  log "built $bin in $((SECONDS - started))s"
  echo "$bin"
}

# An image archive cached by the content that makes it: build_image NAME KEY-INPUTS... -- RECIPE...
# RECIPE runs only on a cache miss, with $out set to the archive to write.
cached_image() { # name key recipe-function
  local name=$1 key=$2 recipe=$3 out
  out="$cache/images/$name-$key.tar"
  if [[ ! -f $out ]]; then
    mkdir -p "$cache/images"
    log "building the $name image"
    "$recipe" "$out" >"$out.digest"
  fi
  echo "$out"
}

source_key() { (echo "$build_flags_rev"; cat "$@") | sha256sum | cut -c1-16; }

pause_recipe() {
  local work
  work=$(mktemp -d)
  gcc -static -Os -s -o "$work/pause" "$here/images/pause.c" || die "building pause failed"
  mkdir -p "$work/rootfs"
  mv "$work/pause" "$work/rootfs/pause"
  python3 "$here/images/oci.py" "$1" --ref "$pause_image" --rootfs "$work/rootfs" \
    --user 65535:65535 --entrypoint '["/pause"]'
  rm -rf "$work"
}

etcd_recipe() {
  local work
  work=$(mktemp -d)
  mkdir -p "$work/rootfs/usr/local/bin" "$work/rootfs/var/lib/etcd" "$work/rootfs/tmp"
  go_build "$here" "$work/rootfs/usr/local/bin/etcd" ./images/etcd
  ln -s etcd "$work/rootfs/usr/local/bin/etcdctl"
  python3 "$here/images/oci.py" "$1" --ref "$etcd_image" --rootfs "$work/rootfs" \
    --entrypoint '["/usr/local/bin/etcd"]' --env PATH=/usr/local/bin
  rm -rf "$work"
}

coredns_recipe() {
  local work
  work=$(mktemp -d)
  mkdir -p "$work/rootfs"
  go_build "$here/images/coredns" "$work/rootfs/coredns" .
  python3 "$here/images/oci.py" "$1" --ref "$coredns_image" --rootfs "$work/rootfs" \
    --user 65532:65532 --entrypoint '["/coredns"]'
  rm -rf "$work"
}

# The node's images: pause (the sandbox), etcd (what examples/etcd.yaml names) and CoreDNS.
images() {
  local oci=$here/images/oci.py
  cached_image pause "$(source_key "$here/images/pause.c" "$oci")" pause_recipe
  cached_image etcd "$(source_key "$here/go.mod" "$here/go.sum" "$here/images/etcd/main.go" "$oci")" etcd_recipe
  cached_image coredns "$(source_key "$here/images/coredns/"{go.mod,go.sum,main.go} "$oci")" coredns_recipe
}

# raft-injector's image: the Dockerfile's final stage, with its build stage's /out made on
# the host (a static musl binary). Built with the `e2e` profile (Cargo.toml): the release
# profile's code without whole-program LTO, which took most of a cold `make test`'s build
# time; the Dockerfile's release build is the one that ships.
injector_image_archive() {
  local stage target=x86_64-unknown-linux-musl
  rustup target list --installed 2>/dev/null | grep -qx "$target" || rustup target add "$target" >&2
  # A clean environment: called from `cargo test`, cargo's own variables would otherwise
  # make it rebuild C dependencies (ring) on every call.
  (cd "$root" && env -i PATH="$PATH" HOME="$HOME" ${CARGO_HOME:+CARGO_HOME="$CARGO_HOME"} \
    ${RUSTUP_HOME:+RUSTUP_HOME="$RUSTUP_HOME"} CC_x86_64_unknown_linux_musl=musl-gcc \
    cargo build --locked --profile e2e --target "$target" --bin raft-injector >&2) || die "cargo build for $target failed"
  stage=$(mktemp -d)
  install -D -m 0755 "$root/target/$target/e2e/raft-injector" "$stage/out/usr/local/bin/raft-injector"
  injector_recipe() {
    python3 "$here/images/oci.py" "$1" --ref "$injector_image" --dockerfile "$root/Dockerfile" --stage-root "$stage"
  }
  cached_image raft-injector "$(source_key "$stage/out/usr/local/bin/raft-injector" "$root/Dockerfile" "$here/images/oci.py")" injector_recipe
  rm -rf "$stage"
}

# The Ratis example's image (examples/ratis): the application jar and its dependencies on a
# JRE trimmed by jlink to the modules they use, plus the few glibc libraries that JRE links
# against, copied from this machine. No base image, no package manager, no shell.
ratis_image=ghcr.io/raft-injector/ratis-kv:0.1.0
ratis_modules=java.base,java.naming,java.sql,java.logging,jdk.httpserver,jdk.management,jdk.unsupported
ratis_image_archive() {
  local src=$root/examples/ratis key
  command -v mvn >/dev/null && command -v jlink >/dev/null || die "the Ratis example needs Maven and a JDK 17 (mvn, jlink)"
  key=$(source_key "$src/pom.xml" $(find "$src/src" -type f | sort) "$here/images/oci.py" \
    <(echo "$ratis_modules"; jlink --version; declare -f ratis_recipe))
  cached_image ratis-kv "$key" ratis_recipe
}

ratis_recipe() {
  local work rootfs lib
  work=$(mktemp -d)
  rootfs=$work/rootfs
  # Built in a copy, so the source tree gets no target/ directory.
  mkdir -p "$work/build"
  cp -r "$root/examples/ratis/pom.xml" "$root/examples/ratis/src" "$work/build/"
  (cd "$work/build" && mvn -B -q package >&2) || die "building examples/ratis with Maven failed"
  jlink --add-modules "$ratis_modules" --strip-debug --no-man-pages --no-header-files \
    --compress=2 --output "$rootfs/opt/java" >&2 || die "jlink failed"
  mkdir -p "$rootfs/app" "$rootfs/data" "$rootfs/tmp" "$rootfs/etc"
  chmod 1777 "$rootfs/tmp"
  cp "$work/build/target/ratis-kv.jar" "$rootfs/app/"
  cp -r "$work/build/target/lib" "$rootfs/app/lib"
  # The shared libraries the JRE loads (and their dependencies), at the paths ldd reports.
  for lib in $( (ldd "$rootfs/opt/java/bin/java"; find "$rootfs/opt/java/lib" -name '*.so' -exec ldd {} \;) 2>/dev/null |
    grep -o '/[^ ]*\.so[^ ]*' | sort -u); do
    [[ $lib == "$rootfs"* ]] && continue
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done
  printf 'root:x:0:0:root:/root:/sbin/nologin\nratis:x:10001:10001:ratis:/data:/sbin/nologin\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nratis:x:10001:\n' >"$rootfs/etc/group"
  python3 "$here/images/oci.py" "$1" --ref "$ratis_image" --rootfs "$rootfs" --user 10001:10001 \
    --entrypoint '["/opt/java/bin/java","-XX:+UseSerialGC","-XX:MaxRAMPercentage=70","-XX:-UsePerfData","-Xss512k","-jar","/app/ratis-kv.jar"]' \
    --env PATH=/opt/java/bin
  rm -rf "$work"
}

# Builds (or reuses) an example's image with ARCHIVE-FUNCTION, loads it into the node in
# DIR and prints NAME.
load_example_image() { # dir archive-function name
  local dir archive
  dir=$(cd "$1" && pwd)
  readyz "$dir" || die "no cluster is running in $dir; start it with: $0 up $dir"
  archive=$("$2")
  import_images "$dir" "$archive"
  echo "$3"
}

load_kafka() { load_example_image "$1" kafka_image_archive "$kafka_image"; }
load_ratis() { load_example_image "$1" ratis_image_archive "$ratis_image"; }


# Apache Kafka as the official image lays it out (/opt/kafka/bin, libs, config;
# /etc/kafka/docker/run as the command, user 1000), under the official image's name and tag,
# so examples/kafka.yaml runs unchanged here and elsewhere. Built from Maven Central's jars
# (images/kafka/pom.xml), a JRE trimmed by jlink, busybox for the tools' shell scripts, and
# this project's own scripts (images/kafka/); nothing is taken from Kafka's release tarball.
kafka_version=4.4.0
kafka_image=docker.io/apache/kafka:$kafka_version
kafka_modules=java.base,java.compiler,java.desktop,java.logging,java.management,java.naming,java.rmi,java.scripting,java.security.jgss,java.security.sasl,java.sql,java.xml,jdk.crypto.ec,jdk.management,jdk.unsupported,jdk.zipfs
# Tool script -> main class, all in Kafka's own jars.
kafka_tools="kafka-server-start.sh=kafka.Kafka
kafka-storage.sh=kafka.tools.StorageTool
kafka-metadata-quorum.sh=org.apache.kafka.tools.MetadataQuorumCommand
kafka-features.sh=org.apache.kafka.tools.FeatureCommand
kafka-cluster.sh=org.apache.kafka.tools.ClusterTool
kafka-topics.sh=org.apache.kafka.tools.TopicCommand
kafka-consumer-groups.sh=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand
kafka-console-producer.sh=org.apache.kafka.tools.ConsoleProducer
kafka-console-consumer.sh=org.apache.kafka.tools.consumer.ConsoleConsumer"
kafka_image_archive() {
  local src=$here/images/kafka key
  command -v mvn >/dev/null && command -v jlink >/dev/null || die "the Kafka image needs Maven and a JDK 17 (mvn, jlink)"
  [[ -x /bin/busybox ]] && ! ldd /bin/busybox >/dev/null 2>&1 ||
    die "the Kafka image needs a static /bin/busybox (Debian: busybox-static)"
  key=$(source_key "$src"/* "$here/images/oci.py" \
    <(echo "$kafka_modules $kafka_tools"; jlink --version; declare -f kafka_recipe))
  cached_image kafka "$key" kafka_recipe
}

kafka_recipe() {
  local work rootfs lib tool
  work=$(mktemp -d)
  rootfs=$work/rootfs
  mkdir -p "$work/build" "$rootfs"/{opt/kafka/bin,opt/kafka/config,etc/kafka/docker,bin,tmp,var/lib/kafka/data,mnt/shared/config,etc/kafka/secrets}
  cp "$here/images/kafka/pom.xml" "$work/build/"
  (cd "$work/build" && mvn -B -q dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$rootfs/opt/kafka/libs" >&2) || die "fetching Kafka's jars with Maven failed"
  jlink --add-modules "$kafka_modules" --strip-debug --no-man-pages --no-header-files \
    --compress=2 --output "$rootfs/opt/java/openjdk" >&2 || die "jlink failed"
  # The shared libraries the JRE loads (and their dependencies), at the paths ldd reports.
  for lib in $( (ldd "$rootfs/opt/java/openjdk/bin/java"; find "$rootfs/opt/java/openjdk/lib" -name '*.so' -exec ldd {} \;) 2>/dev/null |
    grep -o '/[^ ]*\.so[^ ]*' | sort -u); do
    [[ $lib == "$rootfs"* ]] && continue
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done
  cp /bin/busybox "$rootfs/bin/busybox"
  for tool in sh cat dirname basename ls mkdir rm env grep sed hostname id sleep; do
    ln -s busybox "$rootfs/bin/$tool"
  done
  install -m 0755 "$here/images/kafka/kafka-run-class.sh" "$rootfs/opt/kafka/bin/"
  while IFS== read -r tool class; do
    printf '#!/bin/sh\nexec "$(dirname "$0")/kafka-run-class.sh" %s "$@"\n' "$class" >"$rootfs/opt/kafka/bin/$tool"
    chmod 0755 "$rootfs/opt/kafka/bin/$tool"
  done <<<"$kafka_tools"
  install -m 0755 "$here/images/kafka/launch" "$rootfs/etc/kafka/docker/run"
  for file in server.properties log4j2.yaml tools-log4j2.yaml; do
    cp "$here/images/kafka/$file" "$rootfs/etc/kafka/docker/$file"
    cp "$here/images/kafka/$file" "$rootfs/opt/kafka/config/$file"
  done
  chmod 1777 "$rootfs/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nappuser:x:1000:1000:appuser:/home/appuser:/bin/sh\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nappuser:x:1000:\n' >"$rootfs/etc/group"
  # The image writer stores every file as root's; the directories Kafka writes as appuser
  # (the final configuration; the data directory when no volume covers it) are made
  # writable for it that way.
  chmod 0777 "$rootfs/opt/kafka/config" "$rootfs/var/lib/kafka/data" "$rootfs/mnt/shared/config"
  chmod 0666 "$rootfs"/opt/kafka/config/*
  python3 "$here/images/oci.py" "$1" --ref "$kafka_image" --rootfs "$rootfs" --user 1000:1000 \
    --cmd '["/etc/kafka/docker/run"]' --env PATH=/opt/kafka/bin:/opt/java/openjdk/bin:/bin
  rm -rf "$work"
}
