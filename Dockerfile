# The webhook and the in-pod helper are one static binary in one small image.
#   docker build -t REGISTRY/raft-injector:0.1.0 .
FROM rust:1-alpine AS build
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
