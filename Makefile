# lvslab — `make help` lists the targets. Everything but `help`, `build` and
# unit tests needs root (network namespaces, veth, mounts).

GO          ?= go
BIN         := bin/lvslab
BENCH_COUNT ?= 6
# Debian/Ubuntu packages the lab, the backends and the directors use.
DEB_PACKAGES := iproute2 iptables ipvsadm mariadb-server mariadb-client keepalived \
	socat tcpdump iputils-ping \
	qemu-system-x86 kmod xz-utils zstd cpio chromium
GINKGO      := bin/ginkgo
# Tests that need kernel IPVS (or another module the host may lack: netem)
# are named TestIPVS*. `make test` and `make
# conformance` run them through `lvslab kexec`: natively where the host has
# ip_vs, else in ONE micro-VM for all of them, with LVSLAB_REQUIRE_IPVS=1 so
# they fail rather than skip. Their binaries are built on the host
# (compiling under TCG is slow), next to their packages.
IPVS_PKGS   := director lab lab/kernel scenarios/diagnose
IPVS_BINS   := $(foreach p,$(IPVS_PKGS) scenarios,$(p)/$(notdir $(p)).test)
# The conformance specs run in PROCS Ginkgo processes (PROCS=1: one after
# another, for debugging). Each spec has its own lab; six labs peak at
# 1.7 GiB in the guest, so VM_MEMORY leaves room for eight.
# SHARD=I/N runs a stable part of them (see conformance-sharded); RUN_ID
# names the run's report directory, reports/<RUN_ID>/; REPEAT=K runs each
# cell K times and counts its verdicts (UNSTABLE when they differ).
PROCS       ?= 6
VM_MEMORY   ?= 6144
SHARD       ?=
RUN_ID      ?=
REPEAT      ?= 1
# Generous bounds: a spec that cannot converge fails on its own 4-minute
# SpecTimeout (per run); these only stop a run that hangs as a whole.
SUITE_TIMEOUT ?= $(shell echo $$((20 * $(REPEAT))))m
GINKGO_FLAGS  ?=
# KERNELS="bullseye bookworm trixie" runs the conformance specs once per
# Debian suite's kernel (fetched beside the default by `make kernel`) and
# merges the runs into one report with a kernel column; VM_KERNEL picks
# one cached kernel (a suite or a version: lvslab kernel list).
KERNELS     ?=
VM_KERNEL   ?=
IN_KERNEL    = LVSLAB_REQUIRE_IPVS=1 LVSLAB_BIN=$(CURDIR)/$(BIN) $(BIN) kexec --share $(CURDIR)/reports --memory $(VM_MEMORY) \
	$(if $(VM_KERNEL),--vm-kernel $(VM_KERNEL))
GINKGO_RUN   = $(CURDIR)/$(GINKGO) --procs=$(PROCS) --timeout=$(SUITE_TIMEOUT) \
	--junit-report=$(CURDIR)/reports/junit$(if $(SHARD),-shard$(subst /,of,$(SHARD))).xml $(GINKGO_FLAGS) \
	scenarios/scenarios.test -- -test.run='^TestIPVSScenarios$$' -lvslab.reports=$(CURDIR)/reports \
	-lvslab.repeat=$(REPEAT) $(if $(SHARD),-lvslab.shard=$(SHARD)) $(if $(RUN_ID),-lvslab.run-id=$(RUN_ID))

