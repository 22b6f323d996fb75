# syntax=docker/dockerfile:1
# Build: docker build --build-arg VERSION=1.2.3 --build-arg REVISION=$(git rev-parse HEAD) -t pgsignal .
# Run:   docker run --rm -v $PWD/pgsignal.yaml:/etc/pgsignal/pgsignal.yaml:ro \
#          -e ONESIGNAL_API_KEY -p 8187:8187 pgsignal run --config /etc/pgsignal/pgsignal.yaml
# In the image the metrics server listens on 0.0.0.0:8187: PGSIGNAL_LISTEN is
# the default of server.listen (127.0.0.1:8187 outside the image); a
# server.listen in the config wins. Another port: -e PGSIGNAL_LISTEN=0.0.0.0:9000
# -p 9000:9000; no server: -e PGSIGNAL_LISTEN=

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=""
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" \
      -o /out/pgsignal ./cmd/pgsignal

FROM gcr.io/distroless/static-debian12:nonroot
# distroless/static carries the CA certificates (for OneSignal's TLS) and
# /etc/passwd; no shell is needed at run time.
COPY --from=build /out/pgsignal /usr/local/bin/pgsignal
USER 65532:65532
ENV PGSIGNAL_LISTEN=0.0.0.0:8187
EXPOSE 8187
ENTRYPOINT ["pgsignal"]
CMD ["run", "--config", "/etc/pgsignal/pgsignal.yaml"]
