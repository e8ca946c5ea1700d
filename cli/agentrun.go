package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/agent"
	"github.com/opensphere/sphere/bootloader"
	"github.com/opensphere/sphere/localapi"
	"github.com/opensphere/sphere/rot"
	"github.com/opensphere/sphere/sandbox"
	"github.com/opensphere/sphere/supervisor"
	"github.com/opensphere/sphere/uplink"
)

// updateFlags are the update engine's options of `sphere agent`.
type updateFlags struct {
	bootloader, bootloaderState string
	slotA, slotB                string
	healthWindow                time.Duration
	reboot                      string
	bandwidth                   int64
}

func (u *updateFlags) register(fl interface {
	StringVar(*string, string, string, string)
	DurationVar(*time.Duration, string, time.Duration, string)
	Int64Var(*int64, string, int64, string)
}) {
	fl.StringVar(&u.bootloader, "bootloader", "", "A/B boot switch for OS updates: file, uboot or grub (docs/bootloader.md); empty: no OS updates")
	fl.StringVar(&u.bootloaderState, "bootloader-state", "", "the file backend's state file (default <state-dir>/bootloader.json)")
	fl.StringVar(&u.slotA, "slot-a", "", "OS slot a: a block device or file (required with --bootloader)")
	fl.StringVar(&u.slotB, "slot-b", "", "OS slot b: a block device or file (required with --bootloader)")
	fl.DurationVar(&u.healthWindow, "health-window", time.Minute, "how long apps must stay up after an update before it is committed")
	fl.StringVar(&u.reboot, "reboot-command", "reboot", "the command that reboots the device after an OS slot is switched; empty: wait for someone to reboot")
	fl.Int64Var(&u.bandwidth, "bandwidth", 0, "download limit in bytes per second; 0: unlimited")
}

// updater makes the update engine from the flags.
func (u *updateFlags) updater(ag *agent.Agent, sup *supervisor.Supervisor, stateDir string, log *slog.Logger) (*agent.Updater, error) {
	cfg := agent.UpdateConfig{Apps: sup, HealthWindow: u.healthWindow, BytesPerSecond: u.bandwidth}
	if u.bootloader != "" {
		if u.slotA == "" || u.slotB == "" {
			return nil, errors.New("--bootloader needs --slot-a and --slot-b")
		}
		state := u.bootloaderState
		if state == "" {
			state = filepath.Join(stateDir, "bootloader.json")
		}
		bl, err := bootloader.New(bootloader.Config{Backend: bootloader.Backend(u.bootloader), StateFile: state, Logger: log})
		if err != nil {
			return nil, err
		}
		cfg.Bootloader = bl
		cfg.Slots = map[bootloader.Slot]string{bootloader.SlotA: u.slotA, bootloader.SlotB: u.slotB}
	}
	if args := strings.Fields(u.reboot); len(args) > 0 {
		cfg.Reboot = func() error {
			if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
				return fmt.Errorf("%s: %v: %s", u.reboot, err, out)
			}
			return nil
		}
	}
	return agent.NewUpdater(ag, cfg)
}

// runAgent runs the device agent's parts together until ctx ends: the
// attestation loop, the app supervisor, the update engine, the local admin
// socket and the apps' socket.
func runAgent(ctx context.Context, ag *agent.Agent, r rot.RootOfTrust, log *slog.Logger, f *agentFlags) error {
	switch f.appSocket {
	case "":
		f.appSocket = filepath.Join(f.stateDir, "app.sock")
	case "off":
		f.appSocket = ""
	}
	// Compartments hide the shared dirs unless the app's own files (under
	// the state dir) are there too.
	abs, _ := filepath.Abs(f.appSocket)
	state, _ := filepath.Abs(f.stateDir)
	if rel, err := filepath.Rel(state, abs); f.appSocket != "" && !f.noSandbox && sandbox.HiddenFromApps(abs) && (err != nil || strings.HasPrefix(rel, "..")) {
		return fmt.Errorf("--app-socket %s: apps cannot see it, compartments hide %s; put it in the state dir (the default)", f.appSocket, strings.Join(sandbox.SharedDirs, ", "))
	}
	comps, prot, err := f.compartments(log)
	if err != nil {
		return err
	}
	supCfg := supervisor.Config{Logger: log.With("part", "supervisor"),
		OnEvent: func(e supervisor.Event) { ag.RecordFailure(appFailure(e)) }}
	if comps != nil {
		supCfg.Launcher = comps
	}
	sup := supervisor.New(supCfg)
	defer sup.Close()
	appByUID := func(int) (supervisor.App, bool) { return supervisor.App{}, false }
	if comps != nil {
		comps.Attach(sup)
		appByUID = comps.AppByUID
	}
	upd, err := f.update.updater(ag, sup, f.stateDir, log)
	if err != nil {
		return err
	}
	ag.OnCheckNow(upd.CheckNow)
	eg, ctx := errgroup.WithContext(ctx)
	// Each part's goroutine records a panic as a failure report (on disk)
	// before the process dies of it.
	run := func(f func() error) { eg.Go(func() error { defer ag.RecordPanic(); return f() }) }
	if f.adminSocket != "" {
		l, err := localapi.Listen(f.adminSocket, 0o600)
		if err != nil {
			return err
		}
		adm := &localapi.Admin{Apps: sup, Status: func() localapi.Status {
			st := agentStatus(ag, r, f)
			st.Protections = prot
			st.Update = upd.Status()
			return st
		}, UpdateCheck: func(ctx context.Context) (any, error) {
			err := upd.Check(ctx)
			if errors.Is(err, agent.ErrReboot) {
				err = nil // the status says what waits
			}
			return upd.Status(), err
		}}
		run(func() error { return localapi.Serve(ctx, l, adm.Handler()) })
	}
	var up *uplink.Client
	if f.mqttBroker != "" {
		roots, err := readPool("--mqtt-ca-file", f.mqttCAFile)
		if err != nil {
			return err
		}
		up, err = uplink.New(uplink.Config{Broker: f.mqttBroker, Protocol: f.mqttProtocol, Username: f.mqttUsername, RootCAs: roots, Cert: ag.TLSCertificate,
			OutboxDir: filepath.Join(f.stateDir, "uplink-outbox"), SessionExpiry: time.Hour, Logger: log.With("part", "uplink")})
		if err != nil {
			return err
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			up.Close(cctx)
		}()
	}
	if f.appSocket != "" {
		// Every app may connect; the uid the kernel reports says which app
		// is calling, and each route checks that app's capabilities.
		l, err := localapi.Listen(f.appSocket, 0o666)
		if err != nil {
			return err
		}
		api := &localapi.AppAPI{Tenant: ag.TenantID, AppByUID: appByUID}
		if up != nil {
			api.Uplink = up
		}
		upd.AppRoutes(api)
		run(func() error { return localapi.Serve(ctx, l, api.Handler()) })
	}
	run(func() error { return ag.Run(ctx) })
	run(func() error { return upd.Run(ctx) })
	return eg.Wait()
}