# IPVS_TESTS runs in the micro-VM: the director's and the kernel runner's
# TestIPVS*, then the conformance specs. They run one after the other: the
# director's pair tests time VRRP failovers, and beside six labs on two
# TCG cores they missed their 15 s bounds. Every part runs; it fails if
# any failed.
# make test leaves out the director pairs with keepalived on one box
# (IPVS_SKIP; 38 s of VRRP timers): the mixed conformance spec covers
# them there, and make conformance runs them.
IPVS_SKIP ?=
# Of a sharded run, the first shard runs the packages' IPVS tests.
IPVS_TEST_PKGS = $(if $(SHARD),$(if $(filter 1/%,$(SHARD)),$(IPVS_PKGS)),$(IPVS_PKGS))
define IPVS_TESTS
rc=0
for p in $(IPVS_TEST_PKGS); do
	(cd $$p && exec ./$${p##*/}.test -test.run '^TestIPVS' -test.skip '$(IPVS_SKIP)' -test.v -test.timeout $(SUITE_TIMEOUT)) || rc=1
done
$(GINKGO_RUN) || rc=1
exit $$rc
endef
export IPVS_TESTS

.DEFAULT_GOAL := help
.PHONY: help deps kernel prepare build install run conformance conformance-sharded lab-up lab-down test field unit lint fuzz bench soak sweep clean ipvs-bins

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## install the Debian packages lvslab needs (idempotent; root)
	@missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "deps: all installed"; else \
		echo "deps: installing" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

kernel: build ## fetch the micro-VM kernel (and those of KERNELS) into the cache unless the host has ip_vs
	@if $(BIN) kernel info | grep -q '^runner: *vm'; then $(BIN) kernel fetch $(foreach k,$(KERNELS),&& $(BIN) kernel fetch --suite $(k)); \
	else echo "kernel: host has ip_vs, no VM kernel needed"; fi

prepare: build ## make the MariaDB template datadir in the cache once, before labs start in parallel (run, test and conformance do)
	@$(BIN) prepare

build: ## build bin/lvslab (static: it is also the micro-VM's /init)
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/lvslab

$(GINKGO): go.mod
	$(GO) build -o $@ github.com/onsi/ginkgo/v2/ginkgo

ipvs-bins: build $(GINKGO)
	@for p in $(IPVS_PKGS) scenarios; do $(GO) test -c -o $$p/$$(basename $$p).test ./$$p/ || exit 1; done

install: build ## copy bin/lvslab to /usr/local/bin
	install -m 0755 $(BIN) /usr/local/bin/lvslab

run: deps kernel prepare ## the headline: the ping-pong loop and the fwmark fix, keepalived and lvslab, six scenarios at once; writes reports/latest
	$(BIN) run

conformance: deps kernel prepare ipvs-bins ## every IPVS test and the Ginkgo conformance specs in PROCS processes (default 6), through the kernel runner; SHARD (the IPVS tests in shard 1), REPEAT, KERNELS
	@mkdir -p reports
ifeq ($(KERNELS),)
	$(IN_KERNEL) sh -c "$$IPVS_TESTS"
else
	@rc=0; for k in $(KERNELS); do \
		$(MAKE) --no-print-directory conformance KERNELS= VM_KERNEL=$$k RUN_ID=$(STAMP)-$$k || rc=1; done; \
	$(BIN) report merge --run-id $(STAMP)-kernels $(foreach k,$(KERNELS),reports/$(STAMP)-$(k)) && exit $$rc
endif

# Three shards here, one after the other, merged into one report (a CI
# matrix runs them on three runners: .github/workflows/conformance.yml).
N     ?= 3
STAMP := $(shell date -u +%Y%m%d-%H%M%S)
conformance-sharded: deps kernel prepare ipvs-bins ## the conformance specs as N shards (default 3), merged by lvslab report merge
	@rc=0; for i in $$(seq 1 $(N)); do \
		$(MAKE) --no-print-directory conformance SHARD=$$i/$(N) RUN_ID=$(STAMP)-shard$${i}of$(N) || rc=1; done; \
	$(BIN) report merge --run-id $(STAMP)-merged $(foreach i,$(shell seq 1 $(N)),reports/$(STAMP)-shard$(i)of$(N)) && exit $$rc

lab-up: deps kernel prepare ## bring up the default lab and leave it running (lvslab up)
	$(BIN) up
	@command -v lvslab >/dev/null || echo "note: lvslab is $(BIN) here; 'make install' puts it on PATH"

lab-down: build ## stop the default lab and remove everything it made
	$(BIN) down

unit: ## unit tests only: no root, no kernel state
	$(GO) test -count=1 -short ./...

# lint is go vet, gofmt and staticcheck (a tool of go.mod: `go tool`
# fetches the version go.mod names); .ci/run runs it before make test.
lint: ## go vet, gofmt and staticcheck, clean or exit 1
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "lint: gofmt the files above"; exit 1; }
	$(GO) tool staticcheck ./...

# FUZZ_EXECS inputs per target (Go's -fuzztime Nx): 1.6 x 10^6 in all.
# FuzzPlan writes files per input: a new input is minimised in 100 runs,
# not Go's default 60 s, which stalled it.
FUZZ_EXECS ?= 400000
fuzz: ## run each fuzz target for FUZZ_EXECS inputs (topology, director config, keepalived.conf, check's whole plan)
	$(GO) test -run '^$$' -fuzz '^FuzzParseTopology$$' -fuzztime $(FUZZ_EXECS)x ./lab/
	$(GO) test -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZ_EXECS)x ./director/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZ_EXECS)x ./scenarios/keepalivedconf/
	$(GO) test -run '^$$' -fuzz '^FuzzPlan$$' -fuzztime $(FUZZ_EXECS)x -fuzzminimizetime 100x ./scenarios/check/

