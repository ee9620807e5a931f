// Package vmtest boots a real Linux kernel under qemu and runs one program
// inside it as PID 1's child, so tests that need kernel features the build
// machine lacks (ipvlan above all) run against a real kernel.
//
// The kernel and its modules come from Debian's kernel package, the one
// linux-image-amd64 (or Config.KernelPackage, linux-image-cloud-amd64 say)
// depends on when the runner starts; they are unpacked once into a cache
// directory and reused. The guest's root file system is an
// initramfs written by this package: the guest init (package vminit),
// busybox, Debian's ip and nft with their libraries, the kernel modules the
// tests need (loaded in dependency order), the project's plugin binaries in
// /opt/cni/bin, the program to run and the package's testdata directory.
//
// The guest's output arrives on a second serial port, apart from the kernel
// console, and its exit status through qemu's isa-debug-exit device,
// confirmed by a marker line; a kernel panic, a silent power-off or a
// timeout is never taken for success.
//
// Requires: root on a Debian host (it installs qemu-system-x86,
// busybox-static, iproute2 and nftables with apt-get when missing). No KVM
// is needed: qemu runs in TCG emulation.
package vmtest