// compartments makes the sandbox apps run in, and says which protections
// it has. With --no-sandbox apps run plainly as the agent's user: for
// development only, and said loudly.
func (f *agentFlags) compartments(log *slog.Logger) (*agent.Compartments, []localapi.Protection, error) {
	if f.noSandbox {
		log.Error("apps run WITHOUT compartments (--no-sandbox): every app has the agent's rights; for development only")
		return nil, []localapi.Protection{{Name: "compartments", Active: false, Detail: "turned off with --no-sandbox"}}, nil
	}
	var board *sandbox.Board
	if f.boardFile != "" {
		data, err := os.ReadFile(f.boardFile)
		if err != nil {
			return nil, nil, err
		}
		if board, err = sandbox.ParseBoard(data); err != nil {
			return nil, nil, fmt.Errorf("--board %s: %w", f.boardFile, err)
		}
	}
	sb := sandbox.New(sandbox.Config{Board: board, Logger: log.With("part", "sandbox"), DNSServers: nameservers("/etc/resolv.conf")})
	var env []string
	if f.appSocket != "" {
		env = append(env, "SPHERE_APP_SOCKET="+f.appSocket)
	}
	comps, err := agent.NewCompartments(sb, sandbox.IDRange{}, f.stateDir, env)
	if err != nil {
		return nil, nil, err
	}
	var prot []localapi.Protection
	for _, p := range sb.Status().Protections {
		prot = append(prot, localapi.Protection{Name: p.Name, Active: p.Active, Detail: p.Detail})
	}
	return comps, prot, nil
}

// nameservers reads the DNS servers of a resolv.conf, which apps may query.
func nameservers(path string) []netip.Addr {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, line := range strings.Split(string(data), "\n") {
		if fields := strings.Fields(line); len(fields) >= 2 && fields[0] == "nameserver" {
			if a, err := netip.ParseAddr(fields[1]); err == nil {
				out = append(out, a)
			}
		}
	}
	return out
}

// agentStatus is the agent's part of `sphere agent status`.
func agentStatus(ag *agent.Agent, r rot.RootOfTrust, f *agentFlags) localapi.Status {
	st := localapi.Status{DeviceID: ag.DeviceID(), Server: f.server, RoT: string(r.Kind()), Protections: []localapi.Protection{}}
	if c := ag.Certificate(); c != nil {
		t := c.NotAfter.UTC()
		st.CertificateNotAfter = &t
	}
	last := ag.LastResult()
	st.LastAttestation, st.LastAttestationReason = string(last.Result), string(last.Reason)
	return st
}

// appFailure turns an app's exit, crash or restart loop into a failure
// report.
func appFailure(e supervisor.Event) sphere.FailureEvent {
	ev := sphere.FailureEvent{Class: sphere.FailureClassApp, Description: e.Description, ComponentID: e.App.ComponentID,
		ImageID: e.App.ImageID, Version: e.App.Version, FirstTime: e.Time, LastTime: e.Time}
	switch e.Kind {
	case supervisor.EventCrash:
		ev.Category, ev.Signal = sphere.FailureAppCrash, e.Signal
	case supervisor.EventRestartLoop:
		ev.Category = sphere.FailureAppRestartLoop
	default:
		code := e.ExitCode
		ev.Category, ev.ExitCode = sphere.FailureAppExit, &code
	}
	return ev
}
