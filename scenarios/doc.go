// Package scenarios will hold the conformance scenarios (issue 5): the
// implementations under test, workloads, observers and verdicts. Nothing is
// implemented yet; the directory exists so the project layout is complete.
package scenarios
