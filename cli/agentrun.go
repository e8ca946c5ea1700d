package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/opensphere/sphere/agent"
	"github.com/opensphere/sphere/bootloader"
	"github.com/opensphere/sphere/localapi"
	"github.com/opensphere/sphere/rot"
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
	sup := supervisor.New(supervisor.Config{Logger: log.With("part", "supervisor")})
	defer sup.Close()
	upd, err := f.update.updater(ag, sup, f.stateDir, log)
	if err != nil {
		return err
	}
	ag.OnCheckNow(upd.CheckNow)
	g, ctx := errgroup.WithContext(ctx)
	if f.adminSocket != "" {
		l, err := localapi.Listen(f.adminSocket, 0o600)
		if err != nil {
			return err
		}
		adm := &localapi.Admin{Apps: sup, Status: func() localapi.Status {
			st := agentStatus(ag, r, f)
			st.Update = upd.Status()
			return st
		}, UpdateCheck: func(ctx context.Context) (any, error) {
			err := upd.Check(ctx)
			if errors.Is(err, agent.ErrReboot) {
				err = nil // the status says what waits
			}
			return upd.Status(), err
		}}
		g.Go(func() error { return localapi.Serve(ctx, l, adm.Handler()) })
	}
	var up *uplink.Client
	if f.mqttBroker != "" {
		roots, err := readPool("--mqtt-ca-file", f.mqttCAFile)
		if err != nil {
			return err
		}
		up, err = uplink.New(uplink.Config{Broker: f.mqttBroker, RootCAs: roots, Cert: ag.TLSCertificate,
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
		api := &localapi.AppAPI{Tenant: ag.TenantID, AppByUID: appByUID(sup)}
		if up != nil {
			api.Uplink = up
		}
		upd.AppRoutes(api)
		g.Go(func() error { return localapi.Serve(ctx, l, api.Handler()) })
	}
	g.Go(func() error { return ag.Run(ctx) })
	g.Go(func() error { return upd.Run(ctx) })
	return g.Wait()
}

// appByUID says which installed app runs as a uid.
// TODO(sandbox): apps get their own uids from the sandbox; until it is
// wired in, apps run as the agent's user and no caller is an app.
func appByUID(*supervisor.Supervisor) func(int) (supervisor.App, bool) {
	return func(int) (supervisor.App, bool) { return supervisor.App{}, false }
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
