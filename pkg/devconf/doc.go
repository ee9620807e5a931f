// Package devconf sets a link's IPv4 device configuration, the values of
// /proc/sys/net/ipv4/conf/<if>/, by netlink: RTM_SETLINK with
// IFLA_AF_SPEC { AF_INET { IFLA_INET_CONF { key: value } } }, which `ip`
// has no command for.
//
// Netlink reaches the link through its index in the caller's namespace,
// where /proc/sys is looked up by path, and the first lookup of
// /proc/sys/net/ipv4 in a new namespace compares the entry of every other
// namespace that has looked it up, one by one: milliseconds on a host with
// thousands of containers. The kernel has no such netlink form for IPv6's
// per-device values.
package devconf
