package reports

import (
	"cmp"
	"encoding/xml"
	"fmt"
	"os"

	"github.com/lvslab/lvslab/scenarios"
)

// JUnit XML as CI systems read it (the Ant schema's subset Ginkgo writes).
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Timestamp  string          `xml:"timestamp,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      float64       `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// writeJUnit writes the summary as one JUnit test suite, a test case per
// result, named by its cell (or scenario, implementation and fix).
func (s *Summary) writeJUnit(path string) error {
	suite := junitSuite{Name: "lvslab " + s.RunID, Timestamp: s.Started.UTC().Format("2006-01-02T15:04:05"),
		Properties: []junitProperty{{"kernel", s.Kernel}, {"runner", s.Runner}}}
	if s.Shard != "" {
		suite.Properties = append(suite.Properties, junitProperty{"shard", s.Shard}, junitProperty{"host", s.Host})
	}
	for _, r := range s.Results {
		c := junitCase{Name: cellName(r), Classname: r.Implementation, Time: (r.Setup + r.Traffic).Seconds(),
			SystemOut: fmt.Sprintf("verdict %s, expected %s: %s", r.Verdict, r.Expected, r.Reason)}
		if r.Shard != "" {
			c.SystemOut += fmt.Sprintf("\nshard %s on %s, kernel %s", r.Shard, r.Host, r.Kernel)
		}
		if !r.Pass {
			c.Failure = &junitFailure{Message: fmt.Sprintf("%s, expected %s", r.Verdict, r.Expected), Type: "verdict", Text: r.Reason}
			suite.Failures++
		}
		suite.Cases = append(suite.Cases, c)
	}
	suite.Tests = len(suite.Cases)
	data, err := xml.MarshalIndent(junitSuites{Tests: suite.Tests, Failures: suite.Failures, Suites: []junitSuite{suite}}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append([]byte(xml.Header), append(data, '\n')...), 0o644); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	return nil
}

// cellName is a result's name in a suite, with its kernel in a merged
// report (the same cell runs once per kernel there).
func cellName(r *scenarios.Result) string {
	name := cmp.Or(r.Cell, fmt.Sprintf("%s, %s, fix %s", r.Scenario, r.Implementation, r.Fix))
	if r.Kernel != "" {
		name += " [" + r.Kernel + "]"
	}
	return name
}
