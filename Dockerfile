# The pinflow worker image: one binary, every worker; `run --worker NAME` picks one.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY workers workers
COPY schemas schemas
COPY migrations migrations
RUN cargo build --release --locked --bin pinflow

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 pinflow \
    && mkdir /keys && chown pinflow /keys
COPY --from=build /src/target/release/pinflow /usr/local/bin/pinflow
USER pinflow
ENTRYPOINT ["pinflow"]
CMD ["run"]
