# garage-init image: FROM scratch, one static binary, a non-root user, no
# shell, nothing fetched at run time.
#
#   docker build -t garage-init:local .
#       BuildKit (what `docker compose build` uses): compiles in the `build`
#       stage (its `RUN --mount` cache mounts need BuildKit) and skips
#       `runtime-prebuilt`.
#   DOCKER_BUILDKIT=0 docker build --target runtime-prebuilt -t garage-init:local .
#       Offline: takes dist/garage-init, the static binary scripts/build-static
#       makes on the host. The legacy builder runs only the stages up to the
#       target, so no base image is pulled. Same runtime content as above.

ARG RUST_VERSION=1.95

# What every runtime image has besides the binary. SOURCE (the repository's
# URL) and REVISION (the commit built) are build arguments, empty unless given:
#   --build-arg SOURCE=https://... --build-arg REVISION="$(git rev-parse HEAD)"
FROM scratch AS runtime-base
ARG VERSION=0.1.0
ARG SOURCE=
ARG REVISION=
LABEL org.opencontainers.image.title="garage-init" \
      org.opencontainers.image.description="Bootstraps Garage: layout, bucket, access key and grants, proven by an S3 write" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}"
USER 65532:65532
ENTRYPOINT ["/garage-init"]

FROM runtime-base AS runtime-prebuilt
COPY dist/garage-init /garage-init

FROM rust:${RUST_VERSION}-bookworm AS build
# `--version` names this commit (the checkout itself is not in the context).
ARG REVISION=
ENV GARAGE_INIT_COMMIT=${REVISION}
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
# A static glibc binary (static-pie) runs FROM scratch and still resolves
# compose service names. The downloaded crates and the target directory are
# BuildKit cache mounts, kept between builds; they are not part of the
# stage's filesystem, so the binary is copied out in the same RUN.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-gnu" \
 && RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$target" \
 && cp "target/$target/release/garage-init" /garage-init

FROM runtime-base AS runtime
COPY --from=build /garage-init /garage-init
