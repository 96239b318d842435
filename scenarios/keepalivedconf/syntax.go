// Package keepalivedconf reads keepalived.conf the way keepalived does:
// lines of whitespace-separated words, the first a keyword, "{" and "}"
// opening and closing blocks, "#" and "!" comments, double-quoted words,
// `include` with globs relative to the including file, and `$NAME=`
// definitions used as $NAME or ${NAME}. Constructs it does not model
// (`@` conditionals, `~SEQ`, multi-line definitions) are refused with
// file:line rather than guessed at.
//
// Parse gives a syntax tree of Nodes; Model turns it into a typed Config
// (global_defs, vrrp_instance, vrrp_sync_group, vrrp_script,
// virtual_server_group, virtual_server with its real_servers and checkers)
// and keeps every keyword it does not model in Config.Unmodelled.
package keepalivedconf

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Limits on input, as for the lab's YAML: a config is small; a bigger one
// is a mistake or an attack, refused before it costs memory.
const (
	MaxFileBytes = 1 << 20
	MaxFiles     = 64
	MaxDepth     = 32 // nested blocks
	MaxWords     = 200000
	// MaxExpandedBytes bounds the lines once $NAME definitions are used.
	MaxExpandedBytes = 4 * MaxFileBytes
)

// Pos is where a line is: file and 1-based line.
type Pos struct {
	File string `json:"file"`
	Line int    `json:"line"`
}

func (p Pos) String() string {
	if p.Line == 0 { // the file as a whole
		return p.File
	}
	return fmt.Sprintf("%s:%d", p.File, p.Line)
}

// Error is bad input at a place: exit 2 material.
type Error struct {
	Pos Pos
	Msg string
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// ErrInvalid matches every *Error with errors.Is.
var ErrInvalid = errors.New("invalid keepalived config")

func (e *Error) Is(target error) bool { return target == ErrInvalid }

// Errorf is an *Error at p, its message cleaned: control bytes escaped,
// cut to a few hundred bytes.
func Errorf(p Pos, format string, args ...any) error {
	return &Error{Pos: p, Msg: Clean(fmt.Sprintf(format, args...))}
}

// Node is one statement: a keyword, its arguments, and its block if it
// has one ("{ ... }", on the same line or the next).
type Node struct {
	Pos      Pos
	Key      string
	Args     []string
	Block    []*Node
	HasBlock bool
}

// line is one logical line's words, after comments, definitions and
// includes.
type line struct {
	pos   Pos
	words []string
}

// reader reads files into lines, following includes.
type reader struct {
	noIncludes bool   // Parse's text stands alone
	mainDir    string // the main file's directory
	defs       map[string]string
	lines      []line
	files      []string
	includes   []Include
	words      int
	expanded   int // bytes of lines, $ definitions used
}

// Include is an include line: where, the pattern as written, and the
// pattern as read (see ConfigDir).
type Include struct {
	Pos      Pos    `json:"pos"`
	Pattern  string `json:"pattern"`
	Resolved string `json:"resolved"`
}

// ConfigDir is where keepalived's configs live on a box. An include by
// an absolute path under it is read from under the main file's
// directory, where that holds such files: a copy of a box's
// /etc/keepalived keeps its includes beside the main file, and this
// machine's own /etc/keepalived is another box's.
const ConfigDir = "/etc/keepalived/"

// Tree is a config's syntax tree and the files and includes it came from.
type Tree struct {
	Nodes    []*Node
	Files    []string // the main file first
	Includes []Include
	// Outside are the files included from outside the main file's
	// directory tree: lvslab quotes nothing of them (an include of
	// /etc/shadow, say), in errors or in --json.
	Outside []string
}

// ParseFile reads path and every file it includes into a syntax tree.
func ParseFile(path string) (*Tree, error) {
	r := &reader{defs: map[string]string{}, mainDir: filepath.Dir(path)}
	err := r.readFile(path, Pos{File: path}, 0)
	t := &Tree{Files: r.files, Includes: r.includes, Outside: outside(path, r.files)}
	if err == nil {
		t.Nodes, err = build(r.lines)
	}
	return t, t.redact(err)
}

// outside are those of files not under main's directory.
func outside(main string, files []string) []string {
	root, err := filepath.Abs(filepath.Dir(main))
	if err != nil {
		return files
	}
	var out []string
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if rel, _ := filepath.Rel(root, abs); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			out = append(out, f)
		}
	}
	return out
}

