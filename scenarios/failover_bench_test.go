package scenarios

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/labtest"
)

// failoverLabs is how many labs each round of BenchmarkIPVSFailoverLoad
// runs at once: half with the lvslab director, half with keepalived.
const failoverLabs = 6

// steadyFor is how long a failover lab watches the BACKUP, both directors
// up and writes running, before the MASTER's director is killed: a
// takeover then is a false one (two MASTERs).
const steadyFor = 5 * time.Second

// failoverTrial is one failover of BenchmarkIPVSFailoverLoad.
type failoverTrial struct {
	took           time.Duration // from the SIGKILL to the BACKUP's netlink address event
	falseTakeovers int           // the BACKUP took the VIP while the MASTER was up
	acked, lost    int           // writes across the steady window and the kill
}

// BenchmarkIPVSFailoverLoad is sub-second failover under load (#24): at
// each advert interval, rounds of six labs at once (the lvslab director
// in three, keepalived in three, so both see the same load), each the
// fwmark pair with writes every 50 ms: 5 s with both directors up (a
// BACKUP takeover then is false: two MASTERs), then the MASTER's
// director SIGKILLed and the takeover timed from the kill to the
// BACKUP's netlink address event; the acknowledged writes are read back.
// Run it with -benchtime Nx: N rounds, 3N failovers each. It reports
// each implementation's median and p99, the ratio of the medians with a
// bootstrap 95% interval, the writes lost and the false takeovers.
func BenchmarkIPVSFailoverLoad(b *testing.B) {
	labtest.RequireIPVS(b)
	bin := os.Getenv("LVSLAB_BIN")
	if bin == "" {
		b.Fatal("set LVSLAB_BIN to a built lvslab (make bench does)")
	}
	topo := labtest.DefaultTopology(b)
	// 20 ms: below the 50 to 100, to find where TCG's stalls
	// make a BACKUP take over from a live MASTER; 200 ms: above, to find
	// where they stop (make bench BENCH_SETS=failover-safe).
	for _, advert := range []time.Duration{20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond} {
		b.Run(fmt.Sprintf("advert-%s", advert), func(b *testing.B) {
			impls := map[string]func() Implementation{
				"lvslab":     func() Implementation { return &GoDirector{Binary: bin, Advert: advert} },
				"keepalived": func() Implementation { return &Keepalived{Advert: advert} },
			}
			trials := map[string][]failoverTrial{}
			for b.Loop() {
				var mu sync.Mutex
				var errs []error
				var wg sync.WaitGroup
				for k := range failoverLabs {
					name := []string{"lvslab", "keepalived"}[k%2]
					wg.Go(func() {
						t, err := failoverOnce(context.Background(), topo, impls[name]())
						mu.Lock()
						defer mu.Unlock()
						if err != nil {
							errs = append(errs, fmt.Errorf("%s: %w", name, err))
							return
						}
						if t.falseTakeovers > 0 || t.lost > 0 { // the rest is in the metrics
							b.Logf("failover: %s advert %s: %.1f ms, %d false takeovers, %d writes acknowledged, %d lost",
								name, advert, ms(t.took), t.falseTakeovers, t.acked, t.lost)
						}
						trials[name] = append(trials[name], t)
					})
				}
				wg.Wait()
				if err := errors.Join(errs...); err != nil {
					b.Fatal(err)
				}
			}
			reportFailovers(b, trials)
		})
	}
}

// failoverOnce is one lab's trial: build, the fwmark pair, the steady
// window, the kill.
func failoverOnce(ctx context.Context, topo *lab.Topology, impl Implementation) (failoverTrial, error) {
	var t failoverTrial
	l, c, closePair, err := SettledPair(ctx, topo, impl, FixFwmark, lab.Options{})
	if err != nil {
		return t, err
	}
	defer closePair()
	client, backup := l.Box(clientNode(topo)), l.Box(c.Directors[1].Node)
	vip := net.JoinHostPort(c.VIP.String(), fmt.Sprint(c.Port))
	stop, done := make(chan struct{}), make(chan []Write)
	go func() {
		done <- Writes(ctx, client, WriteLoad{Addr: vip, Base: time.Now().UnixNano(), Every: writeInterval, Timeout: 2 * time.Second}, stop)
	}()
	w, err := watchVIP(backup, c)
	if err == nil {
		time.Sleep(steadyFor)
		t.took, t.falseTakeovers, err = killMaster(ctx, l, c, impl, w)
		w.Close()
		time.Sleep(time.Second) // writes through the new MASTER
	}
	close(stop)
	writes := <-done
	if err != nil {
		return t, err
	}
	var dbs []string
	for _, a := range c.Realservers() {
		dbs = append(dbs, net.JoinHostPort(a.String(), fmt.Sprint(c.Port)))
	}
	ws, err := CheckWrites(ctx, client, dbs, writes, 2*time.Second)
	t.acked, t.lost = ws.Acked, ws.Lost
	return t, err
}

