# nexcage build, test and demo. Every target installs what it needs.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/nexcage/nexcage/internal/version.Version=$(VERSION) -X github.com/nexcage/nexcage/internal/version.Commit=$(COMMIT)
STATICCHECK_VERSION := v0.8.2
DEADCODE_VERSION := v0.52.0
# CRICTL_VERSION is the crictl (sigs.k8s.io/cri-tools) `make deps` builds
# into bin/ for the CRI tests (test/e2e/cri_*_test.go); crictl's version
# follows Kubernetes', any recent one speaks containerd 1.6's CRI v1.
CRICTL_VERSION := v1.37.0
# STRESS_COUNT is how often `make stress` runs each unit test.
STRESS_COUNT ?= 5
# FUZZTIME is how long `make fuzz` runs each fuzz target.
FUZZTIME ?= 30s
# dnsmasq-base (the binary without the dnsmasq package's host-wide DNS
# service) and isc-dhcp-client (/sbin/dhclient, what Proxmox runs for
# host-managed DHCP) serve pvesim's test bridge (`pvesim bridge-up`).
APT_PACKAGES := runc crun lxc busybox-static zstd xz-utils bzip2 skopeo docker-registry tar iproute2 ca-certificates git containerd dnsmasq-base isc-dhcp-client

.PHONY: all deps build test unit e2e lint fuzz demo clean gendocs deb bench stress conformance conformance-check

all: build

# deps installs the Debian packages the tests and the demo run against.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@# Unprivileged LXC containers: like a Proxmox host, root owns the
	@# 100000-165535 id range (LXC as root maps through newuidmap when
	@# the uidmap package is installed, which checks these files).
	@for f in /etc/subuid /etc/subgid; do grep -qs '^root:100000:65536$$' $$f || echo 'root:100000:65536' >> $$f; done
	$(GO) mod download
	@# crictl, Kubernetes' CRI client, through the Go module proxy.
	@$(GO) version -m $(BIN)/crictl 2>/dev/null | grep -qP '^\tmod\tsigs.k8s.io/cri-tools\t$(CRICTL_VERSION)\t' || \
		GOBIN=$(BIN) $(GO) install -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$(CRICTL_VERSION)" sigs.k8s.io/cri-tools/cmd/crictl@$(CRICTL_VERSION)

build:
	@mkdir -p $(BIN)
	@# Static (CGO_ENABLED=0): the Proxmox backend bind-mounts nexcage into
	@# containers as their init helper, where no host libc exists.
	@# nexcage is the small front binary (runc/crun passthrough); it
	@# execs nexcage-core, the full command line, from its directory.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/nexcage ./cmd/nexcage
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/nexcage-core ./cmd/nexcage-core
	$(GO) build -trimpath -o $(BIN)/pvesim ./cmd/pvesim
	@for t in pct pveam pvesh pveversion; do ln -sf pvesim $(BIN)/$$t; done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@test -x $(BIN)/staticcheck || GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(BIN)/staticcheck ./...
	@# deadcode: no function unreachable even from the tests, and none
	@# unreachable from the binaries but the test-only ones listed (why) in
	@# scripts/deadcode-allow.txt.
	@test -x $(BIN)/deadcode || GOBIN=$(BIN) $(GO) install golang.org/x/tools/cmd/deadcode@$(DEADCODE_VERSION)
	@out=$$($(BIN)/deadcode -test ./...); if [ -n "$$out" ]; then echo "dead code:"; echo "$$out"; exit 1; fi
	@out=$$($(BIN)/deadcode ./cmd/... | sed -E 's/:[0-9]+:[0-9]+:/:/' | grep -vxF -f <(sed -n 's/ *#.*//p' scripts/deadcode-allow.txt | grep .)); \
		if [ -n "$$out" ]; then echo "code only tests reach (remove it, or list it with a reason in scripts/deadcode-allow.txt):"; echo "$$out"; exit 1; fi

# stress runs the unit tests STRESS_COUNT times with -race on 1 and 2
# CPUs while other processes load every core (flaky tests show up here,
# not in CI); run it once before each landing.
stress: deps
	@set -e; n=$$(nproc); pids=""; for i in $$(seq $$n); do (while :; do :; done) & pids="$$pids $$!"; done; \
		trap 'kill $$pids 2>/dev/null' EXIT; \
		$(GO) test -race -count=$(STRESS_COUNT) -cpu 1,2 -timeout 60m ./internal/... ./cmd/...

