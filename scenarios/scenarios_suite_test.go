package scenarios_test

import (
	"context"
	"os"
	"testing"

	"github.com/lvslab/lvslab/fixtures"
	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/kernel"
	"github.com/lvslab/lvslab/scenarios"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// TestIPVSScenarios runs the conformance specs. They need root and kernel
// IPVS: `make test` runs them through `lvslab kexec` (in the micro-VM on
// hosts without ip_vs) with LVSLAB_REQUIRE_IPVS=1, so they cannot skip there.
func TestIPVSScenarios(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Conformance scenarios")
}

func requireIPVS() {
	if testing.Short() {
		Skip("conformance scenarios: skipped with -short")
	}
	if os.Geteuid() != 0 {
		Skip("conformance scenarios need root")
	}
	if ok, why := kernel.HostHasIPVS(); !ok {
		if os.Getenv("LVSLAB_REQUIRE_IPVS") == "1" {
			Fail("kernel IPVS required (LVSLAB_REQUIRE_IPVS=1) but missing: " + why)
		}
		Skip("needs kernel IPVS (" + why + "): make test runs this through `lvslab kexec`")
	}
}

var _ = Describe("Steady state", Label("steady-state"), Serial, func() {
	BeforeEach(requireIPVS)

	DescribeTable("keepalived on both boxes",
		func(fix scenarios.Fix) {
			topo, err := lab.ParseTopology(fixtures.DefaultTopologyName, fixtures.DefaultTopology)
			Expect(err).NotTo(HaveOccurred())
			r, err := scenarios.SteadyState(context.Background(), topo, scenarios.Keepalived{}, fix,
				scenarios.Options{Connections: 20, RunDir: GinkgoT().TempDir(), Progress: GinkgoWriter})
			Expect(err).NotTo(HaveOccurred())
			GinkgoWriter.Printf("%s %s: %s: %s\n", r.Implementation, r.Fix, r.Verdict, r.Reason)
			Expect(r.Verdict).To(Equal(scenarios.Expected(r.Implementation, fix)), r.Reason)
			Expect(r.Pass).To(BeTrue(), r.Reason)
			if fix == scenarios.FixFwmark {
				Expect(r.IPVS["d2"].InPkts).To(BeZero(), "the BACKUP's FWM 4 service must see no packet")
				Expect(r.Share).To(HaveLen(2), "both boxes serve")
			} else {
				Expect(r.IPVS["d2"].InPkts).To(BeNumerically(">", 0), "without a guard the BACKUP re-balances")
			}
		},
		Entry("no fix: the ping-pong loop", scenarios.FixNone),
		Entry("fwmark + MAC guard: clean", scenarios.FixFwmark),
	)
})
