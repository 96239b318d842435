package scenarios_test

import (
	"path/filepath"

	"github.com/lvslab/lvslab/scenarios"
	"github.com/lvslab/lvslab/scenarios/check"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// checkRun runs the pair in dir (fixtures/check/DIR, its two *.conf) in
// steady state as lvslab check does: see runPair.
func checkRun(ctx SpecContext, dir, rulesA, rulesB string, yours, prescribed scenarios.Verdict) *scenarios.Result {
	base := "../fixtures/check/" + dir + "/"
	var rules []string
	if rulesA != "" {
		rules = []string{base + rulesA, base + rulesB}
	}
	confs, _ := filepath.Glob(base + "*.conf")
	Expect(confs).To(HaveLen(2))
	return runPair(ctx, dir, confs, rules, "", yours, prescribed)
}

// runPair runs the pair of configs (and rules and scripts, where given)
// in steady state as lvslab check does, each of its services: with its configs as
// given, expected to come out as yours, and, unless Prescribe finds
// nothing to fix (prescribed ""), with the fix it writes, expected to
// come out as prescribed. It returns the first service's given run.
func runPair(ctx SpecContext, dir string, confs, rules []string, scripts string, yours, prescribed scenarios.Verdict) (given *scenarios.Result) {
	requireIPVS()
	p, err := check.LoadPair(confs, rules)
	Expect(err).NotTo(HaveOccurred())
	p.Scripts = scripts
	pl, err := check.Derive(p)
	Expect(err).NotTo(HaveOccurred())
	Expect(pl.Runnable()).To(BeEmpty())
	rx, err := check.Prescribe(p, pl)
	Expect(err).NotTo(HaveOccurred())
	yoursImpl, fixed, _, err := check.Runs(p, pl, rx, lvslabBinary())
	Expect(err).NotTo(HaveOccurred())
	Expect(rx.Nothing()).To(Equal(prescribed == ""), "prescription %+v", rx)
	for _, svc := range pl.Workloads() {
		for _, c := range []struct {
			impl func() scenarios.Implementation
			fix  scenarios.Fix
			want scenarios.Verdict
		}{{yoursImpl, "yours", yours}, {fixed, "prescribed", prescribed}} {
			if c.want == "" {
				continue
			}
			r := runOn(ctx, pl.Topology, svc, pl.Backends(), c.impl(), scenarios.Steady, c.fix, c.want)
			GinkgoWriter.Printf("%s %s %s: %s: %s\n", dir, svc.Name, c.fix, r.Verdict, r.Reason)
			Expect(r.Verdict).To(Equal(c.want), "%s %s, configs %s: %s", dir, svc.Name, c.fix, r.Reason)
			if given == nil {
				given = r
			}
		}
	}
	return given
}

var _ = Describe("lvslab check: a user's pair in the lab", Label("check"), func() {
	It("the reference pair, first configured: loops; as prescribed: clean", timeout(), func(ctx SpecContext) {
		checkRun(ctx, "reference", "", "", scenarios.Loop, scenarios.Clean)
	})
	It("a passive box that re-balances to itself only (db2 weights db1 0): no bounce, still a loop; as prescribed: clean", timeout(), func(ctx SpecContext) {
		r := checkRun(ctx, "asymmetric", "", "", scenarios.Loop, scenarios.Clean)
		Expect(r.Bounces.Bounced).To(BeZero(), "db2 picks itself: nothing bounces")
		Expect(r.Reason).To(ContainSubstring("it re-balanced what the active box forwarded"))
	})
	It("an HTTP pair (unicast VRRP, include, persistence, HTTP_GET) on the built-in backend: loops; as prescribed: clean", timeout(), func(ctx SpecContext) {
		checkRun(ctx, "http", "", "", scenarios.Loop, scenarios.Clean)
	})
	It("a pair with two services on two VIPs (sync group, shared include, wlc and sh): each loops; as prescribed: each clean", timeout(), func(ctx SpecContext) {
		checkRun(ctx, "several", "", "", scenarios.Loop, scenarios.Clean)
	})
	It("a pair whose service balances to a third realserver (a replica, wrr 3:3:1): loops; as prescribed: clean, all three serving", timeout(), func(ctx SpecContext) {
		r := checkRun(ctx, "replica", "", "", scenarios.Loop, scenarios.Clean)
		Expect(r.Share).To(HaveKey(4), "rs1 (server_id 4) is one of the realservers")
	})
	It("the reference pair as its fix reads (fwmark 3 and 4, mangle rules): clean, and nothing to prescribe", timeout(), func(ctx SpecContext) {
		checkRun(ctx, "reference-fixed", "db1.rules", "db2.rules", scenarios.Clean, "")
	})
	It("ordinary DR, directors in front of two web servers: clean, and no guard to prescribe (no loop can start)", timeout(), func(ctx SpecContext) {
		r := checkRun(ctx, "directors-only", "", "", scenarios.Clean, "")
		Expect(r.Share).To(HaveLen(2), "the two web servers serve, the directors do not")
	})
	It("the seed's shape as published (bare VIP, no unicast), box 2 listing 2 of box 1's 3 realservers: loops; as prescribed: clean", timeout(), func(ctx SpecContext) {
		checkRun(ctx, "bare-vip", "", "", scenarios.Loop, scenarios.Clean)
	})
})
