// Package runtimes holds the tier of VM tests in which real container
// runtimes are the plugins' clients: containerd's CRI plugin driven by
// crictl, and Podman with its CNI network backend. Both run Debian's
// packages in the vmtest guest against a segment of veth pairs, with
// images the tests build (a static busybox, and the project's own image
// from make image), never pulled.
//
// The guest boots the project's initramfs, whose root is the kernel's
// rootfs: pivot_root(2) cannot leave it, so both runtimes are configured
// not to pivot (runc's and crun's no-pivot mode). Everything else is as on
// a node.
package runtimes
