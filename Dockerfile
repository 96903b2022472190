# Pulse in a container: one binary, every asset embedded.
FROM golang:1.26-alpine AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /pulse ./cmd/pulse

# Alpine rather than scratch: health checks need wget.
FROM alpine:3.21
RUN adduser -D -H pulse && mkdir /data && chown pulse /data
COPY --from=build /pulse /usr/local/bin/pulse
USER pulse
ENV PULSE_DATA_DIR=/data
ENTRYPOINT ["pulse"]
