// Package layout holds no code: its test checks the import rules of
// DESIGN.md ("arrows point down") over the whole module, so a change that
// breaks them fails `go test ./...`.
package layout
