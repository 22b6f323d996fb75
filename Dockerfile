# syntax=docker/dockerfile:1
# Build: docker build -t pgsignal .
# Run:   docker run --rm -v $PWD/pgsignal.yaml:/etc/pgsignal/pgsignal.yaml:ro \
#          -e ONESIGNAL_API_KEY -p 9187:9187 pgsignal run --config /etc/pgsignal/pgsignal.yaml

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/pgsignal ./cmd/pgsignal

FROM gcr.io/distroless/static-debian12:nonroot
# distroless/static carries the CA certificates (for OneSignal's TLS) and
# /etc/passwd; no shell is needed at run time.
COPY --from=build /out/pgsignal /usr/local/bin/pgsignal
USER 65532:65532
EXPOSE 9187
ENTRYPOINT ["pgsignal"]
CMD ["run", "--config", "/etc/pgsignal/pgsignal.yaml"]
