package kernel_test

import (
	"context"
	"io"
	"os"
	"testing"
	"time"

	"github.com/lvslab/lvslab/lab/kernel"
)

// BenchmarkVMRunTrue times `lvslab vm run -- true` under the host's
// accelerator (TCG here), split by the guest clock into boot (kernel start
// to command start) and command. The reference is DESIGN.md's measured
// recipe in the same run: the compressed bzImage booted through firmware
// with a plain command line.
func BenchmarkVMRunTrue(b *testing.B) {
	vm := requireVM(b)
	vm.MemoryMB = 2048
	ref := *vm
	k := *vm.Kernel
	k.Vmlinuz = k.BzImage
	ref.Kernel, ref.BootArgs = &k, "console=ttyS0 quiet panic=-1 rdinit=/init"
	for _, c := range []struct {
		name string
		vm   *kernel.MicroVM
	}{{"lvslab", vm}, {"reference", &ref}} {
		b.Run(c.name, func(b *testing.B) {
			var boot, cmd time.Duration
			for b.Loop() {
				st, err := c.vm.Run(context.Background(), kernel.Spec{Argv: []string{"true"}, Env: os.Environ(), Dir: "/"}, io.Discard, io.Discard)
				if err != nil || st.Code != 0 {
					b.Fatalf("vm run true: %v (exit %d)", err, st.Code)
				}
				boot += st.Boot
				cmd += st.Command
			}
			b.ReportMetric(float64(boot.Milliseconds())/float64(b.N), "guest-boot-ms")
			b.ReportMetric(float64(cmd.Milliseconds())/float64(b.N), "cmd-ms")
		})
	}
}
