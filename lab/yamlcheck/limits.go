package yamlcheck

import (
	"fmt"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Limits on YAML input (topologies, director configs), checked before the
// decoder runs. Files come from users and CI, and goccy/go-yaml's parser
// takes time quadratic in nesting (20,000 nested '[' parse in 0.8 s here;
// a 500 KB file of them took 49 s and 20 GB), while its decoder expands
// aliases without bound (a 920-byte alias bomb: 34 s, 0.9 GB). Real files
// are far inside these.
const (
	MaxYAMLBytes = 1 << 20 // 1 MiB
	MaxYAMLDepth = 64      // nested collections
	MaxYAMLNodes = 100_000 // values, with every alias expanded
)

// checkYAMLLimits measures data against the limits: size first, depth
// with the (linear) lexer, then the parsed tree with aliases expanded.
func checkYAMLLimits(data []byte) *FieldError {
	if len(data) > MaxYAMLBytes {
		return &FieldError{Msg: fmt.Sprintf("file is %d bytes; the limit is %d", len(data), MaxYAMLBytes)}
	}
	if line, depth := yamlDepth(lexer.Tokenize(string(data))); depth > MaxYAMLDepth {
		return &FieldError{Line: line, Msg: fmt.Sprintf("nested %d deep or more; the limit is %d", depth, MaxYAMLDepth)}
	}
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil // the decoder reports it, with its position
	}
	c := &nodeCounter{anchors: map[string]ast.Node{}, sizes: map[string]int{}}
	for _, doc := range f.Docs {
		if doc.Body != nil {
			c.add(doc.Body)
		}
		if c.n > MaxYAMLNodes {
			return &FieldError{Line: c.line, Msg: fmt.Sprintf("more than %d values once aliases are expanded (an alias bomb?)", MaxYAMLNodes)}
		}
	}
	return nil
}

// yamlDepth is the deepest nesting the tokens show, flow ([, {) plus block
// (indentation levels), and the line where it is first reached; it stops
// counting past MaxYAMLDepth.
func yamlDepth(toks token.Tokens) (line, depth int) {
	flow, prevLine := 0, 0
	var indents []int // the columns of the open block levels
	for _, t := range toks {
		switch t.Type {
		case token.SequenceStartType, token.MappingStartType:
			flow++
		case token.SequenceEndType, token.MappingEndType:
			flow = max(flow-1, 0)
		}
		if p := t.Position; p != nil && p.Line != prevLine && flow == 0 {
			prevLine = p.Line
			for len(indents) > 0 && indents[len(indents)-1] >= p.Column {
				indents = indents[:len(indents)-1]
			}
			indents = append(indents, p.Column)
		}
		if d := flow + len(indents); d > depth {
			depth = d
			if t.Position != nil {
				line = t.Position.Line
			}
			if depth > MaxYAMLDepth {
				return line, depth
			}
		}
	}
	return line, depth
}

// nodeCounter counts a tree's values with each alias standing for its
// anchor's value, memoized per anchor, and stops past MaxYAMLNodes.
type nodeCounter struct {
	n       int
	line    int // where the count passed the limit
	anchors map[string]ast.Node
	sizes   map[string]int
}

func (c *nodeCounter) add(n ast.Node) { ast.Walk(c, n) }

func (c *nodeCounter) Visit(n ast.Node) ast.Visitor {
	if c.n > MaxYAMLNodes {
		return nil
	}
	c.n++
	switch n := n.(type) {
	case *ast.AnchorNode:
		c.anchors[n.Name.String()] = n.Value
	case *ast.AliasNode:
		name := n.Value.String()
		size, ok := c.sizes[name]
		if !ok {
			c.sizes[name] = 0 // an alias inside its own anchor counts once
			if v := c.anchors[name]; v != nil {
				sub := &nodeCounter{anchors: c.anchors, sizes: c.sizes}
				sub.add(v)
				size = sub.n
			}
			c.sizes[name] = size
		}
		c.n += size
		if c.n > MaxYAMLNodes && c.line == 0 && n.GetToken() != nil && n.GetToken().Position != nil {
			c.line = n.GetToken().Position.Line
		}
		return nil
	}
	return c
}
