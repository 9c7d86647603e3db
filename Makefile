.PHONY: test bench demo build docs

build:
	go build -buildvcs=auto -o mailferry ./cmd/mailferry

test:
	./scripts/test.sh

bench:
	./scripts/bench.sh

demo:
	go run ./cmd/mailferry demo

# docs/ (Markdown reference) and schema/ (JSON Schemas) from the code.
docs:
	go generate ./cmd/mailferry
	go test ./cmd/mailferry -run TestSchemasUpToDate -update
