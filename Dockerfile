# The webhook and the in-pod helper are one static binary in one small image.
#   docker build -t REGISTRY/raft-injector:0.1.0 .
# The build image is pinned by digest (the tag is for people): a tag moved on the registry
# cannot change what the binary is built from. To bump it, pick the new tag and take its
# digest from the registry, e.g. `docker buildx imagetools inspect rust:1.92-alpine` or
# `crane digest rust:1.92-alpine`, and replace both here; it must be >= Cargo.toml's
# rust-version.
FROM rust:1.91-alpine@sha256:45c1c35cd364b8055e9e86f8ecd3e8c874b2dcb658d8a4f94b5d111aa0d651a2 AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
# Dependencies first, so source edits do not refetch them. .cargo/config.toml carries the
# allocator's build settings behind the README's memory figures.
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
RUN mkdir src benches && echo 'fn main() {}' > src/main.rs && touch src/lib.rs && echo 'fn main() {}' > benches/admission.rs \
    && cargo fetch --locked
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --locked --release --bin raft-injector \
    && install -D -m 0755 target/release/raft-injector /out/usr/local/bin/raft-injector

FROM scratch
COPY --from=build /out/ /
# Non-root; the injected init container copies the binary into the pod's shared volume.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/raft-injector"]
CMD ["serve"]