# make test runs the specs labelled test: one per verdict class ×
# implementation × fix that proves the headline, and one per capability
# (check, adversity, load); make conformance runs them all.
test: GINKGO_FLAGS += --label-filter=test
test: IPVS_SKIP := ^(TestIPVSDirectorPair|TestIPVSDiagnoseLive)$$/(keepalived|^none$$)
# The host's packages test side by side (go test's default -p, one per
# CPU): their privileged tests mostly wait on micro-VMs and VRRP timers
# (the three slowest, one at a time: 25 s of CPU in 84 s), and each uses its own lab
# names and run directories.
test: deps kernel prepare ipvs-bins ## all tests: unit and privileged (root) here, then every IPVS test in one micro-VM
	$(GO) test -count=1 -timeout $(SUITE_TIMEOUT) ./...
	@mkdir -p reports
	$(IN_KERNEL) sh -c "$$IPVS_TESTS"

# field runs the field corpus (fixtures/field, docs/field.md's table) in
# the lab: each case that lvslab runs, in steady state, as given and as
# prescribed. Only the Ginkgo specs: no package's IPVS tests.
field: GINKGO_FLAGS += --label-filter=field
field: IPVS_TEST_PKGS :=
field: deps kernel prepare ipvs-bins ## the field corpus (fixtures/field) in the lab, each case as given and as prescribed, against docs/field.md
	@mkdir -p reports
	$(IN_KERNEL) sh -c "$$IPVS_TESTS"

# soak runs the long, bounded checks no make test carries: 100 up/down
# cycles, up SIGKILLed at nine points then sweep, four labs at once (on the
# host), and 20 failovers and failbacks with the write workload (in the
# micro-VM). Each checks the host clean; reports/bench/SOAK.md gets their
# numbers (raw output: reports/bench/raw/soak.txt).
soak: export LVSLAB_SOAK := 1
soak: SHELL := /bin/bash
soak: deps kernel build ## long, bounded runs that must leave nothing behind and lose no write; writes reports/bench/SOAK.md (root, about 4 minutes here)
	@mkdir -p reports/bench/raw
	@{ echo "# machine: $$(nproc) cores, $$(free -g | awk '/Mem/{print $$2}') GiB, $$(. /etc/os-release; echo $$PRETTY_NAME)"; \
	   echo "# date: $$(date -u +%F)"; \
	   $(GO) test -count=1 -p 1 -run '^TestSoak' -v -timeout 60m ./cmd/lvslab/ && \
	   $(GO) test -count=1 -run '^TestIPVSSoakFailover$$' -v -timeout 30m $(BENCH_KEXEC) ./scenarios/; } 2>&1 | tee reports/bench/raw/soak.txt; \
	   rc=$${PIPESTATUS[0]}; \
	{ echo "# Soak"; echo; echo "Generated by \`make soak\` ($$(date -u +%F), $$(nproc) cores, TCG for the failovers); raw output: [raw/soak.txt](raw/soak.txt)."; \
	  echo; grep '^soak:' reports/bench/raw/soak.txt | sed 's/^soak: /- /'; \
	  echo; grep -E '^(--- |ok|FAIL)' reports/bench/raw/soak.txt | sed 's/^/    /'; } > reports/bench/SOAK.md; exit $$rc

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