// redact is err with nothing quoted of a file outside the config's
// directory: its position and why not.
func (t *Tree) redact(err error) error {
	var e *Error
	if errors.As(err, &e) && slices.Contains(t.Outside, e.Pos.File) {
		return &Error{Pos: e.Pos, Msg: "not valid here (not quoted: the file is outside the config's directory)"}
	}
	return err
}

// Parse reads one file's text, which may not include others, into a
// syntax tree.
func Parse(name string, text []byte) ([]*Node, error) {
	r := &reader{defs: map[string]string{}, noIncludes: true}
	if err := r.readText(name, text, 0); err != nil {
		return nil, err
	}
	return build(r.lines)
}

func (r *reader) readFile(path string, from Pos, depth int) error {
	if len(r.files) >= MaxFiles {
		return Errorf(from, "more than %d config files", MaxFiles)
	}
	text, err := ReadFile(path, MaxFileBytes)
	if err != nil {
		return Errorf(from, "%v", err)
	}
	r.files = append(r.files, path)
	return r.readText(path, text, depth)
}

var (
	defLine = regexp.MustCompile(`^\$([A-Za-z_][A-Za-z0-9_]*)=(.*)$`)
	defUse  = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)
)

func (r *reader) readText(name string, text []byte, depth int) error {
	if len(text) > MaxFileBytes {
		return Errorf(Pos{File: name}, "more than %d bytes", MaxFileBytes)
	}
	if line, why := misread(text); why != "" {
		return Errorf(Pos{File: name, Line: line}, "%s", why)
	}
	for i, raw := range strings.Split(string(text), "\n") {
		pos := Pos{File: name, Line: i + 1}
		s := strings.TrimSpace(strings.TrimSuffix(raw, "\r"))
		if s == "" {
			continue
		}
		switch {
		case s[0] == '@':
			return Errorf(pos, "conditional configuration (%s) is not supported: remove the @ lines that do not apply", strings.Fields(s)[0])
		case strings.HasPrefix(s, "~SEQ"):
			return Errorf(pos, "~SEQ is not supported")
		}
		if m := defLine.FindStringSubmatch(s); m != nil {
			v := strings.TrimSpace(m[2])
			if v == "" || strings.HasSuffix(v, `\`) {
				return Errorf(pos, "multi-line definition of $%s is not supported", m[1])
			}
			r.defs[m[1]] = v
			continue
		}
		// A $NAME with no definition stays as written, as keepalived leaves
		// it (a shell variable in a notify command, say).
		grown := len(s)
		s = defUse.ReplaceAllStringFunc(s, func(use string) string {
			m := defUse.FindStringSubmatch(use)
			v, ok := r.defs[m[1]+m[2]]
			if !ok {
				return use
			}
			if grown += len(v); grown > MaxFileBytes {
				return "" // stop growing: refused below
			}
			return v
		})
		if r.expanded += grown; grown > MaxFileBytes || r.expanded > MaxExpandedBytes {
			return Errorf(pos, "the $ definitions used make the config more than %d bytes", MaxExpandedBytes)
		}
		words, err := split(s)
		if err != nil {
			return Errorf(pos, "%v", err)
		}
		if len(words) == 0 {
			continue
		}
		if r.words += len(words); r.words > MaxWords {
			return Errorf(pos, "more than %d words", MaxWords)
		}
		if words[0] == "include" {
			if err := r.include(name, pos, words, depth); err != nil {
				return err
			}
			continue
		}
		r.lines = append(r.lines, line{pos, words})
	}
	return nil
}

// include reads the files an include line at pos of file name matches,
// relative to that file, or under the main config's directory for a path
// under ConfigDir that exists there.
func (r *reader) include(name string, pos Pos, words []string, depth int) error {
	if len(words) != 2 {
		return Errorf(pos, "include takes one file or glob")
	}
	if r.noIncludes {
		return Errorf(pos, "include: this text stands alone (read the file with ParseFile)")
	}
	if depth >= 8 {
		return Errorf(pos, "includes nested more than 8 deep")
	}
	pattern := words[1]
	if !filepath.IsAbs(pattern) {
		pattern = filepath.Join(filepath.Dir(name), pattern)
	} else if rest, ok := strings.CutPrefix(pattern, ConfigDir); ok && r.mainDir != "" {
		if local := filepath.Join(r.mainDir, rest); hasMatch(local) {
			pattern = local
		}
	}
	r.includes = append(r.includes, Include{pos, words[1], pattern})
	matches, err := filepath.Glob(pattern)
	if err != nil {
		return Errorf(pos, "include %s: %v", words[1], err)
	}
	if len(matches) == 0 {
		return Errorf(pos, "include %s matches no file", words[1])
	}
	for _, m := range matches {
		if err := r.readFile(m, pos, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// hasMatch reports whether pattern matches a file.
func hasMatch(pattern string) bool {
	m, err := filepath.Glob(pattern)
	return err == nil && len(m) > 0
}

// split cuts a line into words as keepalived does: whitespace separates,
// "..." is one word without its quotes, "{" and "}" are words of their
// own, and an unquoted word starting with # or ! comments out the rest.
func split(s string) ([]string, error) {
	var words []string
	for {
		s = strings.TrimLeft(s, " \t\r\v\f")
		if s == "" {
			return words, nil
		}
		switch s[0] {
		case '#', '!':
			return words, nil
		case '{', '}':
			words, s = append(words, s[:1]), s[1:]
			continue
		case '"':
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return nil, fmt.Errorf("unmatched quote")
			}
			words, s = append(words, s[1:end+1]), s[end+2:]
			continue
		}
		end := strings.IndexAny(s, " \t\r\v\f\"{}")
		if end < 0 {
			end = len(s)
		}
		words, s = append(words, s[:end]), s[end:]
	}
}

// build turns lines into a tree: a line ending in "{" (or followed by a
// line that is "{") opens its keyword's block; "}" closes it.
func build(lines []line) ([]*Node, error) {
	var words []word
	for _, l := range lines {
		for i, w := range l.words {
			words = append(words, word{l.pos, w, i == 0})
		}
	}
	p := &parser{words: words}
	nodes, err := p.block(0, nil)
	if err != nil {
		return nil, err
	}
	if p.i < len(p.words) {
		return nil, Errorf(p.words[p.i].pos, "unexpected }")
	}
	return nodes, nil
}

type word struct {
	pos   Pos
	text  string
	first bool // first word of its line
}

type parser struct {
	words []word
	i     int
}

// block reads the statements of open's block (the top level when nil)
// until a "}", not consumed.
func (p *parser) block(depth int, open *Node) ([]*Node, error) {
	if depth > MaxDepth {
		return nil, Errorf(open.Pos, "blocks nested more than %d deep", MaxDepth)
	}
	var nodes []*Node
	for p.i < len(p.words) {
		w := p.words[p.i]
		switch w.text {
		case "}":
			return nodes, nil
		case "{":
			return nil, Errorf(w.pos, "unexpected {")
		}
		n := &Node{Pos: w.pos, Key: w.text}
		p.i++
		for p.i < len(p.words) && !p.words[p.i].first && p.words[p.i].text != "{" && p.words[p.i].text != "}" {
			n.Args = append(n.Args, p.words[p.i].text)
			p.i++
		}
		if p.i < len(p.words) && p.words[p.i].text == "{" {
			n.HasBlock = true
			p.i++
			var err error
			if n.Block, err = p.block(depth+1, n); err != nil {
				return nil, err
			}
			if p.i >= len(p.words) {
				return nil, Errorf(n.Pos, "%s: block not closed", n.Key)
			}
			p.i++ // the "}"
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}
