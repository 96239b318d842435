// Package yamlcheck decodes YAML input strictly and reports every problem
// as file:line: field: message, within limits on size, nesting and alias
// expansion. Topologies (lab) and director configs (director) use it.
package yamlcheck

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/goccy/go-yaml"
)

// FieldError is one validation problem, located by a YAML path such as
// "nodes[1].interfaces[0].mac" and, when parsed from a file, by file:line.
type FieldError struct {
	File string
	Line int
	Path string
	Msg  string
}

func (e *FieldError) Error() string {
	loc := ""
	if e.File != "" {
		loc = e.File + ":"
		if e.Line > 0 {
			loc += fmt.Sprint(e.Line) + ":"
		}
		loc += " "
	}
	if e.Path == "" {
		return loc + e.Msg
	}
	return loc + e.Path + ": " + e.Msg
}

// ErrInvalid marks every validation error (errors.Is).
var ErrInvalid = errors.New("invalid input")

// ValidationError holds every problem found; Error shows the first on one
// line and counts the rest.
type ValidationError []*FieldError

func (v ValidationError) Error() string {
	if len(v) == 1 {
		return v[0].Error()
	}
	return fmt.Sprintf("%s (and %d more)", v[0].Error(), len(v)-1)
}

// Is makes errors.Is(err, ErrInvalid) true.
func (v ValidationError) Is(target error) bool { return target == ErrInvalid }

// Decode decodes data into v strictly, then runs validate; every error
// is a ValidationError whose FieldErrors carry file:line. validate reports
// fields by YAML path ("nodes[1].mac"), which Decode turns into lines.
func Decode(file string, data []byte, v any, validate func() error) (err error) {
	// goccy/go-yaml v1.19.2 panics on some malformed input (a tag on an
	// empty sequence, found by FuzzParseConfig): a bad file must give an
	// error, not a crash.
	defer func() {
		if r := recover(); r != nil {
			err = ValidationError{{File: file, Msg: fmt.Sprintf("malformed YAML (the decoder failed: %v)", r)}}
		}
	}()
	if fe := checkYAMLLimits(data); fe != nil {
		fe.File = file
		return ValidationError{fe}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data), yaml.DisallowUnknownField())
	if err := dec.Decode(v); err != nil {
		fe := &FieldError{File: file, Msg: err.Error()}
		var ye yaml.Error
		if errors.As(err, &ye) {
			fe.Msg = ye.GetMessage()
			if tok := ye.GetToken(); tok != nil && tok.Position != nil {
				fe.Line = tok.Position.Line
			}
		}
		return ValidationError{fe}
	}
	err = validate()
	var verr ValidationError
	if errors.As(err, &verr) {
		locate(file, data, verr)
	}
	return err
}

// locate fills in File and Line of each error from its YAML path.
func locate(file string, data []byte, errs ValidationError) {
	for _, e := range errs {
		e.File = file
		p, err := yaml.PathString("$." + e.Path)
		if err != nil {
			continue
		}
		if n, err := p.ReadNode(bytes.NewReader(data)); err == nil && n != nil {
			if tok := n.GetToken(); tok != nil && tok.Position != nil {
				e.Line = tok.Position.Line
			}
		}
	}
}
