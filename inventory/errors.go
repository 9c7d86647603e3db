package inventory

import (
	"fmt"
	"strings"
)

// maxErrors bounds how many problems one load reports; past it, fixing the
// first ones is the useful next step.
const maxErrors = 50

// FieldError is one problem in an inventory, located by file, line and field.
type FieldError struct {
	File  string // empty for inventories built in code
	Line  int    // 1-based; 0 when unknown
	Field string // e.g. "clusters[b].capacity.bytes"; empty for file-level problems
	Msg   string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one inventory, in file order. Load and
// Validate return it (as an error) when there is at least one.
type Errors []*FieldError

func (es Errors) Error() string {
	lines := make([]string, 0, len(es)+1)
	for _, e := range es {
		lines = append(lines, e.Error())
	}
	if len(es) >= maxErrors {
		lines = append(lines, "(more problems not shown)")
	}
	return strings.Join(lines, "\n")
}

func (es *Errors) add(line int, field, msg string) {
	if len(*es) < maxErrors {
		*es = append(*es, &FieldError{Line: line, Field: field, Msg: msg})
	}
}

func (es Errors) err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// inFile sets the file name of errors that have none.
func (es Errors) inFile(file string) Errors {
	for _, e := range es {
		if e.File == "" {
			e.File = file
		}
	}
	return es
}
