# lvslab — `make help` lists the targets. Everything but `help`, `build` and
# unit tests needs root (network namespaces, veth, mounts).

GO          ?= go
BIN         := bin/lvslab
BENCH_COUNT ?= 6
# Debian/Ubuntu packages the lab, the backends and the directors use.
DEB_PACKAGES := iproute2 iptables ipvsadm mariadb-server mariadb-client keepalived \
	socat tcpdump iputils-ping \
	qemu-system-x86 kmod xz-utils cpio chromium
# Tests that need kernel IPVS are named TestIPVS*; `make test` runs them
# through `lvslab kexec` (natively where the host has ip_vs, else in the
# micro-VM) with LVSLAB_REQUIRE_IPVS=1, so they fail rather than skip.
IPVS_PKGS   := ./lab/kernel/ ./director/
KEXEC       := LVSLAB_REQUIRE_IPVS=1 LVSLAB_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -p 1 -v -exec "$(CURDIR)/$(BIN) kexec --share $(CURDIR)/reports"
CONFORMANCE := $(KEXEC) -run '^TestIPVSScenarios$$' ./scenarios/ -args -ginkgo.junit-report=$(CURDIR)/reports/junit.xml

.DEFAULT_GOAL := help
.PHONY: help deps kernel build install run conformance lab-up lab-down test unit bench sweep clean

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## install the Debian packages lvslab needs (idempotent; root)
	@missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "deps: all installed"; else \
		echo "deps: installing" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

kernel: build ## fetch the micro-VM kernel into the cache unless the host has ip_vs
	@if $(BIN) kernel info | grep -q '^runner: *vm'; then $(BIN) kernel fetch; else echo "kernel: host has ip_vs, no VM kernel needed"; fi

build: ## build bin/lvslab (static: it is also the micro-VM's /init)
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/lvslab

install: build ## copy bin/lvslab to /usr/local/bin
	install -m 0755 $(BIN) /usr/local/bin/lvslab

run: deps kernel ## the headline: the ping-pong loop and the fwmark fix, keepalived and lvslab, six scenarios at once; writes reports/latest
	$(BIN) run

conformance: deps kernel ## the Ginkgo conformance specs, through the kernel runner; JUnit in reports/junit.xml
	@mkdir -p reports
	$(CONFORMANCE)

lab-up: deps kernel ## bring up the default lab and leave it running (lvslab up)
	$(BIN) up
	@command -v lvslab >/dev/null || echo "note: lvslab is $(BIN) here; 'make install' puts it on PATH"

lab-down: build ## stop the default lab and remove everything it made
	$(BIN) down

unit: ## unit tests only: no root, no kernel state
	$(GO) test -count=1 -short ./...

test: deps kernel ## all tests: unit, privileged (root), and IPVS tests through the kernel runner
	$(GO) test -count=1 -p 1 ./...
	@mkdir -p reports
	$(KEXEC) -run '^TestIPVS' $(IPVS_PKGS)
	$(CONFORMANCE)

sweep: build ## remove the leftovers of every lab, e.g. after a crash
	$(BIN) sweep

# bench_raw writes go test -bench output for package $(1) with a header
# naming the machine to reports/bench/raw/$(2).txt; $(3) is its title, $(4)
# extra go test flags, $(5) the kernel the benchmarks ran on.
define bench_raw
	@mkdir -p reports/bench/raw
	@echo "bench: $(1) -> reports/bench/raw/$(2).txt"
	@{ echo "# title: $(3)"; \
	   echo "# command: go test -run '^$$' -bench . -count $(BENCH_COUNT) $(4) $(1)"; \
	   echo "# machine: $$(nproc) cores, $$(free -g | awk '/Mem/{print $$2}') GiB, $$(. /etc/os-release; echo $$PRETTY_NAME)"; \
	   echo "# kernel: $(or $(5),$$(uname -r))"; \
	   echo "# date: $$(date -u +%F)"; \
	   $(GO) test -run '^$$' -bench . -count $(BENCH_COUNT) $(4) $(1); } > reports/bench/raw/$(2).txt
endef

# IPVS benchmarks run where kernel IPVS is: in the micro-VM here.
BENCH_KEXEC := -exec "$(CURDIR)/$(BIN) kexec"
BENCH_KERNEL = $$($(BIN) vm run -- uname -r) in the micro-VM (TCG) when the host lacks ip_vs

# make bench BENCH_SETS="director run" reruns some sets; BENCH.md is
# always regenerated from every raw file (each names its date).
BENCH_SETS ?= lab kernel director scenarios run
bench: export LVSLAB_BIN := $(CURDIR)/$(BIN)
bench: export LVSLAB_REQUIRE_IPVS := 1
bench: deps kernel build ## run the benchmarks (BENCH_SETS) and regenerate reports/bench/BENCH.md (root)
	$(if $(filter lab,$(BENCH_SETS)),$(call bench_raw,./lab/,lab,Lab engine: two-director up+down vs an iproute2 script; MariaDB ready))
	$(if $(filter kernel,$(BENCH_SETS)),$(call bench_raw,./lab/kernel/,kernel,Kernel runner: lvslab vm run -- true under TCG vs the DESIGN.md boot recipe))
	$(if $(filter director,$(BENCH_SETS)),$(call bench_raw,./director/,director,Director: IPVS reconcile vs ipvsadm; failover vs keepalived,$(BENCH_KEXEC),$(BENCH_KERNEL)))
	$(if $(filter scenarios,$(BENCH_SETS)),$(call bench_raw,./scenarios/,scenarios,Conformance: one steady-state scenario from nothing to a verdict vs a shell script,$(BENCH_KEXEC),$(BENCH_KERNEL)))
	$(if $(filter run,$(BENCH_SETS)),$(call bench_raw,./cmd/lvslab/,run,The headline job: lvslab run (six scenarios at once) from start to exit,,$(BENCH_KERNEL)))
	$(GO) run ./reports/benchmd -targets reports/bench/targets.txt -o reports/bench/BENCH.md reports/bench/raw/*.txt

clean: ## remove build outputs
	rm -rf bin
