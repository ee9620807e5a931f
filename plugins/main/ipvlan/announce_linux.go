package main

import (
	"net"
	"sync"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/ipvlan-cni/ipvlan-cni/pkg/announce"
)

// announcement tells the master's segment that the container's addresses
// are here (l2 only): a gratuitous ARP per IPv4 address and an unsolicited
// neighbour advertisement per IPv6 one, sent out of the master from its
// MAC, which every slave shares, so that peers holding a stale neighbour
// entry for a reused address update it at once.
//
// The kernel's arp_notify and ndisc_notify would send the same frames
// through the slave when it comes up, and in l2 mode the ipvlan driver
// hands a slave's broadcast and multicast to every other slave of the
// master: one packet to process in each container's namespace, on the CPU
// that brought the link up, for slaves that know every other slave by the
// same MAC already. With 2,000 slaves that is most of what ADD grows by.
// Sent from the master, the frames reach the segment only.
//
// A packet socket's close waits for an RCU grace period (the kernel's
// packet_release calls synchronize_net): a normal one, ~15 ms in the VM,
// unless some thread holds rtnl at that moment, when it waits for an
// expedited one, well under a millisecond. The rename holds rtnl through
// its own grace period, so the announcement is sent, and its socket
// closed, while the kernel renames the link: the addresses are announced
// before they are configured, but nothing runs in the container before ADD
// returns. When the addresses come later than the rename (a slow IPAM
// plugin) or the socket cannot be had, the kernel announces instead
// (arp_notify, ndisc_notify), as it does in l3 and l3s, where the slave
// has NOARP and the kernel sends nothing for IPv4.
type announcement struct {
	renaming chan int      // the renaming thread's id, sent as the rename starts
	renamed  chan struct{} // closed when the rename has returned
	quit     chan struct{} // closed when ADD gives up before the rename
	decided  chan struct{} // closed once sent is set, before the close
	done     chan struct{} // closed when the socket is closed
	sent     bool          // whether the frames went out of the master

	quitOnce sync.Once
}

// startAnnouncement starts the announcement's goroutine; it waits for the
// rename (renameStarted) and for the addresses.
func (s *session) startAnnouncement(master netlink.Link, addresses func() (*current.Result, error)) *announcement {
	a := &announcement{
		renaming: make(chan int, 1),
		renamed:  make(chan struct{}),
		quit:     make(chan struct{}),
		decided:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	if s.conf.Mode != ModeL2 {
		close(a.decided)
		close(a.done)
		return a
	}
	go func() {
		defer close(a.done)
		tid, sender := a.run(s, master, addresses)
		a.sent = sender != nil
		close(a.decided)
		if sender != nil {
			_ = sender.CloseWhileBlocked(tid, a.renamed)
		}
	}()
	return a
}

// run sends the frames once the rename has started and the addresses are
// known, and returns the renaming thread's id and the open sender, or a
// nil sender when it sent nothing: the rename was over by then, or the
// socket failed (closed already).
func (a *announcement) run(s *session, master netlink.Link, addresses func() (*current.Result, error)) (int, *announce.Sender) {
	var tid int
	select {
	case tid = <-a.renaming:
	case <-a.quit:
		return 0, nil
	}
	addrs, err := addresses()
	if err != nil {
		return 0, nil
	}
	ips := make([]net.IP, 0, len(addrs.IPs))
	for _, ip := range addrs.IPs {
		ips = append(ips, ip.Address.IP)
	}
	if len(ips) == 0 || isClosed(a.renamed) {
		return 0, nil
	}
	var sender *announce.Sender
	send := func() error {
		var err error
		if sender, err = announce.Open(master); err != nil {
			return err
		}
		if err := sender.Announce(ips); err != nil {
			_ = sender.CloseWhileBlocked(tid, a.renamed)
			return err
		}
		return nil
	}
	if s.conf.LinkInContainer {
		err = s.netns.Do(func(ns.NetNS) error { return send() })
	} else {
		err = send()
	}
	if err != nil {
		return 0, nil
	}
	return tid, sender
}

// renameStarted hands the goroutine the id of the thread about to rename
// the link; the caller's goroutine must be locked to it.
func (a *announcement) renameStarted(tid int) { a.renaming <- tid }

// renameDone tells the goroutine that the rename has returned.
func (a *announcement) renameDone() { close(a.renamed) }

// sentByMaster waits for the goroutine's decision: true when the frames
// went out of the master, false when the kernel is to announce.
func (a *announcement) sentByMaster() bool {
	<-a.decided
	return a.sent
}

// wait waits until the socket is closed.
func (a *announcement) wait() { <-a.done }

// abandon stops the goroutine if the rename has not started, and waits
// for it: an undo step.
func (a *announcement) abandon() {
	a.quitOnce.Do(func() { close(a.quit) })
	<-a.done
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
