package scenarios_test

import (
	"github.com/lvslab/lvslab/fixtures/field"
	"github.com/lvslab/lvslab/scenarios"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// The field corpus in the lab: every case of docs/field.md's table that
// lvslab runs, in steady state as lvslab check runs it, gets the verdicts
// written there beforehand (make field). The first case, the seed's own
// shape, is also in make test.
var _ = Describe("lvslab check: the field corpus", Label("field"), func() {
	cases, err := field.Read("../docs/field.md")
	if err != nil {
		It("reads docs/field.md", func() { Expect(err).NotTo(HaveOccurred()) })
		return
	}
	for k, c := range cases {
		if _, refused := c.Refused(); refused {
			continue
		}
		labels := Labels{}
		if k == 0 {
			labels = append(labels, "test")
		}
		It(c.Name+": "+c.Shape, labels, timeout(), func(ctx SpecContext) {
			confs, rules, scripts := c.Files("../fixtures/field")
			Expect(len(confs)).To(BeNumerically(">=", 2))
			if len(rules) > 0 {
				Expect(rules).To(HaveLen(len(confs)))
			}
			prescribed := scenarios.Verdict(c.Prescribed)
			if c.Prescribed == "-" {
				prescribed = ""
			}
			runPair(ctx, c.Name, confs, rules, scripts, scenarios.Verdict(c.Yours), prescribed)
		})
	}
})
