# make demo   the example network, natively or in a VM (see README)
# make test   unit tests natively, then the privileged tests in a VM (three kernels)
# make bench  latency and scale, ours beside the reference, in a VM
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec

GO      ?= go
CACHE   := $(CURDIR)/.cache
TOOLS   := $(CACHE)/bin
VMEXEC  := $(TOOLS)/vmexec
TESTSUM := $(TOOLS)/testsum
COUNTS  := $(CACHE)/test-counts
# IMAGE: the archive make image writes, an image named IMAGE_REF (the name
# deploy/kubernetes/daemonset.yaml runs).
IMAGE     := $(CACHE)/image/ipvlan-cni.tar
IMAGE_REF ?= localhost/ipvlan-cni:dev
export GOFLAGS := -buildvcs=false

# Packages whose tests need a real kernel: they run in the VM, one boot each.
VM_PKGS := ./internal/testenv ./plugins/main/ipvlan ./plugins/ipam/dhcp

# The VM tiers boot each of Debian's kernels in turn: 6.1 generic, 6.1 cloud
# (the flavour Debian's cloud images run: no wireless support, no /dev/port)
# and 6.12 LTS (modules compressed with xz).
CLOUD_KERNEL := linux-image-cloud-amd64
GENERIC_KERNEL := linux-image-amd64
VM_KERNELS   := linux-image-amd64 $(CLOUD_KERNEL) linux-image-6.12-amd64

.PHONY: all build tools deps unit vmtest vmtest-runtimes test demo bench image install clean

all: build

## build: the plugins, static, in bin/. PLUGIN_LDFLAGS keeps the Go heap off
## transparent huge pages (see PluginLDFlags in internal/vmtest).
PLUGIN_LDFLAGS := -X=runtime.godebugDefault=disablethp=1
build:
	CGO_ENABLED=0 $(GO) build -ldflags='$(PLUGIN_LDFLAGS)' -o bin/ ./plugins/main/... ./plugins/ipam/...

tools:
	@mkdir -p $(TOOLS)
	$(GO) build -o $(TOOLS)/ ./internal/cmd/vmexec ./internal/cmd/testsum

## deps: the Debian packages the VM harness uses (vmexec also installs them),
## the reference plugins that host-local's interoperability test and
## make bench compare against, the etcd server cluster-ipam's tests run, dnsmasq,
## the DHCP server of dhcp's tests, and the runtimes of the runtime tier
REFERENCE := /usr/lib/cni
DNSMASQ   := /usr/sbin/dnsmasq
DEBS := qemu-system-x86 busybox-static iproute2 nftables xz-utils containernetworking-plugins etcd-server dnsmasq-base \
	containerd runc podman conmon crun
deps:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	  test -z "$$missing" || { apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; }

unit: tools deps
	@rm -f $(COUNTS)
	@unformatted=$$(gofmt -l .); test -z "$$unformatted" || { echo "gofmt needed: $$unformatted"; exit 1; }
	$(GO) vet ./...
	GOOS=darwin $(GO) vet ./plugins/... ./pkg/...
	$(GO) test -json -count=1 ./... | $(TESTSUM) -label unit -record $(COUNTS)

## vmtest-<kernel package>: the VM tier on one kernel; vmtest: on each
vmtest-%: tools deps build
	VMTEST_KERNEL=$* VMTEST_FILES=$(REFERENCE)/host-local:/usr/bin/etcd:$(DNSMASQ) CGO_ENABLED=0 \
	  $(GO) test -json -count=1 -timeout 20m -exec $(VMEXEC) $(VM_PKGS) | \
	  $(TESTSUM) -label "vm, $*" -no-skip -record $(COUNTS)

vmtest: $(addprefix vmtest-,$(VM_KERNELS))

## vmtest-runtimes: containerd's CRI (driven by crictl, built from tools/)
## and Podman as the plugins' clients, in the VM on the generic kernel, with
## the image of make image; see internal/runtimes
## (crictl goes to the guest's /usr/local/bin, the image to GUEST_IMAGE).
CRICTL   := $(TOOLS)/crictl
GUEST_IMAGE := /var/lib/ipvlan-cni/ipvlan-cni.tar
RUNTIME_FILES := /usr/bin/containerd /usr/bin/containerd-shim-runc-v2 /usr/bin/ctr /usr/sbin/runc \
	/usr/bin/podman /usr/bin/conmon /usr/bin/crun $(REFERENCE)/loopback \
	$(CRICTL)=/usr/local/bin/crictl $(IMAGE)=$(GUEST_IMAGE)