# fuzz runs every Fuzz* target for FUZZTIME each (`go test` alone runs
# them on their seed corpora only, see docs/RELIABILITY.md).
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' internal cmd 2>/dev/null | sort); do \
		pkg=./$$(dirname $$f); \
		for t in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$f | cut -d' ' -f2); do \
			echo "== $$pkg $$t ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

unit:
	$(GO) test -race -count=1 ./internal/... ./cmd/...

# PVE_OLD_E2E, PVE_OLD_RELIABILITY and PVE_OLD_SECURITY are the suites' Proxmox-backend tests, run a second time
# against pvesim as PVE 8.4 (the full suites run against 9.1, pvesim's
# default): nexcage must work on both (issue 12 item 9).
PVE_OLD_E2E := TestProxmox|TestContainerdProxmox|TestTemplateForms|TestTemplatesListPrune
PVE_OLD_RELIABILITY := TestCrash|TestInterrupt|TestPctHang|TestStopFault|TestParallelCreates|TestBadInputCorpus
PVE_OLD_SECURITY := TestUndoAfterCrashAtEachCreateStep|TestUndoOnInterruptAtEachCreateStep

e2e: build
	CRICTL_BIN=$(BIN)/crictl NEXCAGE_BIN=$(BIN)/nexcage PVESIM_BIN=$(BIN)/pvesim $(GO) test -count=1 -timeout 30m ./test/... ./bench/...
	PVESIM_PVE_VERSION=8.4 NEXCAGE_BIN=$(BIN)/nexcage PVESIM_BIN=$(BIN)/pvesim $(GO) test -count=1 -timeout 30m -run '$(PVE_OLD_E2E)' ./test/e2e/
	PVESIM_PVE_VERSION=8.4 NEXCAGE_BIN=$(BIN)/nexcage PVESIM_BIN=$(BIN)/pvesim $(GO) test -count=1 -timeout 30m -run '$(PVE_OLD_RELIABILITY)' ./test/reliability/
	PVESIM_PVE_VERSION=8.4 NEXCAGE_BIN=$(BIN)/nexcage PVESIM_BIN=$(BIN)/pvesim $(GO) test -count=1 -timeout 30m -run '$(PVE_OLD_SECURITY)' ./test/security/

test: deps lint build unit e2e conformance-check

# conformance runs the OCI runtime-tools validation suite (the version
# pinned in conformance/suite.go, fetched through the Go module proxy)
# against nexcage routed to runc, crun and Proxmox (pvesim as PVE 9.1 and
# 8.4), and against runc and crun themselves; it writes CONFORMANCE.md and
# conformance/expected.txt (issue 15). See conformance/README.md.
conformance: deps build
	CONFORMANCE_COMMAND="make conformance" $(GO) run ./cmd/nexcage-conformance -nexcage $(BIN)/nexcage -pvesim $(BIN)/pvesim -out CONFORMANCE.md -expected conformance/expected.txt

# conformance-check is the guard: the tests conformance/expected.txt
# records as passing, on nexcage-runc and nexcage-pve9.1 (privileged and
# unprivileged containers) only; it fails
# when one of them no longer passes.
conformance-check: build
	$(GO) run ./cmd/nexcage-conformance -check -nexcage $(BIN)/nexcage -pvesim $(BIN)/pvesim -expected conformance/expected.txt

# gendocs writes man pages (section 8) and bash/zsh/fish completions.
gendocs:
	$(GO) run ./cmd/nexcage-gendocs -out $(BIN)/docs -version $(VERSION)

# deb builds bin/nexcage_<version>_<arch>.deb with nfpm (packaging/nfpm.yaml):
# a static nexcage, the config as a conffile, man pages, completions, docs.
deb:
	$(GO) run ./cmd/nexcage-deb -src $(CURDIR) -out $(BIN)

demo: deps build
	./scripts/demo.sh

# bench measures nexcage against runc, crun and the original's pct usage
# (issue 7) and writes BENCHMARKS.md; BENCH_QUICK=1 for a smoke run.
# How to read it: bench/README.md.
# State roots go on a tmpfs, as /run/nexcage and /run/runc are on a Proxmox host.
BENCH_TMPDIR ?= /dev/shm
bench: deps build
	BENCH_COMMAND="make bench" $(GO) run ./bench/cmd/nexcage-bench -nexcage $(BIN)/nexcage -pvesim $(BIN)/pvesim -tmpdir $(BENCH_TMPDIR) -out BENCHMARKS.md

clean:
	rm -rf $(BIN)
