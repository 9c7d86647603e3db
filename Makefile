.PHONY: test bench demo build

build:
	go build -o mailferry ./cmd/mailferry

test:
	./scripts/test.sh

bench:
	./scripts/bench.sh

demo:
	go run ./cmd/mailferry demo