# IPVS benchmarks run where kernel IPVS is: in the micro-VM here. The
# crash hole's 135 runs take over the micro-VM's default 30 min.
BENCH_KEXEC := -exec "$(CURDIR)/$(BIN) kexec"
HOLE_KEXEC  := -exec "$(CURDIR)/$(BIN) kexec --timeout 90m"
# Six labs at once, twelve mariadbd: 4 GiB, as make conformance's.
# FAILOVER_BENCH narrows the intervals (one takes about 18 minutes) into
# reports/bench/raw/$(FAILOVER_RAW).txt.
FAILOVER_KEXEC := -exec "$(CURDIR)/$(BIN) kexec --timeout 150m --memory 4096"
# The crash hole's rate: HOLE_RATE_ROUNDS rounds of six labs (about 33 s
# a round) for each implementation with the fix, HOLE_UNFIXED_ROUNDS
# without it (the mark alone, backup_only), where every run loops.
HOLE_RATE_ROUNDS    ?= 50
HOLE_UNFIXED_ROUNDS ?= 5
FAILOVER_BENCH ?= BenchmarkIPVSFailoverLoad/advert-(20|50|100)ms$$
FAILOVER_RAW   ?= failover
BENCH_KERNEL = $$($(BIN) vm run -- uname -r) in the micro-VM (TCG) when the host lacks ip_vs

# script_raw runs the script $(2) (in fixtures/bench/, with arguments
# $(3)) into reports/bench/raw/$(1).txt with a header naming the machine;
# $(4) is its title, $(5) what to expect on the way.
define script_raw
	@echo "bench: $(5) -> reports/bench/raw/$(1).txt"
	@{ echo "# title: $(4)"; \
	   echo "# command: fixtures/bench/$(2) . $(3)"; \
	   echo "# machine: $$(nproc) cores, $$(free -g | awk '/Mem/{print $$2}') GiB, $$(. /etc/os-release; echo $$PRETTY_NAME)"; \
	   echo "# kernel: $(BENCH_KERNEL)"; \
	   echo "# date: $$(date -u +%F)"; \
	   fixtures/bench/$(2) . $(3); } > reports/bench/raw/$(1).txt.new
	@mv reports/bench/raw/$(1).txt.new reports/bench/raw/$(1).txt
endef

