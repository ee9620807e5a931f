// Package nldump retries netlink dumps that the kernel interrupted.
//
// A dump (ip link show, ip addr show, ip route show) that races with a
// change comes back flagged NLM_F_DUMP_INTR, which the netlink library
// reports as netlink.ErrDumpInterrupted beside a possibly incomplete
// answer. Every dump in this project goes through Retry, so that answer is
// never taken for the whole truth.
package nldump
