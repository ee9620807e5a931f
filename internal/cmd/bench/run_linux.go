//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"

	"github.com/ipvlan-cni/ipvlan-cni/internal/cpuidle"
)

// run measures ours and the reference in one environment and fills rep as
// it goes, so that a failure still leaves what was measured. Leaks and
// failed parallel calls are recorded and turned into an error at the end;
// any other error ends the run.
func run(ctx context.Context, cfg config, rep *Report, logf func(string, ...any)) (err error) {
	defer rep.finish()
	rep.Unit = "ms"
	rep.CPUs = runtime.NumCPU()
	rep.Containers, rep.Fill, rep.Parallel, rep.Workers = cfg.containers, cfg.fill, cfg.parallel, cfg.workers
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		rep.Kernel = unix.ByteSliceToString(uts.Release[:])
	}
	if err := raiseFileLimit(); err != nil {
		return err
	}

	tmp, err := os.MkdirTemp("", "bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	e, err := newEnv()
	if err != nil {
		return err
	}
	defer e.close()

	ours, err := newImpl("ours", cfg.ours, tmp, e, "")
	if err != nil {
		return err
	}
	ref, err := newImpl("reference", cfg.reference, tmp, e, "")
	if err != nil {
		return err
	}
	impls := []struct {
		*impl
		rep *ImplReport
	}{{ours, &rep.Ours}, {ref, &rep.Reference}}

	// The pool grows phase by phase, so that a phase runs beside only the
	// namespaces it uses: a container namespace is a bind mount and a net
	// of its own, and thousands of them slow the guest's work on links and
	// processes, which is the attached phase's to measure, not the idle
	// one's.
	grow := func(n int) ([]ns.NetNS, error) {
		had, start := len(e.pool), time.Now()
		pool, err := e.containers(n, cfg.workers)
		if err == nil && len(pool) > had {
			logf("created %d container namespaces in %.1f s, %d in all", len(pool)-had, time.Since(start).Seconds(), len(pool))
			// The kernel goes on working for a while after namespaces are
			// made; a phase should not start in that wake.
			waited, busy := cpuidle.Settle(500*time.Millisecond, 30*time.Second)
			logf("waited %.1f s for the guest to settle (CPU %.0f%% busy)", waited.Seconds(), 100*busy)
		}
		return pool, err
	}
	// Two more than measured: the features phase's resident attachments.
	pool, err := grow(max(cfg.containers+2, cfg.runs))
	if err != nil {
		return err
	}

	// Leaks are recorded and the run goes on; anything else stops it.
	leak := func(err error) error {
		if isLeak(err) {
			logf("%v", err)
			rep.Leaks = append(rep.Leaks, err.Error())
			return nil
		}
		return err
	}

	logf("profile")
	if rep.Profile, err = profile(ctx, ours, ref, pool[:cfg.runs], cfg.floor, tmp); err != nil {
		if err := leak(err); err != nil {
			return err
		}
	}
	if rep.Profile != nil {
		defer func() { rep.Profile.addBreakdowns(rep.Ours.Idle) }()
	}

	// The phases without a fill measure both implementations and the floor
	// together, a container at a time (see cycles); the others run for
	// ours, then for the reference, before the next phase starts.
	both := func(phase, title string, cs []ns.NetNS, set func(*ImplReport) *Verbs, floor *Dist) error {
		logf("%s: ADD, CHECK, DEL in %d containers, one at a time, ours, the reference and the floor in turn", title, len(cs))
		vs, fd, err := cycles(ctx, []*impl{ours, ref}, phase, cs, cfg.floor)
		if err != nil {
			return err
		}
		*floor = fd
		logf("%s: floor p50 %.3f ms, p99 %.3f ms", title, fd.P50, fd.P99)
		for k, im := range impls {
			*set(im.rep) = vs[k]
			logf("%s: %s: p50 ADD %.3f, CHECK %.3f, DEL %.3f ms", im.name, title, vs[k].Add.P50, vs[k].Check.P50, vs[k].Del.P50)
			if err := leak(im.checkLeaks(title, cs)); err != nil {
				return err
			}
		}
		return nil
	}
	logf("warm-up")
	if _, _, err := cycles(ctx, []*impl{ours, ref}, "warm", pool[:3], ""); err != nil {
		return err
	}
	if err := both("idle", "none attached", pool[:cfg.containers], func(r *ImplReport) *Verbs { return &r.Idle }, &rep.Floor); err != nil {
		return err
	}

	logf("none attached: %s; %s", neighStats("arp_cache"), neighStats("ndisc_cache"))

	if err := featuresPhase(ctx, cfg, tmp, e, pool[:cfg.containers+2], rep, leak, logf); err != nil {
		return err
	}

	if pool, err = grow(cfg.parallel); err != nil {
		return err
	}
	for _, im := range impls {
		cs := pool[:cfg.parallel]
		as := im.attachments("parallel", cs)
		logf("%s: %d ADD, then %d DEL, %d workers", im.name, len(as), len(as), cfg.workers)
		wall, addErrs := im.parallel(ctx, verbAdd, as, cfg.workers)
		im.rep.ParallelAddWall = ms(wall)
		wall, delErrs := im.parallel(ctx, verbDel, as, cfg.workers)
		im.rep.ParallelDelWall = ms(wall)
		errs := append(addErrs, delErrs...)
		im.rep.ParallelErrors = len(errs)
		for i, err := range errs {
			if i == 5 {
				rep.Failures = append(rep.Failures, fmt.Sprintf("%s: parallel: %d more errors", im.name, len(errs)-5))
				break
			}
			rep.Failures = append(rep.Failures, "parallel: "+err.Error())
		}
		logf("%s: parallel: ADD %.0f ms, DEL %.0f ms wall, %d errors", im.name, im.rep.ParallelAddWall, im.rep.ParallelDelWall, len(errs))
		if err := leak(im.checkLeaks("parallel", cs)); err != nil {
			return err
		}
	}

	if pool, err = grow(cfg.fill + cfg.containers); err != nil {
		return err
	}
	// The profile's kernel steps run in these containers, while the verbs'
	// measurement leaves them empty.
	profiled := pool[cfg.fill : cfg.fill+min(cfg.runs, cfg.containers)]
	// The fill's namespaces exist, nothing is attached to them yet: what
	// the namespaces alone cost, apart from the slaves on the master.
	if err := both("namespaces", fmt.Sprintf("%d empty namespaces", cfg.fill), pool[cfg.fill:cfg.fill+cfg.containers],
		func(r *ImplReport) *Verbs { return &r.Namespaces }, &rep.NamespacesFloor); err != nil {
		return err
	}
	if rep.Profile != nil {
		logf("%d empty namespaces: the kernel steps of the profile", cfg.fill)
		if err := rep.Profile.addNamespaces(e, profiled); err != nil {
			return err
		}
	}

	// The attached phase measures in namespaces of its own, made once the
	// fill's exist: a runtime makes a pod's namespace just before its ADD.
	// One that has held a container already is not new to the kernel: it
	// has cached the namespace's sysctl directories, behind those of the
	// fill, and every lookup there walks past the fill's 2,000.
	if pool, err = grow(cfg.fill + 2*cfg.containers); err != nil {
		return err
	}
	attached := pool[cfg.fill+cfg.containers : cfg.fill+2*cfg.containers]
	profiled = attached[:min(cfg.runs, cfg.containers)]
	for _, im := range impls {
		// With ours' fill attached, the profile's kernel steps run again in
		// containers the measurement left empty.
		var probe func() error
		if im.impl == ours && rep.Profile != nil {
			probe = func() error {
				logf("%s: %d attached: %s; %s", im.name, cfg.fill, neighStats("arp_cache"), neighStats("ndisc_cache"))
				logf("%s: %d attached: the kernel steps of the profile", im.name, cfg.fill)
				return rep.Profile.addAttached(e, profiled)
			}
		}
		if err := attachedPhase(ctx, im.impl, im.rep, pool[:cfg.fill], attached, cfg, probe, logf); err != nil {
			if err := leak(err); err != nil {
				return err
			}
		}
	}

	for _, im := range impls {
		if err := leak(im.checkLeaks("end", e.pool)); err != nil {
			return err
		}
	}

	var errs []error
	if len(rep.Failures) > 0 {
		errs = append(errs, fmt.Errorf("%d calls failed", len(rep.Failures)))
	}
	if len(rep.Leaks) > 0 {
		errs = append(errs, fmt.Errorf("%d leak checks found something left behind after DEL", len(rep.Leaks)))
	}
	return errors.Join(errs...)
}