// killMaster SIGKILLs the MASTER's director once it alone holds the VIP
// (a false takeover may be under way: the BACKUP yields at the MASTER's
// next advert) and times the takeover; falses are the BACKUP's takeovers
// w saw before the kill.
func killMaster(ctx context.Context, l *lab.Lab, c Cluster, impl Implementation, w *VIPWatch) (took time.Duration, falses int, err error) {
	for range 5 { // a new false takeover may start between the check and the kill
		if err := waitPair(ctx, impl, c.takeoverBound(), func() string { return onlyVIP(l, c, 0) }); err != nil {
			return 0, w.Takes(), err
		}
		took, err = TimeVIPTakeover(ctx, l.Box(c.Directors[1].Node), c, func() error {
			falses = w.Takes()
			return impl.Stop(0, false)
		})
		if !errors.Is(err, errHeldBefore) {
			return took, falses, err
		}
	}
	return 0, w.Takes(), fmt.Errorf("the BACKUP took the VIP from a live MASTER 5 times in a row")
}

// reportFailovers reports each implementation's median and p99 failover,
// and false takeovers (a BACKUP taking the VIP from a live MASTER), the
// ratio of the lvslab director's median to keepalived's with its
// bootstrap 95% interval, and the writes lost of all.
func reportFailovers(b *testing.B, trials map[string][]failoverTrial) {
	took := map[string][]float64{}
	lost, n := 0, 0
	for name, ts := range trials {
		falses := 0
		for _, t := range ts {
			took[name] = append(took[name], ms(t.took))
			lost, falses, n = lost+t.lost, falses+t.falseTakeovers, n+1
		}
		slices.Sort(took[name])
		b.ReportMetric(quantile(took[name], 0.5), name+"-median-ms")
		b.ReportMetric(quantile(took[name], 0.99), name+"-p99-ms")
		b.ReportMetric(float64(falses), name+"-false-takeovers")
	}
	ratio, lo, hi := medianRatio(took["lvslab"], took["keepalived"])
	b.ReportMetric(ratio, "median-ratio")
	b.ReportMetric(lo, "median-ratio-lo")
	b.ReportMetric(hi, "median-ratio-hi")
	b.ReportMetric(float64(n), "failovers")
	b.ReportMetric(float64(lost), "lost-writes")
}

// quantile is the nearest-rank q-quantile of sorted xs.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// medianRatio is median(a)/median(b) with a percentile bootstrap 95%
// interval (2000 resamples of each, a fixed seed: the same samples give
// the same interval).
func medianRatio(a, b []float64) (ratio, lo, hi float64) {
	if len(a) == 0 || len(b) == 0 {
		return 0, 0, 0
	}
	med := func(xs []float64) float64 {
		s := slices.Sorted(slices.Values(xs))
		return quantile(s, 0.5)
	}
	r := rand.New(rand.NewPCG(1, 2))
	resample := func(xs []float64) []float64 {
		out := make([]float64, len(xs))
		for i := range out {
			out[i] = xs[r.IntN(len(xs))]
		}
		return out
	}
	var boot []float64
	for range 2000 {
		boot = append(boot, med(resample(a))/med(resample(b)))
	}
	slices.Sort(boot)
	return med(a) / med(b), boot[49], boot[1949]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func TestFailoverStatistics(t *testing.T) {
	xs := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if q := quantile(xs, 0.5); q != 5 {
		t.Errorf("median of 1..10 (nearest rank): %v, want 5", q)
	}
	if q := quantile(xs, 0.99); q != 10 {
		t.Errorf("p99 of 1..10: %v, want 10", q)
	}
	same := []float64{100, 101, 99, 100, 102, 98}
	if r, lo, hi := medianRatio(same, same); r != 1 || lo > 1 || hi < 1 {
		t.Errorf("a sample against itself: %v (%v-%v), want 1 inside its interval", r, lo, hi)
	}
	half := []float64{50, 50.5, 49.5, 50, 51, 49}
	if r, lo, hi := medianRatio(half, same); r != 0.5 || hi >= 1 || lo <= 0.4 {
		t.Errorf("half: %v (%v-%v), want 0.5, the interval well under 1", r, lo, hi)
	}
}
