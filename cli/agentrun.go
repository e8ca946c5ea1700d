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
)

// defaultAppSocket is where apps reach the agent: beside the admin socket,
// outside the state directory, which apps may not enter.
const defaultAppSocket = "/run/sphere-agent/app.sock"

// updateFlags are the update engine's options of `sphere agent`.
type updateFlags struct {
	bootloader, bootloaderState string
	slotA, slotB                string
	healthWindow                time.Duration
	reboot                      string
	bandwidth                   int64
	appSocket                   string
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
	fl.StringVar(&u.appSocket, "app-socket", defaultAppSocket, "where apps reach the agent (update deferral); empty: no socket")
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
	if sock := f.update.appSocket; sock != "" {
		l, err := localapi.Listen(sock, 0o666)
		if err != nil {
			return err
		}
		g.Go(func() error { return localapi.Serve(ctx, l, upd.AppHandler(appByPID(sup))) })
	}
	g.Go(func() error { return ag.Run(ctx) })
	g.Go(func() error { return upd.Run(ctx) })
	return g.Wait()
}

// appByPID says which app a caller of the apps' socket is: the app whose
// process it is. (Once the sandbox runs each app as its own uid, the uid
// says it too.)
func appByPID(sup *supervisor.Supervisor) func(localapi.Peer) (string, bool) {
	return func(p localapi.Peer) (string, bool) {
		for _, s := range sup.Status() {
			if s.PID != 0 && s.PID == p.PID {
				return s.App.ComponentID, true
			}
		}
		return "", false
	}
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