// featuresPhase measures ours with hostAccess and with vlan beside the
// plain configuration, the three in turn container by container, as the
// idle phase does. Each feature keeps one resident attachment for the
// whole phase, as a node with pods on a master has: the host-side parts
// (the hostAccess interface, the VLAN sub-interface) are made before the
// phase and removed after it, and what is measured is a pod's ADD and DEL
// beside others, not the first and the last. The leak check afterwards
// covers them: no link but the master is left in the host namespace.
func featuresPhase(ctx context.Context, cfg config, tmp string, e *env, cs []ns.NetNS, rep *Report, leak func(error) error, logf func(string, ...any)) error {
	// One lease store: the three are attached to the master at once, and
	// ipvlan refuses an address twice on one master.
	dataDir := filepath.Join(tmp, "features", "ipam")
	plain, err := newImplIn("plain", cfg.ours, tmp, dataDir, e, "")
	if err != nil {
		return err
	}
	host, err := newImplIn("hostAccess", cfg.ours, tmp, dataDir, e, "\n    \"hostAccess\": true,")
	if err != nil {
		return err
	}
	vlan, err := newImplIn("vlan", cfg.ours, tmp, dataDir, e, "\n    \"vlan\": 10,")
	if err != nil {
		return err
	}
	measured, spare := cs[:len(cs)-2], cs[len(cs)-2:]
	var residents []attachment
	for i, im := range []*impl{host, vlan} {
		a := im.attachments("resident", spare[i:i+1])[0]
		if _, err := im.do(ctx, verbAdd, a); err != nil {
			return err
		}
		residents = append(residents, a)
	}
	logf("features: ADD, CHECK, DEL in %d containers, plain, hostAccess and vlan in turn, beside one resident attachment of each", len(measured))
	vs, _, err := cycles(ctx, []*impl{plain, host, vlan}, "features", measured, "")
	if err != nil {
		return err
	}
	rep.Features = &Features{Plain: vs[0], HostAccess: vs[1], VLAN: vs[2]}
	for i, im := range []*impl{host, vlan} {
		if _, err := im.do(ctx, verbDel, residents[i]); err != nil {
			return err
		}
	}
	for k, im := range []*impl{plain, host, vlan} {
		logf("features: %s: p50 ADD %.3f, CHECK %.3f, DEL %.3f ms", im.name, vs[k].Add.P50, vs[k].Check.P50, vs[k].Del.P50)
	}
	// The three share the containers, the host namespace and the lease
	// store: one check covers them all.
	return leak(plain.checkLeaks("features", cs))
}