# suite: make test on a clean clone of HEAD, and the conformance suite in
# PROCS processes against serial (fixtures/bench/suite.sh). newcomer:
# what a newcomer does, NEWCOMER_RUNS times: a fresh clone and cache,
# make run, make test (fixtures/bench/newcomer.sh).
NEWCOMER_RUNS ?= 5
suite_raw = $(call script_raw,suite,suite.sh,$(PROCS),Test suite: make test on a clean clone (warm caches); conformance in $(PROCS) Ginkgo processes vs serial (PROCS=1),make test and the conformance suite (about 25 minutes))
newcomer_raw = $(call script_raw,newcomer,newcomer.sh,$(NEWCOMER_RUNS),A newcomer: fresh clone and LVSLAB_CACHE$(comma) make run then make test ($(NEWCOMER_RUNS) times; Debian packages and Go's build cache kept),a fresh clone and cache$(comma) make run and make test$(comma) $(NEWCOMER_RUNS) times (about 5 minutes each))
comma := ,

# make bench BENCH_SETS="director run" reruns some sets; BENCH.md is
# always regenerated from every raw file (each names its date).
BENCH_SETS ?= lab kernel director scenarios load run check field collect hole hole-candidates hole-fast hole-backup-only hole-rate hole-rate-unfixed failover failover-safe suite newcomer
bench: export LVSLAB_BIN := $(CURDIR)/$(BIN)
bench: export LVSLAB_REQUIRE_IPVS := 1
bench: deps kernel build ## run the benchmarks (BENCH_SETS) and regenerate reports/bench/BENCH.md (root)
	$(if $(filter lab,$(BENCH_SETS)),$(call bench_raw,./lab/,lab,Lab engine: two-director up+down vs an iproute2 script; MariaDB ready))
	$(if $(filter kernel,$(BENCH_SETS)),$(call bench_raw,./lab/kernel/,kernel,Kernel runner: lvslab vm run -- true under TCG vs the DESIGN.md boot recipe))
	$(if $(filter director,$(BENCH_SETS)),$(call bench_raw,./director/,director,Director: IPVS reconcile vs ipvsadm; failover vs keepalived,$(BENCH_KEXEC),$(BENCH_KERNEL)))
	$(if $(filter scenarios,$(BENCH_SETS)),$(call bench_raw,./scenarios/,scenarios,Conformance: one steady-state scenario from nothing to a verdict vs a shell script,-bench BenchmarkIPVSSteadyState $(BENCH_KEXEC),$(BENCH_KERNEL)))
	$(if $(filter load,$(BENCH_SETS)),$(call bench_raw,./scenarios/,load,Load: p99 latency at 200 connections/s of the fwmark pair vs one director,-bench BenchmarkIPVSLoad $(BENCH_KEXEC),$(BENCH_KERNEL)))
	$(if $(filter run,$(BENCH_SETS)),$(call bench_raw,./cmd/lvslab/,run,The headline job: lvslab run (six scenarios at once) from start to exit,-bench BenchmarkRun,$(BENCH_KERNEL)))
	$(if $(filter check,$(BENCH_SETS)),$(call bench_raw,./cmd/lvslab/,check,lvslab check on the reference pair (12 runs) vs lvslab run on the same cells of the template pair,-bench BenchmarkCheck,$(BENCH_KERNEL)))
	$(if $(filter field,$(BENCH_SETS)),$(call bench_raw,./cmd/lvslab/,field,The field corpus: lvslab check in steady state on every case$(comma) unaided$(comma) against the verdicts written beforehand (once),-bench BenchmarkField -count 1,$(BENCH_KERNEL)))
	$(if $(filter hole,$(BENCH_SETS)),$(call bench_raw,./scenarios/,hole,The crash hole: 40 client ports closed through the MASTER and reused after its SIGKILL$(comma) each implementation with the mark alone (fwmark-only)$(comma) a fresh lab per run$(comma) with each remedy,-bench 'BenchmarkIPVSCrashHole/.*/(none|conn_reuse_mode=3|peer-redirect)$$' -benchtime 1x $(HOLE_KEXEC),$(BENCH_KERNEL)))
	$(if $(filter hole-candidates,$(BENCH_SETS)),$(call bench_raw,./scenarios/,hole-candidates,The crash hole with other candidate remedies: IPVS's FIN_WAIT timeout at 1 s$(comma) expire_nodest_conn$(comma) expire_quiescent_template; keepalived and the lvslab director with the mark alone,-bench 'BenchmarkIPVSCrashHole/.*/(tcpfin=1s|expire_nodest_conn=1|expire_quiescent_template=1)$$' -benchtime 1x $(HOLE_KEXEC),$(BENCH_KERNEL)))
	$(if $(filter hole-backup-only,$(BENCH_SETS)),$(call bench_raw,./scenarios/,hole-backup-only,The crash hole under backup_only: the same port reuse after the MASTER's SIGKILL$(comma) keepalived and the lvslab director with backup_only and the sync daemon instead of the mark,-bench 'BenchmarkIPVSCrashHole/.*/backup-only$$' -benchtime 1x $(HOLE_KEXEC),$(BENCH_KERNEL)))
	$(if $(filter hole-fast,$(BENCH_SETS)),$(call bench_raw,./scenarios/,hole-fast,The crash hole at 50 ms adverts (the reuse within the second of the kill): IPVS's FIN_WAIT timeout at 1 s and the peer REDIRECT$(comma) keepalived and the lvslab director with the mark alone,-bench 'BenchmarkIPVSCrashHole/.*/(tcpfin=1s|peer-redirect)$(comma)advert=50ms$$' -benchtime 1x $(HOLE_KEXEC),$(BENCH_KERNEL)))
	$(if $(filter hole-rate,$(BENCH_SETS)),$(call bench_raw,./scenarios/,hole-rate,The crash hole's rate with the fix (the mark and the peer REDIRECT): failover-kill with 40 client ports reused$(comma) rounds of six fresh labs at once$(comma) 6 runs a round,-bench 'BenchmarkIPVSCrashHoleRate/fwmark$$/' -benchtime $(HOLE_RATE_ROUNDS)x -count 1 $(FAILOVER_KEXEC),$(BENCH_KERNEL)))
	$(if $(filter hole-rate-unfixed,$(BENCH_SETS)),$(call bench_raw,./scenarios/,hole-rate-unfixed,The crash hole's rate without the REDIRECT: the mark alone (fwmark-only) and backup_only$(comma) the same runs,-bench 'BenchmarkIPVSCrashHoleRate/(fwmark-only|backup-only)/' -benchtime $(HOLE_UNFIXED_ROUNDS)x -count 1 $(FAILOVER_KEXEC),$(BENCH_KERNEL)))
	$(if $(filter failover,$(BENCH_SETS)),$(call bench_raw,./scenarios/,$(FAILOVER_RAW),Sub-second failover under load: 34 rounds of six labs at once (three lvslab director pairs$(comma) three keepalived)$(comma) the fwmark pair with writes every 50 ms$(comma) 5 s with both up$(comma) then the MASTER's director SIGKILLed,-bench '$(FAILOVER_BENCH)' -benchtime 34x -count 1 $(FAILOVER_KEXEC),$(BENCH_KERNEL)))
	$(if $(filter failover-safe,$(BENCH_SETS)),$(call bench_raw,./scenarios/,failover-safe,Failover at 200 ms adverts under the same load: 17 rounds of six labs at once (where false takeovers stop on this runner),-bench 'BenchmarkIPVSFailoverLoad/advert-200ms$$' -benchtime 17x -count 1 $(FAILOVER_KEXEC),$(BENCH_KERNEL)))
	$(if $(filter collect,$(BENCH_SETS)),$(call bench_raw,./scenarios/diagnose/,collect,Collect and diagnose: lvslab collect on a BACKUP under connections vs fixtures/bench/collect.sh; lvslab diagnose on the two bundles,-bench 'BenchmarkIPVSCollect|BenchmarkDiagnose' $(BENCH_KEXEC),$(BENCH_KERNEL)))
	$(if $(filter suite,$(BENCH_SETS)),$(suite_raw))
	$(if $(filter newcomer,$(BENCH_SETS)),$(newcomer_raw))
	$(GO) run ./cmd/benchmd -targets reports/bench/targets.txt -o reports/bench/BENCH.md reports/bench/raw/*.txt

clean: ## remove build outputs
	rm -rf bin $(IPVS_BINS)