vmtest-runtimes: tools deps build image
	cd tools && CGO_ENABLED=0 $(GO) build -o $(CRICTL) sigs.k8s.io/cri-tools/cmd/crictl
	VMTEST_KERNEL=$(GENERIC_KERNEL) VMTEST_MEMORY=3072 IPVLAN_IMAGE=$(GUEST_IMAGE) \
	  VMTEST_FILES=$$(echo $(RUNTIME_FILES) | tr ' ' :) CGO_ENABLED=0 \
	  $(GO) test -json -count=1 -timeout 15m -exec $(VMEXEC) ./internal/runtimes | \
	  $(TESTSUM) -label "vm, runtimes" -no-skip -record $(COUNTS)

## test: everything, the VM suites included; the last line sums the tiers
test: unit vmtest vmtest-runtimes
	@$(TESTSUM) -total $(COUNTS)

demo: tools deps build
	@CGO_ENABLED=0 $(GO) build -o $(TOOLS)/demo ./internal/cmd/demo
	@if $(TOOLS)/demo -probe 2>/dev/null; then \
	  echo "demo: this kernel has ipvlan: running natively"; \
	  CNI_PATH=$(CURDIR)/bin $(TOOLS)/demo; \
	else \
	  echo "demo: this kernel has no ipvlan (or this is not root): running the demo in a VM"; \
	  cd internal/cmd/demo && $(VMEXEC) $(TOOLS)/demo; \
	fi

## bench: ours beside Debian's reference plugins, in the VM; table + bench.json.
## BENCH_KERNEL picks the kernel: the cloud flavour by default (what cloud
## nodes run), $(GENERIC_KERNEL) for the generic one (see the README).
BENCH_KERNEL ?= $(CLOUD_KERNEL)
bench: tools deps build
	CGO_ENABLED=0 $(GO) build -o $(TOOLS)/ ./internal/cmd/bench ./internal/cmd/noop
	cd internal/cmd/bench && VMTEST_KERNEL=$(BENCH_KERNEL) VMTEST_MEMORY=4096 VMTEST_TIMEOUT=90m \
	  VMTEST_FILES=$(REFERENCE)/ipvlan:$(REFERENCE)/host-local:$(TOOLS)/noop \
	  $(VMEXEC) $(TOOLS)/bench -reference $(REFERENCE) -floor $(TOOLS)/noop | tee $(CACHE)/bench.log
	@sed -n 's/^bench-json: //p' $(CACHE)/bench.log > bench.json && echo "bench: wrote bench.json"
	$(GO) run ./internal/cmd/hlbench -ours bin/host-local -reference $(REFERENCE)/host-local
	CGO_ENABLED=0 $(GO) build -o $(TOOLS)/ ./internal/cmd/clusterbench && $(TOOLS)/clusterbench -bin bin | tee $(CACHE)/clusterbench.log
	@echo "bench: ipvlan ADD with dhcp beside host-local, against dnsmasq, in the VM"
	VMTEST_KERNEL=$(BENCH_KERNEL) VMTEST_FILES=$(DNSMASQ) CGO_ENABLED=0 \
	  $(GO) test -run '^$$' -bench IPVlanAdd -benchtime 1x -exec $(VMEXEC) ./plugins/ipam/dhcp
	@echo "bench: the dhcp daemon's CPU time per renewal with 200 leases held (natively)"
	$(GO) test -run '^$$' -bench RenewalCPU -benchtime 1x ./plugins/ipam/dhcp
	@echo "bench: host-local allocate+release, lease store in memory (tmpfs): the cost of the lease count alone"
	TMPDIR=/dev/shm $(GO) test -run '^$$' -bench . -benchtime 2000x -count 3 ./plugins/ipam/host-local/allocator
	@echo "bench: the same on this machine's disk (temporary directory): adds the file system's own latency"
	$(GO) test -run '^$$' -bench . -benchtime 2000x -count 3 ./plugins/ipam/host-local/allocator

## image: the plugins and the installer (deploy/installer) as an image archive
## at $(IMAGE), named $(IMAGE_REF), written by deploy/image without a container
## daemon: an OCI layout and a docker-save archive in one tar, which
## ctr -n k8s.io images import, podman load and docker load read (see
## deploy/kubernetes). The binaries are built as build does, for linux/amd64.
IMAGE_BIN := $(CACHE)/image/bin
image:
	@mkdir -p $(IMAGE_BIN)
	GOOS=linux GOARCH=amd64 CGO_ENABLED=0 $(GO) build -ldflags='$(PLUGIN_LDFLAGS)' -o $(IMAGE_BIN)/ \
	  ./plugins/main/... ./plugins/ipam/... ./deploy/installer
	$(GO) run ./deploy/image -bin $(IMAGE_BIN) -name $(IMAGE_REF) -o $(IMAGE)

## install: copy the plugins into /opt/cni/bin
install: build
	install -d /opt/cni/bin
	install -m 0755 bin/* /opt/cni/bin/

clean:
	rm -rf bin $(CACHE)