// attachedPhase attaches the fill with the workers (untimed, but its wall
// time is recorded), measures ADD, CHECK and DEL in the measured
// containers one at a time, runs probe if there is one, then detaches the
// fill.
func attachedPhase(ctx context.Context, im *impl, rep *ImplReport, fillNS, measuredNS []ns.NetNS, cfg config, probe func() error, logf func(string, ...any)) error {
	fill := im.attachments("fill", fillNS)
	logf("%s: attaching %d containers with %d workers", im.name, len(fill), cfg.workers)
	wall, errs := im.parallel(ctx, verbAdd, fill, cfg.workers)
	rep.FillAddWall = ms(wall)
	var err error
	if len(errs) > 0 {
		return fmt.Errorf("attach the fill: %d ADDs failed, the first: %w", len(errs), errs[0])
	}
	logf("%s: attached %d in %.1f s", im.name, len(fill), wall.Seconds())
	waited, busy := cpuidle.Settle(500*time.Millisecond, 30*time.Second)
	logf("%s: waited %.1f s for the guest to settle (CPU %.0f%% busy)", im.name, waited.Seconds(), 100*busy)
	vs, floor, err := cycles(ctx, []*impl{im}, "attached", measuredNS, cfg.floor)
	if err != nil {
		return err
	}
	rep.Attached, rep.AttachedFloor = vs[0], floor
	logf("%s: %d attached: floor p50 %.3f ms", im.name, len(fill), rep.AttachedFloor.P50)
	logf("%s: %d attached: p50 ADD %.3f, CHECK %.3f, DEL %.3f ms", im.name, len(fill), rep.Attached.Add.P50, rep.Attached.Check.P50, rep.Attached.Del.P50)
	if probe != nil {
		if err := probe(); err != nil {
			return err
		}
	}

	wall, errs = im.parallel(ctx, verbDel, fill, cfg.workers)
	rep.FillDelWall = ms(wall)
	if len(errs) > 0 {
		return fmt.Errorf("detach the fill: %d DELs failed, the first: %w", len(errs), errs[0])
	}
	logf("%s: detached %d in %.1f s", im.name, len(fill), wall.Seconds())
	return im.checkLeaks(fmt.Sprintf("%d attached", len(fill)), append(slices.Clip(fillNS), measuredNS...))
}

// runFloor starts the floor with env added to the bench's environment and
// waits for it to finish.
func runFloor(floor string, env ...string) error {
	cmd := exec.Command(floor)
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("floor: run noop %s: %w", strings.Join(env, " "), err)
	}
	return nil
}
